"""One line, exit 2, for failures that used to print a traceback: a crash inside a build stage,
a corrupt manifest.json, a missing / corrupt params.npz; and a cross-target build says it is
unverified until `canao deploy` checks it on the device (which then records the verdict)."""
import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli
from onnx_models import SEQ

# Runs `canao compile` with one extra stage in the canao pipeline's schedule slot that raises,
# the way a bug in a stage would surface: from inside tvm.transform (through TVM's FFI).
BOOM = textwrap.dedent("""
    import sys
    import tvm
    from canao.codegen.pipeline import register_stage

    @tvm.transform.module_pass(opt_level=0, name="Boom")
    def boom(mod, ctx):
        raise ZeroDivisionError("stage exploded on purpose")

    register_stage("schedule", "boom", lambda target, options: boom, order=1)
    from canao.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.fixture(scope="module")
def small_artifact(echo_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("art") / "echo"
    proc = run_cli("compile", echo_onnx, "--seq-len", SEQ, "--threads", 2, "--yellow", "default",
                   "--pipeline", "stock", "-o", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _copy(folder, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(folder, dst)
    return dst


def _feed(tmp_path):
    np.save(tmp_path / "ids.npy", np.full((1, SEQ), 2000, dtype="int64"))
    np.save(tmp_path / "mask.npy", np.ones((1, SEQ), dtype="int64"))
    return ["--input", f"input_ids={tmp_path / 'ids.npy'}", "--input", f"attention_mask={tmp_path / 'mask.npy'}"]


def test_build_stage_failure_is_one_line_naming_the_stage(echo_onnx, tmp_path):
    def compile_with_boom(*extra):
        return subprocess.run([sys.executable, "-c", BOOM, "compile", str(echo_onnx), "--seq-len", str(SEQ),
                               "--threads", "2", "--yellow", "default", "-o", str(tmp_path / "x"), *extra],
                              capture_output=True, text=True, timeout=900)

    proc = compile_with_boom()
    last = assert_one_line_error(proc, "build stage after 'lp-fuse'", "stage exploded on purpose", "-v", "report")
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x*"))
    # -v: the original exception (chained) is printed in full before the same one line
    verbose = compile_with_boom("-v")
    assert_one_line_error(verbose, "build stage after", "stage exploded on purpose")
    assert "Traceback" in verbose.stderr and "in boom" in verbose.stderr  # down to the failing pass
    assert verbose.stderr.strip().splitlines()[-1] == last


def test_build_stage_failure_chains_the_original(echo_onnx, tmp_path, monkeypatch):
    """In-process: the CanaoError keeps the original exception as its cause (for -v and logs)."""
    import argparse

    from canao.codegen import build as build_module
    from canao.commands import compile_cmd
    from canao.errors import CanaoError

    original = ValueError("inner failure")

    def failing_build(imported, target, pipeline, options=None, on_stage=None):
        on_stage("legalize")
        raise original

    monkeypatch.setattr(build_module, "build", failing_build)
    args = argparse.Namespace(model=str(echo_onnx), seq_len=SEQ, batch=1, target="x86", pipeline="canao", threads=2,
                              yellow="default", out=str(tmp_path / "x"), force=False, tuning_db=None, atol=1e-3,
                              quantize=None)
    with pytest.raises(CanaoError) as info:
        compile_cmd.run(args)
    assert info.value.__cause__ is original
    assert "after 'legalize'" in info.value.cause and "ValueError: inner failure" in info.value.cause
    assert "-v" in info.value.fix and not (tmp_path / "x").exists()


def test_corrupt_manifest_is_one_line(small_artifact, tmp_path):
    feed = _feed(tmp_path)
    art = _copy(small_artifact, tmp_path)
    (art / "manifest.json").write_text('{"model": "echo", "inputs": [')  # truncated mid-write
    assert_one_line_error(run_cli("run", art, *feed), "manifest.json", "corrupt", "recompile")
    (art / "manifest.json").write_text(json.dumps({"model": "echo"}))  # valid JSON, no inputs/target
    assert_one_line_error(run_cli("run", art, *feed), "manifest.json", "incomplete", "inputs")
    (art / "manifest.json").write_bytes(b"\xff\xfe\x00garbage")
    assert_one_line_error(run_cli("run", art, *feed), "manifest.json", "corrupt")


def test_missing_or_corrupt_params_is_one_line(small_artifact, tmp_path):
    feed = _feed(tmp_path)
    art = _copy(small_artifact, tmp_path)
    data = (art / "params.npz").read_bytes()
    (art / "params.npz").unlink()
    assert_one_line_error(run_cli("run", art, *feed), "no params.npz", "recompile")
    (art / "params.npz").write_bytes(data[: len(data) // 3])
    assert_one_line_error(run_cli("run", art, *feed), "params.npz", "corrupt", "recompile")
    (art / "params.npz").write_bytes(data)
    (art / "lib.so").unlink()
    assert_one_line_error(run_cli("run", art, *feed), "no lib.so", "recompile")


def _compile_for_phone(model, out):
    """`canao compile` for android-arm64 (skipped where no cross compiler is installed)."""
    proc = run_cli("compile", model, "--seq-len", SEQ, "--target", "android-arm64", "--pipeline", "stock",
                   "--threads", 2, "-o", out)
    if proc.returncode == 2 and "cross compiler" in proc.stderr:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_cross_target_build_is_unverified_until_deploy(echo_onnx, tmp_path):
    out = tmp_path / "phone"
    proc = _compile_for_phone(echo_onnx, out)
    assert "unverified until `canao deploy" in proc.stderr
    check = json.loads((out / "manifest.json").read_text())["check"]
    assert check["status"] == "unverified" and "unverified until `canao deploy" in check["note"]
    assert set(check["outputs"]) == {"echo_ids", "embeddings"}
    assert all(o["status"] == "unverified" for o in check["outputs"].values())
    assert "pending" not in json.dumps(check)


def _fake_report(folder, match_second: bool):
    from canao.android_runner.deploy import compare_outputs
    from canao.artifact import load_reference

    ref = load_reference(folder)
    device_out = [ref["outputs"]["echo_ids"], ref["outputs"]["embeddings"] + (0.0 if match_second else 0.5)]
    check = compare_outputs(device_out, ref["outputs"], 1e-3)
    return {"device": "127.0.0.1:9090", "key": "", "check": check}


def test_deploy_records_the_device_check_atomically(echo_onnx, tmp_path):
    """What `canao deploy` writes into the manifest: the device's verdict per output, atomically."""
    from canao.android_runner.cli import record_device_check

    out = tmp_path / "phone"
    proc = _compile_for_phone(echo_onnx, out)
    before = sorted(p.name for p in out.iterdir())

    report = _fake_report(out, match_second=False)
    assert not report["check"]["match"] and not report["check"]["outputs"]["embeddings"]["match"]
    record_device_check(out, report, 1e-3)
    check = json.loads((out / "manifest.json").read_text())["check"]
    assert check["status"] == "failed" and check["device"]["status"] == "failed"
    assert check["outputs"]["echo_ids"]["status"] == "passed"
    assert check["outputs"]["embeddings"]["status"] == "failed"
    assert check["outputs"]["embeddings"]["max_abs_err"] == pytest.approx(0.5)

    record_device_check(out, _fake_report(out, match_second=True), 1e-3)
    check = json.loads((out / "manifest.json").read_text())["check"]
    assert check["status"] == "passed" and check["verified_by"] == "canao deploy" and "note" not in check
    assert check["device"]["device"] == "127.0.0.1:9090" and check["device"]["checked_at"]
    assert all(o["status"] == "passed" for o in check["outputs"].values())
    assert sorted(p.name for p in out.iterdir()) == before  # no temp file left beside the manifest


def test_deploy_on_emulated_device_records_check(echo_onnx, tmp_path):
    """End to end on the emulated aarch64 device (skipped without qemu): compile for the phone,
    `canao deploy`, and the manifest's check turns from unverified to passed on both outputs."""
    from canao.android_runner.emulator import EmulatedDevice
    from android_helpers import emulator_or_skip

    device = EmulatedDevice(emulator=emulator_or_skip()).launch()
    try:
        out = tmp_path / "phone"
        proc = run_cli("compile", echo_onnx, "--seq-len", SEQ, "--target", "android-arm64", "--pipeline", "stock",
                       "--threads", 2, "-o", out)
        assert proc.returncode == 0, proc.stderr[-3000:]
        device = device.wait_ready()
        deployed = run_cli("deploy", out, "--rpc", f"{device.host}:{device.port}")
        assert deployed.returncode == 0, deployed.stderr[-3000:] + deployed.stdout[-2000:]
        assert "matches the host reference on all 2 outputs" in deployed.stdout
    finally:
        device.stop()
    check = json.loads((out / "manifest.json").read_text())["check"]
    assert check["status"] == "passed" and check["device"]["status"] == "passed"
    assert {n: o["status"] for n, o in check["outputs"].items()} == {"echo_ids": "passed", "embeddings": "passed"}
