"""Each LP-Fusion rewrite rule on a tiny module: it fires, and the numbers do not change."""
import numpy as np
import pytest
from tvm import relax

from canao.fusion import LPRewrite
from canao.fusion.rewrites import RewriteRecord, apply_rule
from canao.fusion.rewrites.algebra import (DropNoopBroadcast, FoldScaleIntoWeights, HoistMaskTest, LinearOnLeadingDims,
                                           MatmulFirstInAdd, WhereZeroLikeToScalar)

from fusion_helpers import build_module, op_count, random_args, run

op = relax.op


def _affine_then_scale(bb, x, w, b):
    mm = bb.emit(op.matmul(x, bb.emit(op.permute_dims(w))))
    y = bb.emit(op.add(b, mm))
    heads = bb.emit(op.reshape(y, (8, 4, 8)))
    heads = bb.emit(op.permute_dims(heads, [1, 0, 2]))
    return bb.emit(op.multiply(heads, relax.const(0.25, "float32")))


def _affine_module():
    return build_module(_affine_then_scale, [("x", (8, 32), "float32")],
                        [("w", (32, 32), "float32"), ("b", (32,), "float32")])


def test_commute_bias_add_puts_matmul_first():
    mod = _affine_module()
    records = []
    out = apply_rule(mod, MatmulFirstInAdd(), records)
    from canao.fusion.dataflow import DataflowView, op_name

    view = DataflowView(out["main"])
    add = next(v for v in view.var2val.values() if op_name(v) == "relax.add")
    assert op_name(view.value(add.args[0])) == "relax.matmul" and op_name(view.value(add.args[1])) is None
    assert records and records[0].rule == "commute-bias-add" and records[0].count == 1
    args = random_args(mod)
    np.testing.assert_allclose(run(out, args), run(mod, args), rtol=1e-6)


def test_fold_scale_into_weights_removes_runtime_multiply():
    mod = _affine_module()
    records = []
    out = apply_rule(apply_rule(mod, MatmulFirstInAdd(), []), FoldScaleIntoWeights(), records)
    assert records and records[0].detail["scale"] == pytest.approx(0.25)
    lifted = relax.transform.LiftTransformParams()(out)
    # the scale now multiplies weights only: it moved into the compile-time function
    assert op_count(mod, "relax.multiply") == 1
    assert op_count(lifted, "relax.multiply") == 0
    assert op_count(lifted, "relax.multiply", "main_transform_params") == 2  # W*c and b*c
    args = random_args(mod)
    np.testing.assert_allclose(run(out, args), run(mod, args), rtol=1e-5, atol=1e-6)


def test_fold_scale_fires_when_the_activation_feeds_other_matmuls():
    """As in attention: one LayerNorm output feeds the Q, K and V projections. The activation is
    not part of the folded chain, so its other users do not block the rewrite (they did, once the
    rule's pattern bound the activation through a wildcard and counted it as a chain member)."""
    def body(bb, x, w, b, w2):
        h = bb.emit(op.multiply(x, x))  # a computed activation with two users
        mm = bb.emit(op.matmul(h, w))
        y = bb.emit(op.add(mm, b))
        scaled = bb.emit(op.multiply(y, relax.const(0.5, "float32")))
        return bb.emit(op.add(scaled, bb.emit(op.matmul(h, w2))))

    mod = build_module(body, [("x", (4, 8), "float32")],
                       [("w", (8, 8), "float32"), ("b", (8,), "float32"), ("w2", (8, 8), "float32")])
    records = []
    out = apply_rule(mod, FoldScaleIntoWeights(), records)
    assert records and records[0].detail["scale"] == pytest.approx(0.5)
    args = random_args(mod)
    np.testing.assert_allclose(run(out, args), run(mod, args), rtol=1e-5, atol=1e-6)


