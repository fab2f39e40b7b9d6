"""Issue 16: a compiler that never crashes or miscompiles on valid input.

Two halves:

* the planner on hand-built Relax graphs that tempt a non-convex merge (through a binding that is
  not a kernel, through a tuple, through the quotient graph of earlier merges): the plan is never
  cyclic, LP-Fusion never raises, numbers never change, and what cannot be fused is recorded;
* the differential zoo (``canao.zoo.ZOO_DIFFERENTIAL``): every architecture, at test size, through
  (a) ``LPFusion`` in a plain ``tvm.transform.Sequential`` + ``tvm.compile(relax_pipeline="default")``
  and (b) the ``canao compile`` build path, each compared with PyTorch on every output.
"""
import random

import numpy as np
import pytest
import tvm
from tvm import relax

from canao.fusion import LPFuse, LPFusion
from canao.fusion.planner import KernelGraph, plan_groups
from canao.fusion.planner.grouping import Grouping, can_merge, cyclic_groups

from fusion_helpers import build_module, random_args, run

op = relax.op
TARGET = tvm.target.Target({"kind": "llvm"})


def legalize(mod):
    with TARGET:
        return tvm.transform.Sequential([relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern()])(mod)


# --- a binding that is not a kernel between two kernels -------------------------------------

def _position_ids(bb, ids):
    """RoBERTa's create_position_ids_from_input_ids: cumsum(mask) * mask + padding_idx. LegalizeOps
    leaves relax.cumsum alone (the stock pipeline dispatches it later), so the chain
    mask -> cumsum -> cast -> multiply(., mask) runs through a binding that is not a kernel."""
    mask = bb.emit(op.astype(op.not_equal(ids, relax.const(1, "int64")), "int32"))
    csum = bb.emit(op.cumsum(mask, axis=1))
    scaled = bb.emit(op.multiply(op.astype(csum, "int32"), mask))
    return bb.emit(op.add(op.astype(scaled, "int64"), relax.const(1, "int64")))


def _position_module():
    return build_module(_position_ids, [("ids", (2, 16), "int64")])


_CACHE = {}


def _position_reference():
    if "position" not in _CACHE:
        _CACHE["position"] = run(_position_module(), _int_args())
    return _CACHE["position"]


def _int_args():
    ids = np.random.default_rng(0).integers(0, 4, size=(2, 16)).astype("int64")  # some padding (1) tokens
    return [ids]


@pytest.mark.parametrize("yellow", ["fuse", "default", "split"])
def test_path_through_non_kernel_binding_is_not_fused_across(yellow):
    """The cycle crash of issue 16 (RoBERTa/XLM-R position ids): the mask cast and the multiply were
    grouped although the cumsum between them is not in the group."""
    mod = _position_module()
    legal = legalize(mod)
    fuse = LPFuse(TARGET, yellow=yellow)
    out = fuse(legal)  # raised RuntimeError("fusion groups form a cycle") before the fix
    plan = fuse.plan.to_json()
    graph = KernelGraph(legal, legal["main"])
    assert any(o.what == "relax.cumsum" for o in graph.others)
    index = {n.var.name: n.index for n in graph.nodes}
    assert cyclic_groups(graph, [sorted(index[m] for m in g["members"]) for g in plan["groups"]]) == []
    np.testing.assert_array_equal(run(out, _int_args()), _position_reference())
    # the cast feeding the cumsum and the multiply reading the cumsum's result are in different kernels
    group_of = {m: k for k, g in enumerate(plan["groups"]) for m in g["members"]}
    cumsum = next(o for o in graph.others if o.what == "relax.cumsum")
    before = [graph.nodes[v] for v in range(len(graph.nodes)) if (graph.desc[v] >> cumsum.index) & 1]
    after = [graph.nodes[v] for v in range(len(graph.nodes)) if (graph.anc[v] >> cumsum.index) & 1]
    assert before and after
    assert not {group_of[n.var.name] for n in before} & {group_of[n.var.name] for n in after}


