"""A device farm on loopback: one TVM tracker, two emulated aarch64 devices under one key.

Measurement jobs fan out over both devices (outputs checked against PyTorch), MetaSchedule's RPC
runner measures a candidate through the tracker, and a device killed mid-job is replaced by the
other one (the job is retried, nothing is lost, nothing hangs).
"""
import threading

import numpy as np
import pytest

from canao.android_runner import cli
from canao.android_runner.emulator import EmulatedDevice
from canao.android_runner.farm import MeasureJob, fan_out
from canao.android_runner.session import tracker_summary, wait_for_devices
from android_helpers import emulator_or_skip, tiny_mlp, write_artifact
from canao.android_runner.tracker import LocalTracker

KEY = "canao-test"


@pytest.fixture(scope="module")
def farm():
    emulator = emulator_or_skip()
    with LocalTracker() as tracker:
        host, port = tracker.host, tracker.port
        devices = [EmulatedDevice(tracker=(host, port), key=KEY, emulator=emulator).launch() for _ in range(2)]
        try:
            yield tracker, devices  # the candidates compile while the devices boot
        finally:
            for device in devices:
                device.stop()


@pytest.fixture(scope="module")
def candidates(tmp_path_factory, farm):
    """Two 'NAS candidates' (MLP widths 64 and 96) compiled for the phone, with PyTorch references."""
    from canao.codegen import resolve_target
    from canao.codegen.build import build

    out = []
    for width in (64, 96):
        imported, inputs = tiny_mlp(width=width, seed=width)
        compiled = build(imported, resolve_target("android-arm64"), pipeline="stock")
        folder = write_artifact(tmp_path_factory.mktemp(f"mlp{width}") / "out", compiled, imported, inputs)
        out.append((folder, compiled.params, inputs["x"], imported.reference(inputs)))
    return out


@pytest.fixture
def ready_farm(farm, candidates):
    """Both devices up and registered, before *every* test: a test that kills a device (the retry
    test) must not leave the next one, in whatever order they run, with a farm of one."""
    tracker, devices = farm
    for i, device in enumerate(list(devices)):
        if not device.alive():
            device.stop()
            devices[i] = EmulatedDevice(tracker=(tracker.host, tracker.port), key=KEY,
                                        emulator=device.emulator).start()
    for device in devices:
        device.wait_ready()
    wait_for_devices(tracker.address, KEY, 2, timeout=180)  # qemu boots slowly beside a busy worker
    return tracker, devices


def _jobs(candidates, count, repeat=3, number=1):
    jobs = []
    for i in range(count):
        folder, params, x, _ = candidates[i % len(candidates)]
        jobs.append(MeasureJob(f"cand{i}", str(folder / "lib.so"), params, [x], repeat=repeat, number=number,
                               keep_output=True))
    return jobs


def test_device_list_shows_the_tracker_queue(ready_farm, capsys):
    tracker, devices = ready_farm
    assert cli.main(["device", "list", "--tracker", tracker.address]) == 0
    out = capsys.readouterr().out
    assert f"key {KEY}: 2 free" in out
    summary = tracker_summary(tracker.address)
    ports = sorted(item["addr"][1] for item in summary["server_info"] if item["key"].endswith(KEY))
    assert ports == sorted(d.port for d in devices)


def test_fan_out_uses_both_devices_and_outputs_match(ready_farm, candidates):
    tracker, devices = ready_farm
    jobs = _jobs(candidates, 6)
    seen = []
    results = fan_out(jobs, tracker.address, KEY, on_result=seen.append)
    assert [r.name for r in results] == [j.name for j in jobs] and len(seen) == 6
    for i, result in enumerate(results):
        assert result.ok, result.error
        reference = candidates[i % 2][3]
        np.testing.assert_allclose(result.output, reference, rtol=1e-5, atol=1e-5)
        assert len(result.samples_ms) == 3 and all(ms > 0 for ms in result.samples_ms)
    assert {r.device for r in results} == {f"{d.host}:{d.port}" for d in devices}


