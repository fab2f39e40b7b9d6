"""The phone path for real: a small BERT cross-compiled for aarch64, uploaded over TVM RPC to an
emulated cortex-a76 (qemu-user), run, and compared with PyTorch; wrong-arch refusal; a frozen
device and a killed device give one-line errors, never a hang.

Skips only when qemu / the cross compiler are missing and CANAO_REQUIRE_DEVICE is unset.
"""
import json
import signal
import threading
import time

import numpy as np
import pytest

from canao.android_runner import cli
from canao.android_runner.artifact import load_artifact
from canao.android_runner.deploy import deploy
from canao.android_runner.elf import elf_arch
from canao.android_runner.emulator import EmulatedDevice
from canao.android_runner.remote import RemoteModel, run_remote, time_remote
from canao.android_runner.session import DeviceError, connect
from android_helpers import emulator_or_skip, tiny_bert, tiny_mlp, write_artifact
from canao.errors import CanaoError


@pytest.fixture(scope="module")
def booting_device():
    """Launched first so that it boots (import tvm under qemu) while the model compiles."""
    device = EmulatedDevice(emulator=emulator_or_skip()).launch()
    yield device
    device.stop()


@pytest.fixture(scope="module")
def bert(tmp_path_factory, booting_device):
    from canao.codegen import resolve_target
    from canao.codegen.build import build

    imported, inputs = tiny_bert(seq_len=32)
    compiled = build(imported, resolve_target("android-arm64"), pipeline="stock")
    folder = write_artifact(tmp_path_factory.mktemp("bert") / "out", compiled, imported, inputs)
    return folder, imported, inputs


@pytest.fixture
def device(booting_device, bert):
    """The device, up before every test: the kill test leaves it dead, and the CI shuffles the
    order of a module's tests (a test after it found nothing listening: "Connect ... failed")."""
    if not booting_device.alive():
        booting_device.stop()
        booting_device.launch()
    return booting_device.wait_ready()


def _rpc(device) -> str:
    return f"{device.host}:{device.port}"


def test_bert_on_device_matches_pytorch(device, bert):
    folder, imported, inputs = bert
    assert elf_arch(folder / "lib.so") == "aarch64"
    expected = imported.reference(inputs)  # PyTorch, computed now on the host

    report = deploy(folder, rpc=_rpc(device), repeat=3)
    np.testing.assert_allclose(report["output"], expected, rtol=1e-4, atol=1e-4)
    assert report["check"]["match"] and report["check"]["max_abs_err"] < 1e-4
    assert len(report["samples_ms"]) == 3 and all(ms > 0 for ms in report["samples_ms"])

    # the function API the compile/benchmark commands call
    artifact = load_artifact(folder)
    ordered = artifact.inputs_in_order(inputs)
    with connect(rpc=_rpc(device)) as session:
        out = run_remote(artifact.lib, artifact.params(), ordered, session)
        samples = time_remote(artifact.lib, artifact.params(), ordered, session, repeat=2)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    assert len(samples) == 2


def test_deploy_cli_reports_match(device, bert, tmp_path, capsys):
    folder, _, _ = bert
    report_path = tmp_path / "deploy.json"
    code = cli.main(["deploy", str(folder), "--rpc", _rpc(device), "--json", str(report_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "matches the host reference" in out
    report = json.loads(report_path.read_text())
    assert report["check"]["match"] and report["device"] == _rpc(device)


def test_wrong_architecture_refused_before_upload(device, tmp_path, capsys):
    from canao.codegen import resolve_target
    from canao.codegen.build import build

    imported, inputs = tiny_mlp(width=16)
    compiled = build(imported, resolve_target("x86"), pipeline="stock")
    folder = write_artifact(tmp_path / "x86", compiled, imported, inputs)
    assert elf_arch(folder / "lib.so") == "x86_64"

    uploads = []
    with connect(rpc=_rpc(device)) as session:
        real_upload = session.remote.upload
        session.remote.upload = lambda *a, **k: uploads.append(a) or real_upload(*a, **k)
        with pytest.raises(CanaoError, match="built for x86_64, the device is aarch64"):
            RemoteModel(session, folder / "lib.so", compiled.params)
    assert uploads == []

    code = cli.main(["deploy", str(folder), "--rpc", _rpc(device)])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("canao: error")]
    assert code == 2 and len(errors) == 1 and "built for x86_64" in errors[0] and "fix:" in errors[0]


def test_device_serves_after_a_session_process_crashes(device):
    """TVM's stock server raises out of its listen loop when a session process exits with an error,
    and the device goes offline; ours logs it and serves the next client (device_main.py)."""
    import psutil

    session = connect(rpc=_rpc(device), call_timeout=60)
    assert session.system_triple().startswith("aarch64")
    server = psutil.Process(device.proc.pid)
    children = server.children(recursive=True)
    assert children, "the session runs in a forked process on the device"
    for child in children:
        child.kill()  # the session process crashes (exit code -9)
    psutil.wait_procs(children, timeout=30)
    session.close()
    deadline = time.monotonic() + 30
    while "ended with an error" not in device.log_path.read_text(errors="replace"):
        assert time.monotonic() < deadline, device.log_path.read_text(errors="replace")[-2000:]
        time.sleep(0.5)
    assert device.proc.poll() is None, "the device server exited after a crashed session"
    with connect(rpc=_rpc(device), call_timeout=60) as again:
        assert again.system_triple().startswith("aarch64")


def test_frozen_device_times_out_instead_of_hanging(device, bert):
    folder, _, inputs = bert
    artifact = load_artifact(folder)
    session = connect(rpc=_rpc(device), call_timeout=120)
    model = RemoteModel(session, artifact.lib, artifact.params())
    session.call_timeout = 5
    device.kill(signal.SIGSTOP)  # the phone freezes
    try:
        start = time.monotonic()
        with pytest.raises(DeviceError, match="did not answer"):
            model.run(artifact.inputs_in_order(inputs))
        assert time.monotonic() - start < 30
    finally:
        device.kill(signal.SIGCONT)
    assert session.dead
    # the server serves new sessions after it thaws
    with connect(rpc=_rpc(device), call_timeout=60) as again:
        assert again.system_triple().startswith("aarch64")


def test_device_killed_mid_run_gives_clear_error(device, bert):
    folder, _, inputs = bert
    artifact = load_artifact(folder)
    session = connect(rpc=_rpc(device), call_timeout=120)
    model = RemoteModel(session, artifact.lib, artifact.params())
    ordered = artifact.inputs_in_order(inputs)
    box = {}

    def benchmark():
        try:
            box["samples"] = model.time(ordered, repeat=500)  # minutes under qemu: killed long before
        except Exception as exc:
            box["error"] = exc

    runner = threading.Thread(target=benchmark, daemon=True)
    runner.start()
    time.sleep(2.0)
    killed = time.monotonic()
    device.kill(signal.SIGKILL)
    runner.join(60)
    assert not runner.is_alive(), "the client hung after the device died"
    assert time.monotonic() - killed < 30
    assert isinstance(box.get("error"), DeviceError), box
    assert "dropped" in str(box["error"]) and "fix:" in str(box["error"])
    with pytest.raises(CanaoError):  # and a new connection fails fast, not hangs
        connect(rpc=_rpc(device), connect_timeout=10)
