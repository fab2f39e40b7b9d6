"""Shared fixtures: real MiniLM weights at a short sequence so the suite stays fast."""
import os
import subprocess
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # two workers share the two cores: a TVM thread pool per worker sized to all cores would
    # oversubscribe them (its workers spin while waiting); no test asserts a timing
    os.environ.setdefault("TVM_NUM_THREADS", "1")

# Under pytest-xdist (`-n 2 --dist loadgroup`, the README's test command) every module is one
# group, run on one worker with its tests together, so a module-scoped fixture (a tuned database,
# a booted device farm) is made once: spread over workers or interleaved with other modules,
# pytest tears it down and rebuilds it (measured: 4 x 130 s for the tuning database, a device farm
# rebooted before every tracker test). Modules that start emulated aarch64 devices (qemu-user RPC
# servers, a tracker, the detached-device registry) share one group.
EMULATED_DEVICE_MODULES = {"test_android_device.py", "test_android_tracker.py", "test_android_units.py",
                           "test_bench_device.py", "test_errors_oneline.py", "test_nas_rpc.py",
                           "test_profile_rpc.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        group = "emulated-device" if item.path.name in EMULATED_DEVICE_MODULES else item.path.name
        item.add_marker(pytest.mark.xdist_group(group))

SEQ = 32


@pytest.fixture(scope="session")
def minilm():
    """all-MiniLM-L6-v2 with its real weights, imported into Relax at seq 32."""
    from canao.frontends import load_model

    return load_model("minilm-l6", seq_len=SEQ)


@pytest.fixture(scope="session")
def minilm_text_inputs(minilm):
    from canao.bench.suite import real_inputs

    inputs, _ = real_inputs(minilm, 1)
    return inputs


@pytest.fixture(scope="session")
def host_target():
    from canao.codegen import resolve_target

    return resolve_target("x86")


def run_cli(*args, cwd=None, timeout=900):
    """Run `canao ARGS` in a subprocess (as a user would) and return the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "canao.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def assert_one_line_error(proc, *needles):
    """Exit code 2 and a last stderr line `canao: error: <cause> (fix: <fix>)` naming the needles."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("canao: error: "), proc.stderr[-2000:]
    assert "(fix: " in last, last
    for needle in needles:
        assert needle.lower() in last.lower(), (needle, last)
    return last


@pytest.fixture(scope="session")
def echo_onnx(tmp_path_factory):
    """The "echo" ONNX model file (tests/onnx_models.py): output 1 echoes input_ids, output 2 computes."""
    from onnx_models import make_echo_onnx

    return make_echo_onnx(tmp_path_factory.mktemp("onnx") / "echo_embed.onnx")
