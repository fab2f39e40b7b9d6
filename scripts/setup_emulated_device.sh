#!/usr/bin/env bash
# Set up the emulated aarch64 phone used by the android_runner tests (cached; a second run is instant).
# Installs qemu-user-static and the aarch64 cross g++ with apt when missing (needs root), unpacks the
# arm64 Debian .debs for python3.11 and the aarch64 wheels (apache-tvm 0.27.0.post1 ...) under
# ${CANAO_CACHE:-~/.cache/canao}/aarch64/. CI calls this before the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 -m canao.android_runner.provision "$@"
