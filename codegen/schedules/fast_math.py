"""Vectorisable erf and exp for fp32: polynomial forms that LLVM turns into SIMD code.

TVM lowers ``T.erf`` / ``T.exp`` to scalar libm calls (``erff``, ``llvm.exp.f32``), so a GELU or
softmax loop stays scalar however it is scheduled (GELU alone costs ~1.9 ms per MiniLM inference
under tuned stock TVM). This module rewrites those calls, inside the blocks of a PrimFunc, into
plain arithmetic + selects that vectorise:

* erf(x) = x * P(x^2) / Q(x^2) on |x| <= 4 (degrees 5/5), clamped outside: the coefficients were
  fitted for this project by iteratively reweighted least squares in float64 (``fit_erf`` below
  reproduces them); max abs error evaluated in fp32 over [-5, 5] is 4e-7.
* exp(x) = p(r) * 2^n with n = floor(x log2 e + 1/2), r = x - n ln 2 (two-part ln 2), p a degree-6
  polynomial fitted on [-ln2/2, ln2/2] (``fit_exp``); 2^n is built from the exponent bits. Max
  relative error in fp32 over [-87.3, 88.37] is 1.1e-7. Below -87.3 the result is 0, above 88.37
  it is +inf, NaN stays NaN.

Why at TIR level (and not as a Relax legalisation override): it applies to whatever PrimFunc the
fusion stage produced (stock FuseOps or LP-Fusion's bigger groups) without touching operator
patterns upstream, and it is registered at the front of the "schedule" slot so tuning and default
schedules both see the vectorisable form.
"""
import math
from typing import Callable, Optional

# x * P(t) / Q(t), t = x^2 (lowest degree first); see fit_erf().
ERF_P = (1.1283789773545447, 0.1962449516882413, 0.05346662815679626, 0.004003358929066619,
         0.0002880158106798971, 1.9746313869669714e-06)
ERF_Q = (1.0, 0.507248727576345, 0.11647446230825664, 0.015443900125732978, 0.001216252177763568,
         3.747741013486478e-05)
ERF_CLAMP = 4.0
# exp(r) on [-ln2/2, ln2/2] (lowest degree first); see fit_exp().
EXP_P = (1.0, 1.0000000360921264, 0.4999999535099424, 0.1666642094513208, 0.04166772432092574,
         0.008374763974941314, 0.001385929107716396)
EXP_LO, EXP_HI = -87.3, 88.37
LN2_HI, LN2_LO = 0.693359375, -2.12194440e-4  # ln 2 = LN2_HI + LN2_LO, LN2_HI exact in 8 bits


def _horner(coeffs, t):
    from tvm import tirx

    acc = tirx.const(coeffs[-1], "float32")
    for c in reversed(coeffs[:-1]):
        acc = acc * t + tirx.const(c, "float32")
    return acc


def _bind(value, body_of: Callable):
    """Build the body from ``value`` written out inline, not Let-bound: MetaSchedule's FLOP
    estimator (run on every task it tunes) has no rule for tirx.Let and aborts, and LLVM's CSE
    computes each shared subexpression once all the same."""
    return body_of(value)


def erf_f32(x):
    """A vectorisable fp32 erf expression of ``x`` (a float32 PrimExpr)."""
    from tvm import tirx

    def body(v):
        c = tirx.const(ERF_CLAMP, "float32")
        return _bind(tirx.Min(tirx.Max(v, -c), c), lambda xc: _bind(
            xc * xc, lambda t: tirx.Select(tirx.isnan(v), v, xc * _horner(ERF_P, t) / _horner(ERF_Q, t))))

    return _bind(x, body)


def exp_f32(x):
    """A vectorisable fp32 exp expression of ``x`` (a float32 PrimExpr)."""
    from tvm import tirx

    def f32(c):
        return tirx.const(c, "float32")

    def body(v):
        def with_n(xc, n):
            bits = tirx.Cast("int32", n) + tirx.const(127, "int32")
            scale = tirx.call_intrin("float32", "tirx.reinterpret", tirx.shift_left(bits, tirx.const(23, "int32")))
            return _bind(xc - n * f32(LN2_HI) - n * f32(LN2_LO), lambda r: tirx.Select(
                tirx.isnan(v), v, tirx.Select(v > f32(EXP_HI), f32(math.inf), tirx.Select(
                    v < f32(EXP_LO), f32(0.0), _horner(EXP_P, r) * scale))))

        return _bind(tirx.Min(tirx.Max(v, f32(EXP_LO)), f32(EXP_HI)), lambda xc: _bind(
            tirx.floor(xc * f32(1.4426950408889634) + f32(0.5)), lambda n: with_n(xc, n)))

    return _bind(x, body)


_REWRITES = {"tirx.erf": erf_f32, "tirx.exp": exp_f32}


