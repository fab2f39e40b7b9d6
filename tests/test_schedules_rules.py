"""Each default-schedule rule on small PrimFuncs shaped like a Transformer's, checked numerically
against the unscheduled function; plus the structural guarantees (recognition by structure,
fall-through to None, aarch64 code generation)."""
import numpy as np
import pytest
import tvm
from tvm import s_tir, te, topi

from canao.codegen.schedules import Injective, Matmul, ParallelFallback, RowReduction, default_schedule_pass

X86 = tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512", "num-cores": 2})
AVX2 = tvm.target.Target({"kind": "llvm", "mcpu": "haswell", "num-cores": 2})
ARM = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"],
                         "mcpu": "cortex-a76", "num-cores": 4})


def _args(func, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for p in func.params:
        shape, dtype = [int(s) for s in p.ty.shape], str(p.ty.dtype)
        if dtype.startswith("int"):
            out.append(rng.integers(0, 2, shape).astype(dtype))
        else:
            out.append(rng.standard_normal(shape).astype(dtype))
    return out


def runnable(target):
    """``target`` itself where this CPU can execute its code, else this CPU's own target: the
    schedule made for ``target`` is still what runs, only the instruction set differs (AVX-512 code
    on a CPU without it would die with SIGILL)."""
    from canao.codegen.targets import host_can_run, resolve_target

    return target if host_can_run(target) else resolve_target("x86").tvm_target()


def check(rule, func, target=X86, atol=2e-5):
    """Rule applies, and the scheduled function computes what the unscheduled one does (code is
    generated for ``target``; it runs on this CPU, see ``runnable``)."""
    sch = rule.apply(func, target, False)
    assert sch is not None, f"{type(rule).__name__} did not recognise the function"
    tvm.tirx.build(sch.mod["main"], target=target)  # code generation for the rule's target works
    run_on = runnable(target)
    ref_lib = tvm.tirx.build(func, target=run_on)
    new_lib = tvm.tirx.build(sch.mod["main"], target=run_on)
    data = _args(func)
    ref = [tvm.runtime.tensor(a) for a in data]
    new = [tvm.runtime.tensor(a) for a in data]
    ref_lib["main"](*ref)
    new_lib["main"](*new)
    np.testing.assert_allclose(new[-1].numpy(), ref[-1].numpy(), atol=atol, rtol=1e-5)
    return sch


def _loops_kinds(sch):
    text = sch.mod.script()
    return "T.parallel" in text, "T.vectorized" in text


def _matmul(a, b):
    k = te.reduce_axis((0, int(a.shape[-1])), "k")
    if len(a.shape) == 3:
        return te.compute((a.shape[0], a.shape[1], b.shape[2]),
                          lambda z, i, j: te.sum(a[z, i, k] * b[z, k, j], axis=k), name="matmul")
    return te.compute((a.shape[0], b.shape[1]), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="matmul")


def test_matmul_bias_gelu_epilogue():
    a, w, bias = te.placeholder((64, 96), name="A"), te.placeholder((96, 128), name="W"), te.placeholder((128,), name="b")
    y = topi.add(_matmul(a, w), bias)
    gelu = te.compute(y.shape, lambda i, j: y[i, j] * (0.5 + 0.5 * te.erf(y[i, j] * 0.7071067811865476)), name="gelu")
    sch = check(Matmul(), te.create_prim_func([a, w, bias, gelu]))
    assert _loops_kinds(sch) == (True, True)


@pytest.mark.parametrize("target", [X86, AVX2, ARM], ids=["avx512", "avx2", "neon"])
def test_reshape_epilogue_whose_rows_straddle_the_column_tile(target):
    """[16, 96] written as [16, 4, 24]: a 16- or 32-column register tile spans two 24-wide rows of
    the epilogue, which must then not be computed under the tile (it gave wrong numbers on AVX-512,
    found by DeBERTa's Q projection)."""
    a, w = te.placeholder((16, 32), name="A"), te.placeholder((32, 96), name="W")
    y = _matmul(a, w)
    out = te.compute((16, 4, 24), lambda i, h, d: y[i, h * 24 + d], name="T_reshape")
    check(Matmul(), te.create_prim_func([a, w, out]), target=target)


def test_batch_matmul_writes_output_directly():
    q, k = te.placeholder((4, 32, 16), name="Q"), te.placeholder((4, 16, 48), name="K")
    check(Matmul(), te.create_prim_func([q, k, _matmul(q, k)]))


def test_matmul_residual_layernorm_in_one_primfunc():
    """LP-Fusion's bigger groups: the LayerNorm reduces along n, so tiles become whole rows."""
    a, w = te.placeholder((32, 64), name="A"), te.placeholder((64, 96), name="W")
    bias, res = te.placeholder((96,), name="b"), te.placeholder((32, 96), name="R")
    gamma, beta = te.placeholder((96,), name="g"), te.placeholder((96,), name="beta")
    y = topi.add(topi.add(_matmul(a, w), bias), res)
    out = topi.nn.layer_norm(y, gamma, beta, axis=[1], epsilon=1e-12)
    sch = check(Matmul(), te.create_prim_func([a, w, bias, res, gamma, beta, out]), atol=1e-4)
    assert "T.parallel" in sch.mod.script()


def test_attention_scores_scale_mask_softmax_in_one_primfunc():
    q, kt = te.placeholder((2, 32, 16), name="Q"), te.placeholder((2, 16, 32), name="Kt")
    mask = te.placeholder((32,), name="mask")
    s = _matmul(q, kt)
    scaled = te.compute(s.shape, lambda z, i, j: s[z, i, j] * 0.25 + mask[j], name="scaled")
    check(Matmul(), te.create_prim_func([q, kt, mask, topi.nn.softmax(scaled, axis=-1)]), atol=1e-5)


def test_transposed_weight_falls_through_to_dot_products():
    """B stored [n, k] gives no contiguous vector operand: the matmul rule declines (None) and the
    next rule runs each output as a dot product vectorised along k."""
    a, w = te.placeholder((16, 32), name="A"), te.placeholder((48, 32), name="W")
    k = te.reduce_axis((0, 32), "k")
    c = te.compute((16, 48), lambda i, j: te.sum(a[i, k] * w[j, k], axis=k), name="matmul_nt")
    func = te.create_prim_func([a, w, c])
    assert Matmul().apply(func, X86, False) is None
    assert "_rf" in check(RowReduction(), func).mod.script()
    check(ParallelFallback(), func)


def test_softmax_with_mask_row_reduction():
    x, keep = te.placeholder((1, 4, 64, 128), name="x"), te.placeholder((1, 4, 64, 1), name="keep", dtype="int8")
    sm = topi.nn.softmax(x, axis=-1)
    out = te.compute(sm.shape, lambda a, b, c, d: te.if_then_else(keep[a, b, c, 0] > 0, sm[a, b, c, d], 0.0), name="out")
    sch = check(RowReduction(), te.create_prim_func([x, keep, out]), atol=1e-6)
    assert "_rf" in sch.mod.script()  # the row max / sum run as vector partial reductions


@pytest.mark.parametrize("target", [X86, AVX2, ARM], ids=["avx512", "avx2", "neon"])
def test_layernorm_behind_residual_add(target):
    x, r = te.placeholder((1, 64, 384), name="x"), te.placeholder((1, 64, 384), name="r")
    g, b = te.placeholder((384,), name="g"), te.placeholder((384,), name="b")
    func = te.create_prim_func([x, r, g, b, topi.nn.layer_norm(topi.add(x, r), g, b, axis=[2], epsilon=1e-12)])
    if target is ARM:  # cross target: the schedule must apply and generate aarch64 code
        sch = RowReduction().apply(func, target, False)
        assert sch is not None and tvm.tirx.build(sch.mod["main"], target=target) is not None
    else:
        check(RowReduction(), func, target, atol=1e-5)


def test_transpose_reshape_chain_is_one_injective_loop():
    x = te.placeholder((128, 384), name="x")
    y = topi.reshape(topi.transpose(topi.reshape(x, (1, 128, 12, 32)), (0, 2, 1, 3)), (12, 128, 32))
    sch = check(Injective(), te.create_prim_func([x, y]))
    assert len([b for b in sch.mod.script().split("T.sblock(") if b]) - 1 <= 2  # root + one block


def test_take_gather_is_vectorised_along_the_row():
    table, idx = te.placeholder((1000, 384), name="table"), te.placeholder((128,), name="idx", dtype="int32")
    sch = check(Injective(), te.create_prim_func([table, idx, topi.take(table, idx, axis=0)]))
    assert _loops_kinds(sch) == (True, True)


def test_matmul_tiles_follow_the_target():
    a, w = te.placeholder((64, 96), name="A"), te.placeholder((96, 128), name="W")
    func = te.create_prim_func([a, w, topi.add(_matmul(a, w), 1.0)])
    texts = {name: Matmul().apply(func, t, False).mod.script() for name, t in (("avx512", X86), ("neon", ARM))}
    assert "T.vectorized(16)" in texts["avx512"] and "T.vectorized(4)" in texts["neon"]
    sch = Matmul().apply(func, ARM, False)
    assert tvm.tirx.build(sch.mod["main"], target=ARM) is not None


def test_pass_skips_functions_already_scheduled():
    a, w = te.placeholder((16, 32), name="A"), te.placeholder((32, 48), name="W")
    func = te.create_prim_func([a, w, _matmul(a, w)])
    tuned = func.with_attr("tirx.is_scheduled", True)
    mod = tvm.IRModule({"tuned": tuned, "fresh": func})
    with X86:
        out = default_schedule_pass()(mod)
    assert out["tuned"].same_as(mod["tuned"]) or tvm.ir.structural_equal(out["tuned"], tuned)
    assert "T.parallel" in out["fresh"].script() and out["fresh"].attrs["tirx.is_scheduled"]