def test_path_through_tuple_binding_is_not_fused_across():
    def body(bb, x):
        a = bb.emit(op.exp(x))
        t = bb.emit(relax.Tuple([a, x]))        # not a kernel
        b = bb.emit(relax.TupleGetItem(t, 0))   # a field of a tuple that is not a kernel's
        c = bb.emit(op.negative(b))
        return bb.emit(op.add(a, c))            # exp -> add is green, but exp -> tuple -> ... -> add

    mod = build_module(body, [("x", (4, 16), "float32")])
    legal = legalize(mod)
    fuse = LPFuse(TARGET, yellow="fuse")
    out = fuse(legal)
    groups = [set(g["ops"]) for g in fuse.plan.to_json()["groups"]]
    assert not any({"tir_exp", "add"} <= g for g in groups)
    args = random_args(mod)
    np.testing.assert_allclose(run(out, args), run(mod, args), rtol=1e-6)


# --- convexity on the quotient graph --------------------------------------------------------

def _crossing(bb, x, y):
    a1 = bb.emit(op.nn.relu(x))
    b2 = bb.emit(op.sigmoid(y))
    b1 = bb.emit(op.exp(a1))           # a1 -> b1
    a2 = bb.emit(op.tanh(b2))          # b2 -> a2
    a3 = bb.emit(op.add(a1, a2))       # joins a1, a2
    b3 = bb.emit(op.multiply(b1, b2))  # joins b1, b2
    return bb.emit(op.subtract(a3, b3))


def _crossing_graph():
    mod = build_module(_crossing, [("x", (4, 8), "float32"), ("y", (4, 8), "float32")])
    legal = legalize(mod)
    graph = KernelGraph(legal, legal["main"])
    return mod, legal, graph


def test_groups_convex_alone_can_still_form_a_cycle_together():
    """G1 = {a1, a2, a3} and G2 = {b1, b3} are each convex in the original graph, and so is
    G2 + {b2}; but once G1 is one kernel, b2 -> G1 -> b1, so G2 + {b2} would make a cycle."""
    _, _, graph = _crossing_graph()
    a1, b2, b1, a2, a3, b3 = range(6)
    g = Grouping(graph)
    g.merge(a1, a3)
    g.merge(a1, a2)
    g.merge(b1, b3)
    assert can_merge(g, b2, b1) == "not convex: a path leaves the group and re-enters it"
    assert cyclic_groups(graph, g.groups()) == []
    forced = [[a1, a2, a3], [b1, b2, b3], [6]]
    assert cyclic_groups(graph, forced) == [0, 1]  # the independent check sees the cycle


@pytest.mark.parametrize("seed", range(40))
def test_random_graphs_never_get_a_cyclic_plan(seed):
    """Random DAGs of element-wise ops, matmuls, reductions, tuples and un-legalized cumsums,
    planned with random yellow decisions: the plan is acyclic, every group convex."""
    rng = random.Random(seed)
    n_ops = rng.randint(6, 18)

    def body(bb, x, w):
        values = [x]
        for _ in range(n_ops):
            kind = rng.choice(["unary", "unary", "binary", "binary", "matmul", "softmax", "cumsum", "tuple"])
            a = rng.choice(values[-4:] if rng.random() < 0.7 else values)
            if kind == "unary":
                v = bb.emit(rng.choice([op.exp, op.tanh, op.negative, op.sigmoid])(a))
            elif kind == "binary":
                v = bb.emit(rng.choice([op.add, op.multiply, op.subtract])(a, rng.choice(values)))
            elif kind == "matmul":
                v = bb.emit(op.matmul(a, w))
            elif kind == "softmax":
                v = bb.emit(op.nn.softmax(a, axis=-1))
            elif kind == "cumsum":
                v = bb.emit(op.cumsum(a, axis=1))
            else:
                t = bb.emit(relax.Tuple([a, rng.choice(values)]))
                v = bb.emit(relax.TupleGetItem(t, rng.randint(0, 1)))
            values.append(v)
        return bb.emit(relax.Tuple(values[-3:]))

    mod = build_module(body, [("x", (4, 8), "float32")], [("w", (8, 8), "float32")])
    legal = legalize(mod)
    graph = KernelGraph(legal, legal["main"])
    grouping, _ = plan_groups(graph, lambda g, a, b, edge: rng.random() < 0.6)
    groups = grouping.groups()
    assert cyclic_groups(graph, groups) == []
    for group in groups:  # convex: nothing outside the group lies between two of its members
        inside = sum(1 << i for i in group)
        between = 0
        for i in group:
            between |= graph.desc[i]
        up = 0
        for i in group:
            up |= graph.anc[i]
        assert between & up & ~inside == 0
    if seed % 16 == 0:  # the whole pass, end to end, on a few of them
        out = LPFuse(TARGET, yellow="fuse")(legal)
        args = random_args(mod, seed)
        got, want = run_all(out, args), run_all(mod, args)
        for g_, w_ in zip(got, want):
            np.testing.assert_allclose(g_, w_, rtol=1e-5, atol=1e-5)