def test_fold_scale_refuses_shared_intermediate():
    """If the unscaled value is also used elsewhere, folding would change that use: no rewrite."""
    def body(bb, x, w, b):
        mm = bb.emit(op.matmul(x, w))
        y = bb.emit(op.add(mm, b))
        scaled = bb.emit(op.multiply(y, relax.const(0.5, "float32")))
        return bb.emit(op.add(scaled, y))

    mod = build_module(body, [("x", (4, 8), "float32")], [("w", (8, 8), "float32"), ("b", (8,), "float32")])
    records = []
    out = apply_rule(mod, FoldScaleIntoWeights(), records)
    assert records == []
    args = random_args(mod)
    np.testing.assert_allclose(run(out, args), run(mod, args), rtol=1e-6)


def test_drop_noop_broadcast(minilm):
    """The PyTorch importer emits broadcast_to(x, shape of x) around attention (BlockBuilder
    would fold such a call away, so the real import is the test input)."""
    records = []
    out = relax.transform.DeadCodeElimination(["main"])(apply_rule(minilm.mod, DropNoopBroadcast(), records))
    assert op_count(minilm.mod, "relax.broadcast_to") >= 12 and op_count(out, "relax.broadcast_to") < 12
    assert records[0].count == op_count(minilm.mod, "relax.broadcast_to") - op_count(out, "relax.broadcast_to")


def _masked_softmax_layers(bb, q, k, mask):
    """Two attention-score blocks sharing one additive mask, each with safe-softmax's row test."""
    bias = bb.emit(op.where(mask, relax.const(0.0, "float32"), relax.const(float("-inf"), "float32")))
    outs = []
    for scale in (1.0, 0.5):
        s = bb.emit(op.matmul(q, bb.emit(op.permute_dims(k, [0, 2, 1]))))
        s = bb.emit(op.multiply(s, relax.const(scale, "float32")))
        s = bb.emit(op.add(bb.emit(op.reshape(s, (1, 2, 4, 4))), bias))
        sm = bb.emit(op.nn.softmax(s, axis=-1))
        dead = bb.emit(op.logical_not(bb.emit(op.equal(s, relax.const(float("-inf"), "float32")))))
        row = bb.emit(op.max(bb.emit(op.astype(dead, "int8")), axis=[-1], keepdims=True))
        row = bb.emit(op.logical_not(bb.emit(op.astype(row, "bool"))))
        zeros = bb.emit(op.full_like(sm, relax.const(0.0, "float32")))
        outs.append(bb.emit(op.where(row, zeros, sm)))
    return bb.emit(op.add(outs[0], outs[1]))


def test_hoist_mask_test_shares_it_and_keeps_fully_masked_rows_zero():
    mod = build_module(_masked_softmax_layers, [("q", (2, 4, 8), "float32"), ("k", (2, 4, 8), "float32"),
                                                 ("mask", (1, 1, 4, 4), "bool")])
    records = []
    out = apply_rule(mod, HoistMaskTest(), records)
    out = relax.transform.EliminateCommonSubexpr()(out)
    out = relax.transform.DeadCodeElimination(["main"])(out)
    assert records and records[0].count == 2
    assert op_count(mod, "relax.equal") == 2 and op_count(out, "relax.equal") == 1
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((2, 2, 4, 8)).astype("float32")
    mask = np.ones((1, 1, 4, 4), dtype=bool)
    mask[..., 1, :] = False  # a fully masked row: safe softmax must give zeros, not NaN
    mask[..., 2, 3] = False
    ref, got = run(mod, [q, k, mask]), run(out, [q, k, mask])
    assert np.isfinite(got).all() and np.all(got[..., 1, :] == 0)
    np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_full_like_becomes_scalar():
    def body(bb, c, y):
        z = bb.emit(op.full_like(y, relax.const(0.0, "float32")))
        return bb.emit(op.where(c, z, y))

    mod = build_module(body, [("c", (3, 1), "bool"), ("y", (3, 4), "float32")])
    records = []
    out = relax.transform.DeadCodeElimination(["main"])(apply_rule(mod, WhereZeroLikeToScalar(), records))
    assert op_count(out, "relax.full_like") == 0 and records[0].count == 1
    c = np.array([[True], [False], [True]])
    y = np.arange(12, dtype="float32").reshape(3, 4)
    np.testing.assert_array_equal(run(out, [c, y]), run(mod, [c, y]))


