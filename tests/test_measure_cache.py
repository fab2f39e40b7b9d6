"""The fusion-measurement cache key covers everything that changes the measured code: the schedules
(standalone LPFuse measures unscheduled kernels, the build scheduled ones), the tuning database's
content, the target, TVM's and CANAO's versions."""
import json

import tvm
from tvm import relax

import canao
from canao.codegen import pipeline
from canao.codegen.options import BuildOptions
from canao.codegen.tuning.apply import database_fingerprint
from canao.fusion import LPFuse
from canao.fusion.yellow_edges import cache_key

from fusion_helpers import build_module

op = relax.op
TARGET = tvm.target.Target({"kind": "llvm"})


def _legalized():
    def body(bb, x, res, g, b):
        add = bb.emit(op.add(x, res))
        return bb.emit(op.nn.layer_norm(add, g, b, axes=[-1]))

    mod = build_module(body, [("x", (16, 32), "float32"), ("res", (16, 32), "float32")],
                       [("g", (32,), "float32"), ("b", (32,), "float32")])
    with TARGET:
        return tvm.transform.Sequential([relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern()])(mod)


def _measured(fuse):
    return [e["measured"] for e in fuse.plan.to_json()["edges"] if e["measured"]]


def test_unscheduled_and_scheduled_measurements_are_not_shared(tmp_path, monkeypatch):
    monkeypatch.setenv("CANAO_CACHE", str(tmp_path))
    # The cache keys are under test, not the noise gate: a flagged (noisy) measurement is never
    # cached, and beside the other CI worker the gate flagged them all. Every try passes here.
    monkeypatch.setenv("CANAO_MEASURE_MAX_SPREAD", "1e9")
    monkeypatch.setenv("CANAO_MEASURE_MAX_DRIFT", "1e9")
    mod = _legalized()
    standalone = LPFuse(TARGET, yellow="measure")  # as canao.fusion.LPFusion: unscheduled kernels
    standalone(mod)
    assert _measured(standalone) and _measured(standalone)[0]["cached"] is False
    scheduled_pass = pipeline._slot_pass("schedule", TARGET, BuildOptions())  # what a default build applies
    scheduled = LPFuse(TARGET, yellow="measure", schedule_pass=scheduled_pass)  # as `canao compile`
    scheduled(mod)
    assert _measured(scheduled)[0]["cached"] is False  # measured again, with the schedules
    again = LPFuse(TARGET, yellow="measure", schedule_pass=pipeline._slot_pass("schedule", TARGET, {}))  # a dict: same
    again(mod)
    assert _measured(again)[0]["cached"] is True  # same schedules: the cache is shared
    assert len(json.loads((tmp_path / "fusion-measurements.json").read_text())) == 2
    assert "noise" in _measured(scheduled)[0] and _measured(scheduled)[0]["noise"]["tries"] >= 1


def test_cache_key_names_target_versions_and_schedules():
    mod = _legalized()
    sched = pipeline._slot_pass("schedule", TARGET, {})
    key = cache_key(mod, 1, TARGET, sched)
    assert f"tvm={tvm.__version__}" in key and f"canao={canao.__version__}" in key and str(TARGET) in key
    assert key != cache_key(mod, 1, TARGET, None)
    assert key != cache_key(mod, 1, tvm.target.Target({"kind": "llvm", "mcpu": "znver3"}), sched)
    no_fast_math = pipeline._slot_pass("schedule", TARGET, {"fast_math": False})
    assert key != cache_key(mod, 1, TARGET, no_fast_math)
    assert cache_key(mod, 1, TARGET, tvm.transform.Sequential([])) is None  # unknown pass: not cached


def test_tuning_database_content_changes_the_key(tmp_path):
    db = tmp_path / "db"
    db.mkdir()
    (db / "database_workload.json").write_text('["1", {"a": 1}]\n')
    (db / "database_tuning_record.json").write_text('[0, [["trace1"], [1e-5]]]\n')
    first = database_fingerprint(TARGET, {"tuning_db": str(db)})
    assert first == database_fingerprint(TARGET, {"tuning_db": str(db)})
    (db / "database_tuning_record.json").write_text('[0, [["trace2"], [9e-6]]]\n')
    assert database_fingerprint(TARGET, {"tuning_db": str(db)}) != first
    assert database_fingerprint(TARGET, {}) == "no-tuning-db"
    # a factory without a fingerprint of its own: its options are part of the default one
    assert pipeline.factory_fingerprint(lambda t, o: None, TARGET, {"yellow": "fuse"}) != \
        pipeline.factory_fingerprint(lambda t, o: None, TARGET, {"yellow": "split"})
