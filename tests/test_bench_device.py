"""`canao benchmark --rpc`: the side-by-side table, timed on the (emulated) phone, outputs checked."""
import json
import os
import shutil

import pytest

from conftest import run_cli

NEEDS = [shutil.which("qemu-aarch64-static"), shutil.which("aarch64-linux-gnu-g++")]
pytestmark = pytest.mark.skipif(not all(NEEDS) and not os.environ.get("CANAO_REQUIRE_DEVICE"),
                                reason="qemu-user-static / g++-aarch64-linux-gnu not installed "
                                       "(CI installs them and sets CANAO_REQUIRE_DEVICE)")


def test_benchmark_on_emulated_phone(tmp_path):
    from canao.android_runner import EmulatedDevice

    out = tmp_path / "bench.json"
    with EmulatedDevice() as device:
        host, port = device.address
        proc = run_cli("benchmark", "minilm-l6", "--seq-len", 16, "--rpc", f"{host}:{port}", "--runs", 2,
                       "--warmup", 0, "--json", out, "--out", tmp_path / "rep")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {e["name"]: e for e in json.loads(out.read_text())["engines"]}
    assert set(rows) == {"canao", "tvm-stock"}
    for row in rows.values():
        assert row["status"] == "ok" and row["max_abs_err"] < 1e-3  # checked against PyTorch on the host
        assert row["runs"] == 2 and 0 < row["min_ms"] <= row["p50_ms"]