def test_lp_rewrite_merges_parallel_projections():
    def body(bb, x, wq, wk, wv, bq, bk, bv):
        outs = [bb.emit(op.add(b, bb.emit(op.matmul(x, bb.emit(op.permute_dims(w))))))
                for w, b in ((wq, bq), (wk, bk), (wv, bv))]
        return bb.emit(op.add(bb.emit(op.add(outs[0], outs[1])), outs[2]))

    weights = [(n, (16, 16), "float32") for n in ("wq", "wk", "wv")] + [(n, (16,), "float32") for n in ("bq", "bk", "bv")]
    mod = build_module(body, [("x", (4, 16), "float32")], weights)
    records = []
    out = LPRewrite(records)(mod)
    assert op_count(mod, "relax.matmul") == 3 and op_count(out, "relax.matmul") == 1
    assert any(r.rule == "merge-parallel-matmul" for r in records)
    args = random_args(mod)
    np.testing.assert_allclose(run(out, args), run(mod, args), rtol=1e-5, atol=1e-5)


def test_records_are_json():
    import json

    record = RewriteRecord("r", "a*2*3", "a*6", 2, {"scale": 6.0})
    assert json.loads(json.dumps(record.to_json())) == {"rule": "r", "before": "a*2*3", "after": "a*6", "count": 2,
                                                       "scale": 6.0}


def _flattened_linear(bb, x, w, b, w2):
    """What torch.export makes of two linear layers on a [B, S, K] activation, the second one
    feeding a head split (reshape to [B, S, heads, d])."""
    flat = bb.emit(op.reshape(x, (6, 8)))
    y = bb.emit(op.reshape(bb.emit(op.add(bb.emit(op.matmul(flat, w)), b)), (2, 3, 16)))
    g = bb.emit(op.nn.gelu(y))
    z = bb.emit(op.matmul(bb.emit(op.reshape(g, (6, 16))), w2))
    return bb.emit(op.reshape(z, (2, 3, 2, 4)))


def test_linear_on_leading_dims_drops_the_flatten_and_unflatten():
    mod = build_module(_flattened_linear, [("x", (2, 3, 8), "float32")],
                       [("w", (8, 16), "float32"), ("b", (16,), "float32"), ("w2", (16, 8), "float32")])
    records = []
    out = relax.transform.DeadCodeElimination(["main"])(apply_rule(mod, LinearOnLeadingDims(), records))
    assert records and records[0].count == 2
    # the first linear needs no reshape at all; the second keeps only its head split
    assert op_count(mod, "relax.reshape") == 4 and op_count(out, "relax.reshape") == 1
    shapes = [tuple(int(d) for d in b.value.ty.shape) for b in out["main"].body.blocks[0].bindings
              if isinstance(b.value, relax.Call) and b.value.op.name == "relax.matmul"]
    assert shapes == [(2, 3, 16), (2, 3, 8)]
    args = random_args(mod)
    np.testing.assert_allclose(run(out, args), run(mod, args), rtol=1e-6, atol=1e-6)


def test_linear_on_leading_dims_leaves_a_shared_gemm_alone():
    def body(bb, x, w):
        mm = bb.emit(op.matmul(bb.emit(op.reshape(x, (6, 8))), w))
        first = bb.emit(op.reshape(mm, (2, 3, 16)))
        second = bb.emit(op.reshape(bb.emit(op.reshape(mm, (2, 3, 2, 8))), (2, 3, 16)))
        return bb.emit(op.add(first, second))

    mod = build_module(body, [("x", (2, 3, 8), "float32")], [("w", (8, 16), "float32")])
    records = []
    apply_rule(mod, LinearOnLeadingDims(), records)
    assert records == []  # the GEMM has two users: rewriting one would compute it twice
