"""Attention groups (scores + softmax + P·V in one kernel) and the Attention schedule rule: the
merged kernel computes what the unfused graph does, on random masks and fully masked rows."""
import numpy as np
import pytest
import tvm
from tvm import relax

from canao.codegen.schedules.apply import default_schedule_pass
from canao.codegen.schedules.rules import Attention
from canao.codegen.schedules.rules.matmul import match_matmul
from canao.codegen.schedules.rules.common import root_blocks
from canao.fusion import LPFuse
from canao.fusion.plan import FusionPlan
from canao.fusion.planner.attention import REASON

from fusion_helpers import build_module, run

op = relax.op
HEADS, SEQ, DIM = 4, 32, 16
TARGET = tvm.target.Target({"kind": "llvm", "num-cores": 2})
NEG = float(np.finfo(np.float32).min)  # what HF BERT adds for a masked key


def _attention(bb, q, k, v, mask, nan_guard=False):
    scores = bb.emit(op.matmul(q, op.permute_dims(k, [0, 2, 1])))
    probs = bb.emit(op.nn.softmax(op.add(scores, mask), axis=-1))
    if nan_guard:  # what MiniLM exported to ONNX carries: where(isnan(p), 0, p) reads p twice
        probs = bb.emit(op.where(op.isnan(probs), relax.const(0.0, "float32"), probs))
    out = bb.emit(op.matmul(probs, v))
    return bb.emit(op.reshape(op.permute_dims(out, [1, 0, 2]), (SEQ, HEADS * DIM)))


def _module(nan_guard=False):
    shape = (HEADS, SEQ, DIM)
    return build_module(lambda bb, *a: _attention(bb, *a, nan_guard=nan_guard), [("q", shape, "float32"), ("k", shape, "float32"), ("v", shape, "float32"),
                                     ("mask", (SEQ, SEQ), "float32")])


def _legalized(nan_guard=False):
    with TARGET:
        return tvm.transform.Sequential([relax.transform.LegalizeOps(),
                                         relax.transform.AnnotateTIROpPattern()])(_module(nan_guard))


def _fused(yellow="fuse", attention=True, nan_guard=False):
    plan = FusionPlan()
    with TARGET:
        mod = LPFuse(TARGET, yellow, plan, attention=attention)(_legalized(nan_guard))
    return mod, plan


def _two_gemm_kernels(mod):
    out = []
    for gv, func in mod.functions.items():
        if isinstance(func, tvm.tirx.PrimFunc):
            sch = tvm.s_tir.Schedule(func)
            if sum(match_matmul(sch, b) is not None for b in root_blocks(sch)) == 2:
                out.append(gv.name_hint)
    return out


def _masks():
    rng = np.random.default_rng(3)
    random_keys = np.where(rng.random((SEQ, SEQ)) < 0.3, NEG, 0.0).astype("float32")
    padded = np.zeros((SEQ, SEQ), "float32")
    padded[:, SEQ - 5:] = NEG  # padding: the last keys masked for every query
    fully = random_keys.copy()
    fully[[0, 7, SEQ - 1], :] = NEG  # rows with every key masked
    return {"random": random_keys, "padding": padded, "fully-masked rows": fully}


def test_planner_merges_scores_softmax_and_pv_into_one_kernel():
    mod, plan = _fused()
    assert len(_two_gemm_kernels(mod)) == 1
    edges = [e for e in plan.to_json()["edges"] if e["reason"].startswith(REASON)]
    assert len(edges) == 1 and edges[0]["fused"]


def test_three_group_chain_when_scores_and_softmax_were_kept_apart(monkeypatch):
    """The table's plan may keep the scores GEMM and the softmax apart (measured faster apart on
    MiniLM); the attention merge then joins three groups, and is measured against those three."""
    seen = []

    def only_attention(self, graph):
        def decide(grouping, a, b, edge, split_roots=None):
            seen.append(split_roots)
            return split_roots is not None
        return decide

    monkeypatch.setattr(LPFuse, "_decide_yellow", only_attention)
    mod, plan = _fused(yellow="measure")
    assert [len(r) for r in seen if r is not None] == [3]
    assert len(_two_gemm_kernels(mod)) == 1
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((HEADS, SEQ, DIM)).astype("float32") for _ in range(3))
    mask = _masks()["fully-masked rows"]
    with TARGET:
        scheduled = default_schedule_pass()(mod)
    np.testing.assert_allclose(run(scheduled, [q, k, v, mask]), run(_module(), [q, k, v, mask]), rtol=1e-5, atol=1e-5)


def test_attention_merge_can_be_switched_off_and_default_policy_keeps_apart():
    for mod, _ in (_fused(attention=False), _fused(yellow="default")):
        assert _two_gemm_kernels(mod) == []


@pytest.mark.parametrize("nan_guard", [False, True])
@pytest.mark.parametrize("mask_name", list(_masks()))
def test_fused_attention_kernel_matches_unfused_graph(mask_name, nan_guard):
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((HEADS, SEQ, DIM)).astype("float32") for _ in range(3))
    mask = _masks()[mask_name]
    want = run(_module(nan_guard), [q, k, v, mask])
    mod, _ = _fused(nan_guard=nan_guard)
    (name,) = _two_gemm_kernels(mod)
    assert Attention().apply(mod[name].with_attr("target", TARGET), TARGET, False) is not None
    with TARGET:
        mod = default_schedule_pass()(mod)
    got = run(mod, [q, k, v, mask])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_rule_leaves_two_gemms_without_a_softmax_alone():
    def chain(bb, a, b, c):
        return bb.emit(op.matmul(bb.emit(op.matmul(a, b)), c))

    mod = build_module(chain, [("a", (8, 16), "float32"), ("b", (16, 16), "float32"), ("c", (16, 16), "float32")])
    with TARGET:
        mod = tvm.transform.Sequential([relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern()])(mod)
        mod = LPFuse(TARGET, "fuse", FusionPlan())(mod)
    assert _two_gemm_kernels(mod) == []
