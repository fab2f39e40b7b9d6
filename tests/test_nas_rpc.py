"""`canao latency-dataset` / the search's re-measurement over TVM RPC, against the emulated aarch64
device: rows measured on the device, a rerun that skips them, a device killed mid-dataset, a wrong
port, a drop that a reconnect heals, a device found through a tracker, and the one-line errors.

Timings under qemu mean nothing: only "> 0" is asserted. Without qemu / the cross compiler (and
CANAO_REQUIRE_DEVICE unset) the same plumbing is tested against TVM's RPC server in a host python
(target x86), so this file never silently tests nothing.
"""
import json
import signal
import sys

import pytest

from canao.android_runner.emulator import EmulatedDevice, free_port
from canao.android_runner.provision import Emulator, tools_missing
from canao.android_runner.session import _shutdown
from canao.android_runner.tracker import LocalTracker
from canao.codegen import resolve_target
from canao.errors import CanaoError
from canao.nas.latency_dataset import build_dataset, kernel_cache_path, read_rows
from canao.nas.measurer import compile_subnet
from canao.nas.remote_measurer import RemoteMeasurer, check_device_args
from canao.nas.spaces import load_space
from android_helpers import device_required, emulator_or_skip
from conftest import assert_one_line_error, run_cli

SPACE, SEQ = "bert_minilm_small", 8
KEY = "canao-nas-test"


def _host_emulator(folder) -> Emulator:
    """An "emulator" whose python is this one: device_main.py then serves TVM RPC on the host."""
    wrapper = folder / "bin" / "python3"
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    return Emulator(folder)


@pytest.fixture(scope="module")
def kind(tmp_path_factory):
    """(emulator, target name): the emulated aarch64 device, or the host fallback (see the docstring)."""
    if tools_missing() and not device_required():
        return _host_emulator(tmp_path_factory.mktemp("host-device")), "x86"
    return emulator_or_skip(), "android-arm64"


@pytest.fixture(scope="module")
def booting(kind):
    """Launched first so that it boots while the architectures compile."""
    device = EmulatedDevice(emulator=kind[0]).launch()
    yield device
    device.stop()


@pytest.fixture
def device(booting):
    """The device, up before every test (the kill test leaves it dead; test order is not fixed)."""
    if not booting.alive():
        booting.stop()
        booting.launch()
    return booting.wait_ready()


def _rpc(device) -> str:
    return f"{device.host}:{device.port}"