def rewrite_expr(expr, on_call: Callable):
    """Rebuild ``expr`` bottom-up, letting ``on_call(call, new_args)`` replace Call nodes.

    Covers the node kinds legalised Relax ops produce; any other node is kept as it is (its
    sub-expressions are then simply not rewritten, which is safe).
    """
    from tvm import tirx
    from tvm.ir import Call

    def visit(e):
        if isinstance(e, Call):
            args = [visit(a) for a in e.args]
            replaced = on_call(e, args)
            if replaced is not None:
                return replaced
            if all(a.same_as(b) for a, b in zip(args, e.args)):
                return e
            return Call(e.op, args, e.attrs, e.ty_args, ret_ty=e.ty)
        for kind in _BINARY:
            if isinstance(e, kind):
                a, b = visit(e.a), visit(e.b)
                return e if a.same_as(e.a) and b.same_as(e.b) else kind(a, b)
        if isinstance(e, tirx.Cast):
            v = visit(e.value)
            return e if v.same_as(e.value) else tirx.Cast(e.dtype, v)
        if isinstance(e, tirx.Not):
            v = visit(e.a)
            return e if v.same_as(e.a) else tirx.Not(v)
        if isinstance(e, tirx.Select):
            c, t, f = visit(e.condition), visit(e.true_value), visit(e.false_value)
            same = c.same_as(e.condition) and t.same_as(e.true_value) and f.same_as(e.false_value)
            return e if same else tirx.Select(c, t, f)
        if isinstance(e, tirx.Let):
            v, b = visit(e.value), visit(e.body)
            return e if v.same_as(e.value) and b.same_as(e.body) else tirx.Let(e.var, v, b)
        return e

    return visit(expr)


def _binary_kinds():
    from tvm import tirx

    return tuple(getattr(tirx, n) for n in ("Add", "Sub", "Mul", "Div", "Mod", "FloorDiv", "FloorMod", "Min",
                                            "Max", "EQ", "NE", "LT", "LE", "GT", "GE", "And", "Or"))


_BINARY = ()


def _polynomial_call(call, args):
    name = getattr(call.op, "name", "")
    build = _REWRITES.get(name)
    if build is None or str(getattr(call.ty, "dtype", "")) != "float32" or len(args) != 1:
        return None
    return build(args[0])


def rewrite_func(func) -> Optional[object]:
    """``func`` with every fp32 erf/exp call in its blocks replaced; None if it has none."""
    global _BINARY
    from tvm import s_tir, tirx

    if not _BINARY:
        _BINARY = _binary_kinds()
    sch = s_tir.Schedule(func)
    changed = False
    for block_rv in _all_blocks(sch):
        block = sch.get(block_rv)
        if not isinstance(block.body, tirx.BufferStore):
            continue
        store = block.body
        value = rewrite_expr(store.value, _polynomial_call)
        if value.same_as(store.value):
            continue
        new_store = tirx.BufferStore(store.buffer, value, store.indices)
        new_block = s_tir.SBlock(block.iter_vars, block.reads, block.writes, block.name_hint, new_store,
                                 block.init, block.alloc_buffers, block.match_buffers, block.annotations)
        sch.state.replace(sch.get_sref(block_rv), new_block, {block: new_block})
        changed = True
    return sch.mod["main"] if changed else None


def _all_blocks(sch):
    """Every block below the root, outermost first."""
    from tvm.s_tir.dlight.analysis import get_root_block

    out = []
    frontier = list(sch.get_child_blocks(get_root_block(sch)))
    while frontier:
        blk = frontier.pop(0)
        out.append(blk)
        frontier.extend(sch.get_child_blocks(blk))
    return out


def has_transcendental(func) -> bool:
    """Whether ``func`` still calls erf/exp (cheap text check used by tests and the benchmark)."""
    text = func.script()
    return "T.erf(" in text or "T.exp(" in text


def vectorizable_math_pass(skip: Callable = None):
    """A module pass rewriting fp32 erf/exp in every PrimFunc (except those ``skip(func)`` names)."""
    import tvm
    from tvm import tirx

    @tvm.transform.module_pass(opt_level=0, name="CanaoVectorizableMath")
    def _pass(mod, _ctx):
        updates = {}
        for gv, func in mod.functions_items():
            if not isinstance(func, tirx.PrimFunc) or (skip is not None and skip(func)):
                continue
            new = rewrite_func(func)
            if new is not None:
                updates[gv] = new
        if not updates:
            return mod
        out = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)  # never write into the input
        for gv, func in updates.items():
            out[gv] = func
        return out

    return _pass


def fit_erf(num_degree: int = 5, den_degree: int = 5, iters: int = 60):
    """Refit ERF_P / ERF_Q (float64, needs scipy): returns (P, Q, max abs error of the fit)."""
    import numpy as np
    from scipy.special import erf

    x = np.linspace(0, ERF_CLAMP, 20001)
    t, y = x * x, erf(x)
    w, q = np.ones_like(x), np.ones_like(x)
    for _ in range(iters):
        cols = [x * t ** i for i in range(num_degree + 1)] + [-y * t ** i for i in range(1, den_degree + 1)]
        a = np.stack(cols, 1) / q[:, None]
        sol, *_ = np.linalg.lstsq(a * np.sqrt(w)[:, None], y / q * np.sqrt(w), rcond=None)
        p, qc = sol[:num_degree + 1], np.concatenate([[1.0], sol[num_degree + 1:]])
        q = np.polyval(qc[::-1], t)
        err = x * np.polyval(p[::-1], t) / q - y
        w = w * (np.abs(err) / np.abs(err).max() + 1e-3)
        w /= w.mean()
    return tuple(p), tuple(qc), float(np.abs(err).max())


def fit_exp(degree: int = 6):
    """Refit EXP_P (float64 least squares on Chebyshev nodes, relative error, p(0) = 1)."""
    import numpy as np

    h = math.log(2) / 2
    r = h * np.cos(np.pi * (np.arange(4000) + 0.5) / 4000)
    y = np.exp(r)
    a = np.stack([r ** i for i in range(1, degree + 1)], 1) / y[:, None]
    c, *_ = np.linalg.lstsq(a, 1 - 1 / y, rcond=None)
    coeffs = (1.0,) + tuple(c)
    return coeffs, float(np.abs(np.polyval(coeffs[::-1], r) / y - 1).max())
