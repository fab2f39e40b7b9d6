"""Fast checks of the phone path that need no device: ELF reading, the artifact contract, argument
errors, the setup's cache, the tracker protocol with no device behind it."""
import json
import os
import time

import numpy as np
import pytest

from canao.android_runner import cli
from canao.android_runner.artifact import load_artifact
from canao.android_runner.deploy import compare
from canao.android_runner.elf import check_library_arch, elf_arch, normalize_arch
from canao.android_runner.emulator import parse_address
from canao.android_runner.provision import find_emulator, tools_missing
from canao.android_runner.session import DeviceError, connect, request_device
from canao.android_runner.tracker import LocalTracker
from canao.errors import CanaoError


def _elf(path, machine: int) -> str:
    header = bytearray(64)
    header[:4] = b"\x7fELF"
    header[4], header[5] = 2, 1  # 64-bit, little endian
    header[18:20] = machine.to_bytes(2, "little")
    path.write_bytes(bytes(header))
    return str(path)


def test_elf_machine_is_read_and_checked(tmp_path):
    arm = _elf(tmp_path / "arm.so", 183)
    x86 = _elf(tmp_path / "x86.so", 62)
    assert elf_arch(arm) == "aarch64" and elf_arch(x86) == "x86_64"
    assert check_library_arch(arm, "arm64") == "aarch64"
    with pytest.raises(CanaoError, match="built for x86_64, the device is aarch64"):
        check_library_arch(x86, "aarch64-conda-linux-gnu")
    (tmp_path / "text.so").write_text("not a library")
    with pytest.raises(CanaoError, match="not an ELF"):
        elf_arch(tmp_path / "text.so")
    assert normalize_arch("aarch64-linux-android") == "aarch64"
    assert normalize_arch("x86_64-pc-linux-gnu") == "x86_64"


def test_real_libraries_host_and_device():
    """The check reads real files: TVM's runtime here is x86_64, the one unpacked for the device aarch64."""
    import platform
    from pathlib import Path

    import tvm

    host_lib = next(Path(tvm.__file__).parent.rglob("libtvm_runtime.so"))
    assert elf_arch(host_lib) == normalize_arch(platform.machine())
    emu = find_emulator()
    if emu is None:
        pytest.skip("the emulated device is not set up here (python -m canao.android_runner.provision)")
    assert elf_arch(next(emu.site.rglob("libtvm_runtime.so"))) == "aarch64"
    assert elf_arch(emu.root / "usr/bin/python3.11") == "aarch64"


def test_artifact_contract_and_errors(tmp_path):
    with pytest.raises(CanaoError, match="missing lib.so, params.npz, manifest.json"):
        load_artifact(tmp_path)
    _elf(tmp_path / "lib.so", 183)
    w0, w1 = np.arange(6, dtype="float32").reshape(2, 3), np.ones(3, dtype="float32")
    np.savez(tmp_path / "params.npz", w0, w1)
    x = np.zeros((1, 4), "int64")
    np.savez(tmp_path / "ref.npz", **{"input:ids": x}, output=np.ones((1, 4, 8), "float32"))
    manifest = {"target": {"arch": "aarch64"}, "inputs": [{"name": "ids", "shape": [1, 4], "dtype": "int64"}],
                "reference": "ref.npz"}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    art = load_artifact(tmp_path)
    params = art.params()
    assert art.arch == "aarch64" and len(params) == 2
    np.testing.assert_array_equal(params[0], w0)
    ref = art.reference()
    assert list(ref["inputs"]) == ["ids"] and ref["output"].shape == (1, 4, 8)
    assert art.inputs_in_order(ref["inputs"])[0].dtype == np.int64
    with pytest.raises(CanaoError, match="shape"):
        art.inputs_in_order({"ids": np.zeros((1, 5), "int64")})
    with pytest.raises(CanaoError, match="missing"):
        art.inputs_in_order({})
    synthetic = art.synthetic_inputs()
    assert synthetic["ids"].shape == (1, 4)


def test_compare_scales_tolerance_with_the_reference():
    ref = np.array([10.0, -20.0])
    assert compare(ref + 0.01, ref, atol=1e-3)["match"]  # 0.01 <= 1e-3 * 20
    assert not compare(ref + 0.1, ref, atol=1e-3)["match"]
    assert not compare(np.zeros(3), ref, atol=1e-3)["match"]


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(CanaoError, match="HOST:PORT"):
        parse_address("localhost", "--rpc")
    with pytest.raises(CanaoError, match="exactly one"):
        connect()
    with pytest.raises(CanaoError, match="needs --key"):
        connect(tracker="127.0.0.1:9")
    assert cli.main(["deploy", str(tmp_path), "--rpc", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("canao: error:") and "fix:" in err[0]


def test_nothing_listening_fails_fast():
    from canao.android_runner.emulator import free_port

    start = time.monotonic()
    with pytest.raises(CanaoError):
        connect(rpc=f"127.0.0.1:{free_port()}", connect_timeout=10)
    with pytest.raises(CanaoError, match="cannot reach the tracker"):
        request_device(("127.0.0.1", free_port()), "android", queue_timeout=5)
    assert time.monotonic() - start < 30


def test_empty_tracker_queue_times_out_instead_of_waiting_forever(capsys):
    with LocalTracker() as tracker:
        assert cli.main(["device", "list", "--tracker", tracker.address]) == 0
        assert "no device registered" in capsys.readouterr().out
        start = time.monotonic()
        with pytest.raises(DeviceError, match="no device with key 'android' became free"):
            connect(tracker=tracker.address, key="android", queue_timeout=2)
        assert time.monotonic() - start < 15
        assert cli.main(["device", "list", "--tracker", tracker.address]) == 0
        assert "key android: 0 free" in capsys.readouterr().out


def test_setup_is_cached(tmp_path, monkeypatch):
    """A folder without the stamp is 'not set up'; a ready one is found in well under a second."""
    with monkeypatch.context() as env:
        env.setenv("CANAO_CACHE", str(tmp_path))
        assert find_emulator() is None
    if tools_missing() or find_emulator() is None:
        pytest.skip("the emulated device is not set up here (python -m canao.android_runner.provision)")
    from canao.android_runner.provision import ensure_emulator

    start = time.monotonic()
    emu = ensure_emulator()
    assert time.monotonic() - start < 1.0
    assert emu.python.exists() and os.access(emu.python, os.X_OK)
    assert (emu.root / "usr/bin/python3.11").exists() and (emu.site / "tvm").is_dir()