@pytest.fixture(scope="module")
def dataset(kind, booting, tmp_path_factory):
    """`canao latency-dataset ... --rpc` for the 2 smallest-budget architectures."""
    out = tmp_path_factory.mktemp("rpc") / "rows.jsonl"
    address = _rpc(booting.wait_ready())
    proc = run_cli("latency-dataset", "--space", SPACE, "--target", kind[1], "--rpc", address, "-n", 2,
                   "--seq-len", SEQ, "--repeat", 3, "--out", out, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, address


@pytest.fixture(scope="module")
def small(kind):
    """The space's smallest architecture compiled for the target: (imported, compiled, inputs)."""
    space = load_space(SPACE)
    return compile_subnet(space, space.smallest(), resolve_target(kind[1]), SEQ)


def test_dataset_rows_measured_on_the_device(dataset):
    out, address = dataset
    rows = read_rows(out)
    assert len(rows) == 2 and len({json.dumps(r["genes"], sort_keys=True) for r in rows}) == 2
    for r in rows:
        lat = r["latency"]
        assert r["measurer"] == "rpc" and lat["mean_ms"] > 0 and lat["device"] == address
        assert lat["n"] == 3 and 1 <= lat["kept"] <= 3 and lat["tries"] == 1 and lat["flagged"] is False
        assert lat["reference_ms"] is None and lat["ratio_to_reference"] is None and lat["load_avg_1m"] is None
        # the plan is there (signatures, calls from the Relax function), kernel times are not
        assert r["kernels"] and all(k["calls"] >= 1 and k["ms_per_call"] is None for k in r["kernels"])
        assert any(k["calls"] > 1 for k in r["kernels"])  # counted in the IR: a layer's kernels once per layer
        assert r["kernel_pass"] is False
    assert not kernel_cache_path(out).exists()  # this machine's kernel cache is not the device's


def test_fusion_predictor_on_a_device_dataset_is_one_line_error(dataset, tmp_path):
    out, _ = dataset
    proc = run_cli("predictor", "train", "--data", out, "--kind", "fusion", "--out", tmp_path / "p.pkl")
    assert_one_line_error(proc, "per-kernel times", "--kind mlp")


def test_rerun_skips_measured_rows_without_a_device(dataset, kind):
    """Everything is measured already: the rerun connects to nothing (a dead port would fail)."""
    out, _ = dataset
    before = out.read_bytes()
    again = run_cli("latency-dataset", "--space", SPACE, "--target", kind[1], "--rpc", f"127.0.0.1:{free_port()}",
                    "-n", 2, "--seq-len", SEQ, "--out", out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 rows" in again.stdout and out.read_bytes() == before


def test_device_killed_mid_dataset_keeps_complete_rows(dataset, device, kind, tmp_path):
    """One new row is written, then the device dies: the next architecture fails after the
    reconnects with one line naming the device; the file holds complete rows only."""
    rows_file, _ = dataset
    out = tmp_path / "rows.jsonl"
    out.write_bytes(rows_file.read_bytes())
    measurer = RemoteMeasurer(rpc=_rpc(device), repeat=2, warmup=0, retries=1, retry_wait=0.2, call_timeout=60)

    def kill_after_first(i, row):
        device.kill(signal.SIGKILL)

    with pytest.raises(CanaoError) as err:
        build_dataset(load_space(SPACE), resolve_target(kind[1]), 4, out, seq_len=SEQ, measurer=measurer,
                      progress=False, on_row=kill_after_first)
    text = str(err.value)
    assert "\n" not in text and _rpc(device) in text and "failed 2 time(s)" in text and "fix:" in text
    assert measurer._session is None  # closed by build_dataset
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["latency"]["mean_ms"] > 0 for line in lines)


def test_wrong_port_is_one_line_error_and_writes_nothing(kind, tmp_path):
    out = tmp_path / "rows.jsonl"
    port = free_port()
    proc = run_cli("latency-dataset", "--space", SPACE, "--target", kind[1], "--rpc", f"127.0.0.1:{port}", "-n", 1,
                   "--seq-len", SEQ, "--retries", 1, "--out", out)
    assert_one_line_error(proc, f"127.0.0.1:{port}", "failed 2 time(s)", "--tracker")
    assert read_rows(out) == []


def test_non_local_target_without_a_device_is_one_line_error(tmp_path):
    proc = run_cli("latency-dataset", "--space", SPACE, "--target", "android-arm64", "-n", 1, "--seq-len", SEQ,
                   "--out", tmp_path / "rows.jsonl")
    assert_one_line_error(proc, "android-arm64", "does not run on this machine", "--rpc", "--tracker")
    assert not (tmp_path / "rows.jsonl").exists()


@pytest.mark.parametrize("args, needle", [
    ({"rpc": "127.0.0.1:9090", "tracker": "127.0.0.1:9190", "key": "k"}, "both given"),
    ({"tracker": "127.0.0.1:9190"}, "needs --key"),
    ({"rpc": "127.0.0.1:9090", "key": "k"}, "only matters with --tracker"),
    ({"rpc": "localhost"}, "is not HOST:PORT"),
    ({}, "no device given"),
])
def test_device_arguments_are_checked_before_anything_compiles(args, needle):
    with pytest.raises(CanaoError, match=needle) as err:
        check_device_args(args.get("rpc"), args.get("tracker"), args.get("key"))
    assert "\n" not in str(err.value) and "fix:" in str(err.value)


def test_search_remeasures_its_winner_on_the_device(device, kind):
    """`canao search --rpc`: the final candidates are re-measured by the same device measurer (no
    load check: the device does not share these cores), whose session is closed afterwards."""
    from argparse import Namespace

    from canao.nas import search_cli

    space = load_space(SPACE)
    args = Namespace(rpc=_rpc(device), tracker=None, key=None, retries=1, call_timeout=120.0, latency_ms=1e9,
                     remeasure=1, allow_busy=False)
    measurer = search_cli._device_measurer(args, repeat=3)
    evo = {"candidates": [], "best": space.smallest(), "fitness": 0.5, "latency_ms": 1.0}
    check = search_cli._remeasure(args, space, resolve_target(kind[1]), SEQ, evo, measurer)
    measured = check["winner"]["measured"]
    assert measured["device"] == _rpc(device) and measured["mean_ms"] > 0 and measured["n"] == 3
    assert measurer._session is None


def test_a_dropped_session_is_reconnected_and_remeasured(device, small):
    """The link drops between two architectures (sockets shut down under the session): the
    measurer notices on its next call, reconnects and measures; ``tries`` records it."""
    imported, compiled, inputs = small
    measurer = RemoteMeasurer(rpc=_rpc(device), repeat=2, warmup=0, retry_wait=0.2, call_timeout=120)
    try:
        first = measurer.measure(compiled, imported, inputs, kernels=True)
        assert first.latency["tries"] == 1 and first.kernel_ms == {} and first.kernel_calls == {}
        session = measurer._session
        _shutdown(session.address, session.sockets)
        again = measurer.measure(compiled, imported, inputs, kernels=False)
        assert again.latency["tries"] == 2 and again.latency["mean_ms"] > 0
        assert measurer._session is not session and not measurer._session.dead
    finally:
        measurer.close()
    assert measurer._session is None


def test_measured_through_a_tracker(kind, small):
    """--tracker/--key: the tracker hands out its free device; the row names that device."""
    imported, compiled, inputs = small
    with LocalTracker() as tracker:
        farm_device = EmulatedDevice(tracker=(tracker.host, tracker.port), key=KEY, emulator=kind[0])
        try:
            farm_device.start()
            from canao.android_runner.session import wait_for_devices

            wait_for_devices(tracker.address, KEY, 1, timeout=180)
            measurer = RemoteMeasurer(tracker=tracker.address, key=KEY, repeat=2, warmup=0, call_timeout=120)
            try:
                got = measurer.measure(compiled, imported, inputs, kernels=False)
            finally:
                measurer.close()
        finally:
            farm_device.stop()
    assert got.latency["mean_ms"] > 0 and got.latency["device"].endswith(f":{farm_device.port}")
