"""The vectorisable erf / exp: accuracy against float64 references, special values, and that
LLVM really emits vector code (no libm call left)."""
import numpy as np
import pytest
import tvm
from scipy.special import erf as erf64
from tvm import s_tir, te

from canao.codegen.schedules.fast_math import has_transcendental, rewrite_func

AVX512 = {"kind": "llvm", "mcpu": "skylake-avx512"}


def _runnable():
    """AVX-512 where this CPU has it (the widest vectors), else this CPU's own target: the accuracy
    tests execute the code, and AVX-512 code on a CPU without it dies with SIGILL."""
    from canao.codegen.targets import host_can_run, resolve_target

    return AVX512 if host_can_run(tvm.target.Target(AVX512)) else resolve_target("x86").target_dict


RUN = _runnable()


def _build(fn, n, target=AVX512):
    a = te.placeholder((n,), name="A")
    b = te.compute((n,), lambda i: fn(a[i]), name="B")
    func = rewrite_func(te.create_prim_func([a, b]))
    assert func is not None and not has_transcendental(func)
    sch = s_tir.Schedule(func)
    (loop,) = sch.get_loops(sch.get_sblock("B"))
    sch.vectorize(sch.split(loop, [None, 16])[1])
    return tvm.tirx.build(sch.mod, target=tvm.target.Target(target))


def _run(lib, x):
    out = tvm.runtime.tensor(np.zeros_like(x))
    lib["main"](tvm.runtime.tensor(x), out)
    return out.numpy()


def test_erf_within_fp32_tolerance():
    x = np.linspace(-6, 6, 1 << 20).astype("float32")
    got = _run(_build(te.erf, x.size, RUN), x)
    assert np.abs(got.astype("float64") - erf64(x.astype("float64"))).max() < 1e-6


def test_exp_relative_error_and_range():
    x = np.linspace(-87, 88, 1 << 20).astype("float32")
    got = _run(_build(te.exp, x.size, RUN), x)
    rel = np.abs(got.astype("float64") / np.exp(x.astype("float64")) - 1)
    assert rel.max() < 3e-7


def test_special_values_follow_libm():
    x = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0, -0.0, 100.0, -100.0, 1e-30] + [0.5] * 6, "float32")
    with np.errstate(over="ignore"):
        for fn, ref in ((te.erf, erf64(x.astype("float64"))), (te.exp, np.exp(x.astype("float64")))):
            got = _run(_build(fn, x.size, RUN), x)
            np.testing.assert_allclose(got, ref.astype("float32"), rtol=3e-7, atol=1e-30, equal_nan=True)


@pytest.mark.parametrize("fn", [te.erf, te.exp], ids=["erf", "exp"])
def test_llvm_emits_vector_code_without_libm(fn):
    ll = _build(fn, 1024).inspect_source("ll")
    assert "@erff" not in ll and "llvm.exp." not in ll and "@expf" not in ll
    assert "<16 x float>" in ll or "<8 x float>" in ll


def test_other_dtypes_untouched():
    a = te.placeholder((8,), name="A", dtype="float64")
    b = te.compute((8,), lambda i: te.erf(a[i]), name="B")
    assert rewrite_func(te.create_prim_func([a, b])) is None