def test_metaschedule_rpc_runner_measures_through_the_tracker(ready_farm):
    from tvm import te
    import tvm
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.meta_schedule.builder import BuilderInput
    from tvm.s_tir.meta_schedule.runner import RunnerInput

    from canao.android_runner.tuning import cross_builder, metaschedule_runner
    from canao.codegen import resolve_target

    tracker, _ = ready_farm
    a = te.placeholder((32, 64), name="A")
    b = te.placeholder((64, 48), name="B")
    k = te.reduce_axis((0, 64), name="k")
    c = te.compute((32, 48), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")
    func = te.create_prim_func([a, b, c])
    built = cross_builder(max_workers=1, lean=True).build(
        [BuilderInput(tvm.IRModule({"main": func}), resolve_target("android-arm64").tvm_target())])[0]
    assert built.error_msg is None, built.error_msg

    runner = metaschedule_runner(tracker.address, KEY, session_timeout_sec=120, number=2, repeat=1)
    futures = runner.run([RunnerInput(built.artifact_path, "cpu", ArgInfo.from_prim_func(func))] * 2)
    results = [f.result() for f in futures]
    for result in results:
        assert result.error_msg is None, result.error_msg
        assert len(result.run_secs) == 1 and float(result.run_secs[0]) > 0


def test_device_killed_mid_fan_out_is_replaced_by_the_other(ready_farm, candidates):
    tracker, devices = ready_farm
    jobs = _jobs(candidates, 6, repeat=5, number=50)
    by_address = {f"{d.host}:{d.port}": d for d in devices}
    killed = []

    def kill_the_other(result):
        """At the first result, kill the other device: it is mid-job or about to take one of the
        jobs still queued, so its worker must hit the dead device."""
        if not killed:
            victim = next(d for a, d in by_address.items() if a != result.device)
            victim.kill()
            killed.append(victim)

    box = {}
    worker = threading.Thread(target=lambda: box.update(results=fan_out(
        jobs, tracker.address, KEY, retries=2, call_timeout=120, queue_timeout=120, on_result=kill_the_other)),
        daemon=True)
    worker.start()
    worker.join(240)
    assert not worker.is_alive(), "fan_out hung after a device died"
    results = box["results"]
    assert killed and all(r.ok for r in results), [r.error for r in results]
    survivor = next(a for a, d in by_address.items() if d is not killed[0])
    retried = [r for r in results if r.attempts > 1]
    assert retried and all(r.device == survivor for r in retried)
    for i, result in enumerate(results):
        np.testing.assert_allclose(result.output, candidates[i % 2][3], rtol=1e-5, atol=1e-5)


def test_deploy_retries_on_another_device_from_the_tracker(ready_farm, candidates):
    from canao.android_runner.deploy import deploy

    tracker, devices = ready_farm
    killed = []

    def kill_on_connect(message):
        """The first device deploy connects to dies before the upload."""
        if message.startswith("connected to") and not killed:
            address = message.split()[2].rstrip(";")
            victim = next(d for d in devices if f"{d.host}:{d.port}" == address)
            victim.kill()
            killed.append(address)

    folder = candidates[0][0]
    report = deploy(folder, tracker=tracker.address, key=KEY, retries=2, progress=kill_on_connect)
    assert killed and report["attempts"] == 2 and len(report["dropped"]) == 1
    assert report["device"] != killed[0] and "dropped" in report["dropped"][0]
    assert report["check"]["match"], report["check"]
    np.testing.assert_allclose(report["output"], candidates[0][3], rtol=1e-5, atol=1e-5)


def test_cli_starts_lists_and_stops_a_detached_device(ready_farm, capsys):
    from canao.android_runner.emulator import free_port, registered_devices

    tracker, _ = ready_farm
    port = free_port()
    assert cli.main(["device", "start-emulated", "--port", str(port), "--tracker", tracker.address,
                     "--key", "canao-cli"]) == 0
    try:
        assert f"listening on 127.0.0.1:{port}" in capsys.readouterr().out
        assert any(d["port"] == port for d in registered_devices())
        wait_for_devices(tracker.address, "canao-cli", 1, timeout=60)
        assert cli.main(["device", "list", "--tracker", tracker.address]) == 0
        out = capsys.readouterr().out
        assert f"127.0.0.1:{port}" in out and "key canao-cli: 1 free" in out
    finally:
        assert cli.main(["device", "stop", "--port", str(port)]) == 0
    assert f"stopped emulated device 127.0.0.1:{port}" in capsys.readouterr().out
    assert not any(d["port"] == port for d in registered_devices())
