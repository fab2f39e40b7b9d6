"""The DNNFusion planner: mapping types, the table, convex grouping, yellow settlement."""
import numpy as np
import pytest
import tvm
from tvm import relax

from canao.fusion import LPFuse
from canao.fusion.planner import GREEN, RED, YELLOW, KernelGraph, Mapping, classify, decide

from fusion_helpers import build_module, random_args, run

op = relax.op
TARGET = tvm.target.Target({"kind": "llvm"})


def legalize(mod):
    with TARGET:
        return tvm.transform.Sequential([relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern()])(mod)


def _zoo(bb, x, idx, w, g, b, table):
    mm = bb.emit(op.matmul(x, w))
    t = bb.emit(op.permute_dims(mm, [1, 0]))
    r = bb.emit(op.reshape(t, (8, 4)))
    e = bb.emit(op.exp(r))
    bias = bb.emit(op.add(e, b))
    ln = bb.emit(op.nn.layer_norm(bias, g, b, axes=[-1]))
    sm = bb.emit(op.nn.softmax(ln, axis=-1))
    gathered = bb.emit(op.take(table, idx, axis=0))
    return bb.emit(op.add(sm, gathered))


def test_mapping_types_come_from_block_structure():
    mod = legalize(build_module(_zoo, [("x", (4, 8), "float32"), ("idx", (8,), "int64")],
                                [("w", (8, 8), "float32"), ("g", (4,), "float32"), ("b", (4,), "float32"),
                                 ("table", (16, 4), "float32")]))
    kinds = {gv.name_hint: classify(f, gv.name_hint) for gv, f in mod.functions.items()
             if not isinstance(f, relax.Function)}
    assert kinds["matmul"] == Mapping.GEMM
    assert kinds["layer_norm"] == Mapping.REDUCE and kinds["softmax"] == Mapping.REDUCE  # op_pattern says 4
    assert kinds["transpose"] == Mapping.SHUFFLE and kinds["reshape"] == Mapping.REORGANIZE
    assert kinds["tir_exp"] == Mapping.ONE_TO_ONE
    assert kinds["add"] in (Mapping.ONE_TO_ONE, Mapping.ONE_TO_MANY)  # bias add: TVM says ElemWise
    assert kinds["take"] == Mapping.REORGANIZE  # opaque to op_pattern, a gather by structure


def test_table():
    assert decide(Mapping.GEMM, Mapping.ONE_TO_ONE)[0] == GREEN
    assert decide(Mapping.GEMM, Mapping.SHUFFLE)[0] == YELLOW  # strided stores from the tile: measured
    assert decide(Mapping.GEMM, Mapping.REORGANIZE)[0] == GREEN
    assert decide(Mapping.GEMM, Mapping.GEMM)[0] == RED
    assert decide(Mapping.REDUCE, Mapping.REDUCE)[0] == RED
    assert decide(Mapping.ONE_TO_ONE, Mapping.REDUCE)[0] == YELLOW
    assert decide(Mapping.GEMM, Mapping.REDUCE)[0] == YELLOW
    assert decide(Mapping.SHUFFLE, Mapping.GEMM)[0] == YELLOW
    assert decide(Mapping.OPAQUE, Mapping.ONE_TO_ONE)[0] == RED
    for producer in Mapping:
        for consumer in Mapping:
            colour, why = decide(producer, consumer)
            assert colour in (GREEN, YELLOW, RED) and why


def _diamond(bb, x, w):
    a = bb.emit(op.exp(x))                  # One-to-One
    b = bb.emit(op.matmul(a, w))            # GEMM: a -> b is yellow
    return bb.emit(op.add(a, b))            # a -> c green, but a -> b -> c leaves the group


def test_groups_stay_convex_and_numbers_hold():
    mod = build_module(_diamond, [("x", (8, 8), "float32")], [("w", (8, 8), "float32")])
    legal = legalize(mod)
    fuse = LPFuse(TARGET, yellow="split")
    out = fuse(legal)
    plan = fuse.plan.to_json()
    groups = [g["ops"] for g in plan["groups"]]
    assert sorted(map(sorted, groups)) == [["add", "matmul"], ["tir_exp"]]
    edge = next(e for e in plan["edges"] if e["producer"] == "tir_exp" and e["consumer"] == "add")
    assert not edge["fused"] and "kept apart" in edge["reason"]
    # merging exp with add directly would leave the matmul on a path out of and back into the group
    from canao.fusion.planner.grouping import Grouping, can_merge

    graph = KernelGraph(legal, legal["main"])
    g = Grouping(graph, [0, 1, 2], {0: 1, 1: 2, 2: 4})
    assert "not convex" in can_merge(g, 0, 2)
    assert can_merge(g, 1, 2) is None
    args = random_args(mod)
    np.testing.assert_allclose(run(out, args), run(mod, args), rtol=1e-5)


def _residual_layernorm(bb, x, res, w, g, b):
    y = bb.emit(op.add(bb.emit(op.matmul(x, w)), res))
    return bb.emit(op.nn.layer_norm(y, g, b, axes=[-1]))


def _residual_module():
    return build_module(_residual_layernorm, [("x", (16, 32), "float32"), ("res", (16, 32), "float32")],
                        [("w", (32, 32), "float32"), ("g", (32,), "float32"), ("b", (32,), "float32")])