def run_all(mod, args):
    exe = tvm.compile(mod, target=TARGET)
    out = relax.VirtualMachine(exe, tvm.cpu())["main"](*[tvm.runtime.tensor(a) for a in args])
    return [out.numpy()] if hasattr(out, "numpy") else [o.numpy() for o in out]


# --- the last line of defence ---------------------------------------------------------------

def _chain_module():
    def body(bb, x, w):
        h = bb.emit(op.matmul(x, w))
        h = bb.emit(op.add(h, x))
        e = bb.emit(op.exp(h))
        return bb.emit(op.multiply(e, relax.const(0.5, "float32")))

    return build_module(body, [("x", (8, 8), "float32")], [("w", (8, 8), "float32")])


def test_group_that_fails_to_outline_is_left_unfused_and_recorded(monkeypatch):
    import canao.fusion.lp_fusion as lp

    real = lp.outline_groups

    def flaky(mod, graph, groups, names):
        if any(any(graph.nodes[i].func_name.startswith("tir_exp") for i in g) and len(g) > 1 for g in groups):
            raise tvm.error.InternalError("simulated outlining failure")
        return real(mod, graph, groups, names)

    monkeypatch.setattr(lp, "outline_groups", flaky)
    mod = _chain_module()
    fuse = LPFuse(TARGET, yellow="fuse")
    out = fuse(legalize(mod))
    plan = fuse.plan.to_json()
    assert plan["unfused"] and "simulated outlining failure" in plan["unfused"][0]["reason"]
    assert all(len(g["ops"]) == 1 for g in plan["groups"] if any(o.startswith("tir_exp") for o in g["ops"]))
    assert "Left unfused" in fuse.plan.to_text()
    args = random_args(mod)
    np.testing.assert_allclose(run(out, args), run(mod, args), rtol=1e-5)


def test_cyclic_plan_is_refused_not_emitted(monkeypatch):
    """Should a planner bug ever emit a cyclic plan, the groups on the cycle stay unfused."""
    import canao.fusion.lp_fusion as lp

    mod, legal, graph = _crossing_graph()

    def cyclic_plan(graph, decide_yellow):
        g = Grouping(graph)
        g.members = {0: 0b010101, 1: 0b101010, 6: 1 << 6}  # {a1, b1, a3} and {b2, a2, b3}: a cycle
        g.parent = [0, 1, 0, 1, 0, 1, 6]
        return g, []

    monkeypatch.setattr(lp, "plan_groups", cyclic_plan)
    fuse = LPFuse(TARGET, yellow="fuse")
    out = fuse(legal)
    plan = fuse.plan.to_json()
    assert [u["reason"] for u in plan["unfused"]] == ["group lies on a cycle of the plan"] * 2
    assert plan["kernels_after"] == plan["kernels_before"]
    args = random_args(mod)
    np.testing.assert_allclose(run(out, args), run(mod, args), rtol=1e-6)
