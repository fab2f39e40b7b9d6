"""The preconditions of LP-Fusion's Relax rules (fusion/rewrites): each test fails on the rules as
they were before their guard existed."""
import numpy as np
from tvm import relax

from canao.fusion.rewrites import apply_rule
from canao.fusion.rewrites.algebra import FoldScaleIntoWeights, HoistMaskTest

from fusion_helpers import build_module, op_count, random_args, run

op = relax.op


def _scores_plus_mask(bb, q, k, mask):
    """(q @ k^T) + mask == -inf, returned as is: its consumer sees the shape of the comparison."""
    s = bb.emit(op.matmul(q, bb.emit(op.permute_dims(k, [0, 2, 1]))))
    s = bb.emit(op.add(bb.emit(op.reshape(s, (1, 2, 4, 4))), mask))
    return bb.emit(op.equal(s, relax.const(float("-inf"), "float32")))


def test_hoist_mask_test_keeps_the_result_shape():
    mod = build_module(_scores_plus_mask, [("q", (2, 4, 8), "float32"), ("k", (2, 4, 8), "float32"),
                                           ("mask", (1, 1, 1, 4), "float32")])
    records = []
    out = apply_rule(mod, HoistMaskTest(), records)
    assert records and records[0].count == 1
    assert relax.analysis.check_well_formed(out)
    want = [int(d) for d in mod["main"].ret_ty.shape.values]
    assert [int(d) for d in out["main"].body.body.ty.shape.values] == want == [1, 2, 4, 4]
    assert op_count(out, "relax.broadcast_to") == 1
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((2, 2, 4, 8)).astype("float32")
    mask = np.array([0, -np.inf, 0, -np.inf], "float32").reshape(1, 1, 1, 4)
    got, ref = run(out, [q, k, mask]), run(mod, [q, k, mask])
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)


def test_hoist_mask_test_needs_a_finite_scaling():
    # (S * inf + M) == -inf is true where S < 0, whatever M is: the scores are not "finite scores"
    def body(bb, q, k, mask):
        s = bb.emit(op.matmul(q, bb.emit(op.permute_dims(k, [0, 2, 1]))))
        s = bb.emit(op.multiply(s, relax.const(float("inf"), "float32")))
        return bb.emit(op.equal(bb.emit(op.add(s, mask)), relax.const(float("-inf"), "float32")))

    mod = build_module(body, [("q", (2, 4, 8), "float32"), ("k", (2, 4, 8), "float32"), ("mask", (2, 4, 4), "float32")])
    records = []
    out = apply_rule(mod, HoistMaskTest(), records)
    assert records == []
    args = random_args(mod)
    args[2] = np.zeros((2, 4, 4), "float32")
    ref = run(mod, args)
    assert ref.any()  # some scores are -inf after the scaling: the mask alone would say no
    np.testing.assert_array_equal(run(out, args), ref)


def test_fold_scale_refuses_an_infinite_scale():
    # (x@W + b) * inf with a zero row of x is b * inf; folded, it would be 0 * (W * inf) = NaN
    def body(bb, x, w, b):
        y = bb.emit(op.add(bb.emit(op.matmul(x, w)), b))
        return bb.emit(op.multiply(y, relax.const(float("inf"), "float32")))

    mod = build_module(body, [("x", (4, 8), "float32")], [("w", (8, 8), "float32"), ("b", (8,), "float32")])
    records = []
    out = apply_rule(mod, FoldScaleIntoWeights(), records)
    assert records == []
    x = np.zeros((4, 8), "float32")
    w = np.ones((8, 8), "float32")
    b = np.ones(8, "float32")
    ref = run(mod, [x, w, b])
    assert np.isposinf(ref).all()
    np.testing.assert_array_equal(run(out, [x, w, b]), ref)


def test_build_vouches_for_finite_weights_only_when_they_are(host_target):
    """The build checks the real weights: with an infinite one, the polynomial rules that assume
    finite weights stay off and the compiled model still matches PyTorch, NaN for NaN."""
    import torch

    from canao.codegen.build import prepare
    from canao.codegen.options import BuildOptions
    from canao.codegen.pipeline import collecting_stage_reports
    from canao.frontends import from_torch

    class NoNorm(torch.nn.Module):
        def __init__(self, g0):
            super().__init__()
            self.b1, self.b2 = torch.nn.Parameter(torch.ones(16)), torch.nn.Parameter(torch.zeros(16))
            g = torch.ones(16)
            g[0] = g0
            self.g = torch.nn.Parameter(g)

        def forward(self, x):
            return (x + self.b1) * self.g + self.b2

    x = np.linspace(-2, 2, 64, dtype="float32").reshape(4, 16)
    x[0, 0] = -1.0  # x + b1 = 0 there: 0 * inf = NaN in PyTorch, and must stay NaN
    for g0, vouched in ((2.0, True), (np.inf, False)):
        model = from_torch(NoNorm(g0).eval(), {"x": x}, name="nonorm")
        options = BuildOptions(yellow="default").for_weights(model.params)
        assert options.finite_weights is vouched
        with collecting_stage_reports() as stage_reports:  # what the rewrite stage reports comes back here
            prepare(model, host_target, "canao", {"yellow": "default"})
        polynomial = [r for r in stage_reports.rewrite_records if r.rule == "polynomial"]
        assert bool(polynomial) is vouched  # (x + b1)*g + b2 -> x*g + (b1*g + b2) needs a finite g
        from canao.codegen.build import build
        from canao.runtime import LocalModel

        compiled = build(model, host_target, "canao", options={"yellow": "default"})
        assert compiled.options.finite_weights is vouched
        got = LocalModel.from_compiled(compiled, model.inputs).run({"x": x})
        np.testing.assert_allclose(got, model.reference({"x": x}), rtol=1e-6, equal_nan=True)
