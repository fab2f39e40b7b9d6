"""Property tests: random element-wise DAGs with broadcast constants keep their numbers when rewritten,
and the hot path never gets more expensive."""
import numpy as np
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from tvm import relax

from canao.fusion.polynomial import PolynomialSimplify, RewriteLog
from canao.fusion.polynomial.check import relative_error, run_module, runtime_elementwise_flops

F32 = "float32"
X_SHAPE, W_SHAPE = (2, 3, 8), (8,)
CONST_SHAPES = [(), (8,), (3, 1), (1, 3, 8)]

step = st.tuples(
    st.sampled_from(["add", "sub", "mul", "div", "neg", "exp_tanh", "sqrt_sq1", "erf", "tanh", "square",
                     "where", "fill", "bcast"]),
    st.integers(0, 1000), st.integers(0, 1000),
    st.sampled_from(CONST_SHAPES), st.floats(0.25, 3.0), st.booleans())


def build_dag(steps):
    """main(x, m, w) -> (last node, an intermediate fed to a reduction): a random DAG over x, w, constants."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(X_SHAPE, F32))
    m = relax.Var("m", relax.TensorType((1, 3, 8), "bool"))
    w = relax.Var("w", relax.TensorType(W_SHAPE, F32))
    with bb.function("main", [x, m, w], attrs={"num_input": 2}):
        with bb.dataflow():
            pool = [x, w]
            for kind, i, j, cshape, cval, use_const in steps:
                a = pool[i % len(pool)]
                if use_const:
                    b = relax.const(np.full(cshape, cval, F32)) if cshape else relax.const(cval, F32)
                else:
                    b = pool[j % len(pool)]
                if kind in ("add", "sub", "mul"):
                    e = getattr(relax.op, {"add": "add", "sub": "subtract", "mul": "multiply"}[kind])(a, b)
                elif kind == "div":  # divide by something bounded away from zero
                    e = relax.op.divide(a, relax.op.add(relax.op.exp(relax.op.tanh(b)), relax.const(0.5, F32)))
                elif kind == "neg":
                    e = relax.op.negative(a)
                elif kind == "exp_tanh":
                    e = relax.op.exp(relax.op.tanh(a))
                elif kind == "sqrt_sq1":
                    e = relax.op.sqrt(relax.op.add(relax.op.multiply(a, a), relax.const(1.0, F32)))
                elif kind in ("erf", "tanh"):
                    e = getattr(relax.op, kind)(a)
                elif kind == "square":
                    e = relax.op.power(a, relax.const(2.0, F32))
                elif kind == "where":
                    e = relax.op.where(m, a, b)
                elif kind == "fill":
                    e = relax.op.add(a, relax.op.full_like(a, relax.const(cval, F32)))
                else:
                    e = relax.op.broadcast_to(a, relax.ShapeExpr(list(X_SHAPE)))
                e = bb.emit(e)
                pool.append(e)
            side = bb.emit(relax.op.sum(pool[len(pool) // 2], axis=[-1]))
            out = bb.emit_output(relax.Tuple([pool[-1], side]))
        bb.emit_func_output(out)
    return bb.get()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.generate], derandomize=True)
@given(st.lists(step, min_size=2, max_size=9), st.integers(0, 2**16))
def test_random_dags_keep_numbers_and_never_cost_more(steps, seed):
    mod = build_dag(steps)
    log = RewriteLog()
    new = PolynomialSimplify(log=log)(mod)
    assert relax.analysis.check_well_formed(new)
    rng = np.random.default_rng(seed)
    args = [rng.standard_normal(X_SHAPE).astype(F32), rng.random((1, 3, 8)) > 0.5,
            rng.uniform(0.5, 1.5, W_SHAPE).astype(F32)]
    reference, candidate = run_module(mod, args), run_module(new, args)
    assert relative_error(reference, candidate) <= 1e-5
    assert runtime_elementwise_flops(new) <= runtime_elementwise_flops(mod)
    for record in log.records:
        assert record.cost_after.score < record.cost_before.score