@pytest.mark.parametrize("mode,kernels", [("fuse", 1), ("split", 2), ("default", 2)])
def test_yellow_modes(mode, kernels):
    mod = _residual_module()
    fuse = LPFuse(TARGET, yellow=mode)
    out = fuse(legalize(mod))
    plan = fuse.plan.to_json()
    assert plan["kernels_after"] == kernels
    yellow = [e for e in plan["edges"] if e["decision"] == YELLOW]
    assert yellow and all(e["fused"] == (mode == "fuse") for e in yellow)
    args = random_args(mod)
    np.testing.assert_allclose(run(out, args), run(mod, args), rtol=1e-5, atol=1e-5)


def test_yellow_measurement_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("CANAO_CACHE", str(tmp_path))
    # the noise gate never flags here (a flagged measurement is not cached: next test)
    monkeypatch.setenv("CANAO_MEASURE_MAX_SPREAD", "1e9")
    monkeypatch.setenv("CANAO_MEASURE_MAX_DRIFT", "1e9")
    mod = legalize(_residual_module())
    first = LPFuse(TARGET, yellow="measure")
    first(mod)
    measured = [e["measured"] for e in first.plan.to_json()["edges"] if e["measured"]]
    assert measured and measured[0]["fused_ms"] > 0 and measured[0]["split_ms"] > 0
    assert measured[0]["cached"] is False
    assert (tmp_path / "fusion-measurements.json").is_file()
    second = LPFuse(TARGET, yellow="measure")
    second(mod)
    again = [e["measured"] for e in second.plan.to_json()["edges"] if e["measured"]]
    assert again[0]["cached"] is True and again[0]["fused_ms"] == measured[0]["fused_ms"]
    fused = again[0]["fused_ms"] <= again[0]["split_ms"]
    assert second.plan.kernels_after == (1 if fused else 2)


def test_flagged_yellow_measurement_is_not_cached(tmp_path, monkeypatch):
    """A decision measured on a noisy machine is used for this build but measured again next time."""
    monkeypatch.setenv("CANAO_CACHE", str(tmp_path))
    monkeypatch.setenv("CANAO_MEASURE_MAX_SPREAD", "-1")  # every try counts as too noisy
    monkeypatch.setenv("CANAO_MEASURE_TRIES", "1")
    fuse = LPFuse(TARGET, yellow="measure")
    fuse(legalize(_residual_module()))
    measured = [e["measured"] for e in fuse.plan.to_json()["edges"] if e["measured"]]
    assert measured and measured[0]["noise"]["flagged"] and measured[0]["cached"] is False
    assert not (tmp_path / "fusion-measurements.json").exists()


def test_unmeasurable_target_uses_default_policy():
    arm = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu"})
    fuse = LPFuse(arm, yellow="measure")
    fuse(legalize(_residual_module()))
    yellow = [e for e in fuse.plan.to_json()["edges"] if e["decision"] == YELLOW]
    assert yellow and all("not measured" in e["reason"] and e["measured"] is None for e in yellow)


def test_kernel_graph_edges_follow_dataflow():
    legal = legalize(_residual_module())
    graph = KernelGraph(legal, legal["main"])
    names = [n.func_name for n in graph.nodes]
    assert names == ["matmul", "add", "layer_norm"]
    assert list(graph.edges()) == [(0, 1), (1, 2)]
    assert graph.desc[0] == 0b110 and graph.anc[2] == 0b011


def _shared_layernorm(bb, x, g, b, w):
    ln = bb.emit(op.nn.layer_norm(x, g, b, axes=[-1]))
    e = bb.emit(op.exp(bb.emit(op.reshape(ln, (16, 32)))))  # reshape + exp could join the LayerNorm...
    m = bb.emit(op.matmul(ln, w))                             # ...but the GEMM reads it too (red edge)
    return bb.emit(op.add(e, bb.emit(op.reshape(m, (16, 32)))))


def test_no_multi_output_groups():
    """A LayerNorm whose result is read by two consumers stays a kernel of its own: fusing a
    reshape into it would write the result twice (and the kernel lost its parallel schedule)."""
    from canao.fusion.planner.grouping import group_outputs

    mod = build_module(_shared_layernorm, [("x", (2, 8, 32), "float32")],
                       [("g", (32,), "float32"), ("b", (32,), "float32"), ("w", (32, 32), "float32")])
    legal = legalize(mod)
    fuse = LPFuse(TARGET, yellow="fuse")
    out = fuse(legal)
    plan = fuse.plan.to_json()
    graph = KernelGraph(legal, legal["main"])
    index = {n.var.name: n.index for n in graph.nodes}
    for group in plan["groups"]:
        mask = sum(1 << index[name] for name in group["members"])
        assert len(group_outputs(graph, mask)) <= 1, group
    from canao.fusion.planner.grouping import Grouping, can_merge

    names = [n.func_name for n in graph.nodes]
    ln, reshape = names.index("layer_norm"), names.index("reshape")
    assert graph.nodes[reshape].inputs == [ln]
    assert "multi-output" in can_merge(Grouping(graph), ln, reshape)
    assert [m for g in plan["groups"] for m in g["members"] if g["ops"] == ["layer_norm"]]  # stayed alone
    args = random_args(mod)
    np.testing.assert_allclose(run(out, args), run(mod, args), rtol=1e-5, atol=1e-6)
