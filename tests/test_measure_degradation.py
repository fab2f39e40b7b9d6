"""Visible degradation: schedule rules that raise, kernels left unscheduled, failed fusion
measurements, planner assertions and failed tuning checks are recorded in the build report and
warned (CanaoWarning), never only logged at debug level."""
import pytest
import tvm
from tvm import relax

from canao.codegen.schedules import default_schedule_pass, default_rules
from canao.codegen.schedules.rules.base import CPURule
from canao.measure import CanaoWarning, collecting

from fusion_helpers import build_module

op = relax.op
TARGET = tvm.target.Target({"kind": "llvm"})


class Exploding(CPURule):
    name = "exploding"

    def schedule(self, func, target, traits):
        raise RuntimeError("unforeseen block structure")


def _legalized():
    def body(bb, x, res, w, g, b):
        mm = bb.emit(op.matmul(x, w))
        add = bb.emit(op.add(mm, res))
        return bb.emit(op.nn.layer_norm(add, g, b, axes=[-1]))

    mod = build_module(body, [("x", (16, 32), "float32"), ("res", (16, 32), "float32")],
                       [("w", (32, 32), "float32"), ("g", (32,), "float32"), ("b", (32,), "float32")])
    with TARGET:
        return tvm.transform.Sequential([relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern()])(mod)


def test_a_rule_that_raises_is_reported_and_warned():
    mod = _legalized()
    with collecting() as report, pytest.warns(CanaoWarning, match="schedule-rule"), TARGET:
        out = default_schedule_pass([Exploding()] + default_rules())(mod)
    errors = report.schedule_rule_errors
    assert errors and all("exploding" in e.where and "unforeseen block structure" in e.why for e in errors)
    assert "scheduled it instead" in errors[0].where  # another rule took the kernel
    assert not report.unscheduled
    assert all(f.attrs["tirx.is_scheduled"] for f in out.functions.values() if isinstance(f, tvm.tirx.PrimFunc))


def test_kernels_left_unscheduled_are_listed_with_the_reason():
    mod = _legalized()
    with collecting() as report, pytest.warns(CanaoWarning, match="unscheduled"), TARGET:
        default_schedule_pass([Exploding()])(mod)
    kernels = {gv.name_hint for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}
    assert {d.where for d in report.unscheduled} == kernels
    assert all("exploding" in d.why for d in report.unscheduled)
    assert report.to_json()["unscheduled"] and not report.to_json()["ok"]


def test_build_carries_the_report(monkeypatch):
    from canao.codegen import build as build_mod
    from canao.codegen.schedules.rules.matmul import Matmul
    from canao.codegen.targets import resolve_target
    from canao.frontends import from_torch
    import numpy as np
    import torch

    monkeypatch.setattr(Matmul, "schedule", Exploding.schedule)
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(32, 32)

        def forward(self, x):
            return torch.relu(self.fc(x))

    model = Tiny().eval()
    imported = from_torch(model, {"x": np.ones((4, 32), np.float32)}, name="tiny")
    with pytest.warns(CanaoWarning):
        compiled = build_mod.build(imported, resolve_target("x86"), "canao", options={"yellow": "default"})
    assert compiled.report.schedule_rule_errors
    assert any("matmul" in e.where.lower() or "exploding" in e.where for e in compiled.report.schedule_rule_errors)
    clean = build_mod.build(imported, resolve_target("x86"), "stock")
    assert clean.report is not None and clean.report.ok


def _graph_and_groups():
    from canao.fusion.planner.kernel_graph import KernelGraph

    mod = _legalized()
    graph = KernelGraph(mod, mod["main"])
    return graph, [0], [1]


def test_failed_fusion_measurement_is_recorded(monkeypatch, tmp_path):
    import canao.fusion.yellow_edges as fm
    from canao.fusion import LPFuse

    monkeypatch.setenv("CANAO_CACHE", str(tmp_path))

    def broken(*_a, **_k):
        raise RuntimeError("candidate failed to compile")

    monkeypatch.setattr(fm, "_executable", broken)
    fuse = LPFuse(TARGET, yellow="measure")
    with collecting() as report, pytest.warns(CanaoWarning, match="fusion-measurement"):
        fuse(_legalized())
    failures = report.fusion_measurement_failures
    assert failures and all("candidate failed to compile" in f.why for f in failures)
    assert not (tmp_path / "fusion-measurements.json").exists()  # nothing cached from a failure


def test_planner_assertion_propagates_from_measurement_and_is_recorded(monkeypatch, tmp_path):
    import canao.fusion.yellow_edges as fm

    monkeypatch.setenv("CANAO_CACHE", str(tmp_path))

    def inconsistent(*_a, **_k):
        raise AssertionError("outlined group lost a kernel")

    monkeypatch.setattr(fm, "outline_groups", inconsistent)
    graph, a, b = _graph_and_groups()
    with collecting() as report, pytest.warns(CanaoWarning, match="planner-assertion"):
        with pytest.raises(AssertionError, match="lost a kernel"):
            fm.measure_fusion(graph, a, b, TARGET)
    assert report.of("planner-assertion")


def test_tuning_baseline_and_variant_check_failures_are_recorded(monkeypatch):
    from canao.codegen.targets import resolve_target
    from canao.codegen.tuning.baseline import default_modules
    from canao.codegen.tuning.kernel_check import agrees
    from canao.codegen.tuning.tasks import TuningTask

    mod = _legalized()
    gv = next(g for g, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc))
    kernel = tvm.IRModule({"main": mod[gv].with_attr("global_symbol", "main")})
    task = TuningTask("1", "mm_kernel", kernel, 1, 1.0)

    def failing(_mod):
        raise ValueError("rule crashed")

    with collecting() as report, pytest.warns(CanaoWarning, match="tuning-baseline"):
        mods = default_modules([task], resolve_target("x86"), failing)
    assert mods[0] is task.mod
    assert report.tuning_failures[0].where == "mm_kernel" and "rule crashed" in report.tuning_failures[0].why

    def no_build(*_a, **_k):
        raise RuntimeError("llvm refused")

    monkeypatch.setattr(tvm.tirx, "build", no_build)
    with collecting() as report, pytest.warns(CanaoWarning, match="variant-check"):
        assert agrees(kernel, kernel, TARGET, name="mm_kernel tile 8x32") is False
    assert report.of("variant-check")[0].where == "mm_kernel tile 8x32"
