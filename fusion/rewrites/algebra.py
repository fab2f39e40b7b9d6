"""LP-Fusion's algebraic rules on Relax operators: commutativity, distributivity, constant folding
into weights, dead broadcasts, the shared mask test and scalar fills.

Each rule is an identity for every input, +-inf and NaN included, applied only where its stated
preconditions are proven on the IR (static shapes, single use, finite scalars); ``HoistMaskTest`` is
the one rule that also rests on an assumption about values (finite attention scores), which its
docstring states. Left-hand sides are declared as ``tvm.relax.dpl`` patterns; what dpl cannot express
(use counts, weight-only operands, the value of a constant) is checked on the match.
"""
import numpy as np
import tvm_ffi
from tvm import relax
from tvm.relax.dpl import ConstantPattern, WildcardPattern, is_const, is_op, wildcard

from ..dataflow import scalar_constant, shape_of
from .base import Match, Rule

# Operators that only move data: a scalar multiply commutes with them.
_LAYOUT_OPS = ("relax.reshape", "relax.permute_dims", "relax.expand_dims", "relax.squeeze")
# How many layout ops (or scalings) a pattern looks through between a matmul and its user.
LAYOUT_DEPTH = 6


def _through_layout(inner, depth: int = LAYOUT_DEPTH, scalings: bool = False):
    """``inner`` seen through up to ``depth`` layout ops (and, with ``scalings``, multiplies by a
    constant): a dpl pattern, since dpl has no repetition operator."""
    pattern = inner
    for _ in range(depth):
        step = is_op("relax.reshape")(pattern, wildcard())
        for name in _LAYOUT_OPS[1:]:
            step = step | is_op(name)(pattern)
        if scalings:
            step = step | is_op("relax.multiply")(pattern, is_const())
        pattern = inner | step
    return pattern


def _matched(found, kind) -> list:
    """The matched expressions whose pattern is a ``kind`` (e.g. ConstantPattern)."""
    return [expr for pat, expr in found.items() if isinstance(pat, kind)]


def _same_shape(a, b) -> bool:
    """Both have a known shape and it is the same (read from the Relax types, symbolic dims included)."""
    sa, sb = getattr(a.ty, "shape", None), getattr(b.ty, "shape", None)
    return sa is not None and sb is not None and tvm_ffi.structural_equal(sa, sb)


class MatmulFirstInAdd(Rule):
    """Commutativity: ``b + x@W`` -> ``x@W + b``, the canonical form bias-add patterns (and TVM's
    CombineParallelMatmul) look for. Exact (IEEE addition commutes). Precondition: the sum has the
    matmul's shape (a bias that broadcasts the matmul up is left alone)."""

    name = "commute-bias-add"
    root_op = "relax.add"
    before, after = "bias + x@W", "x@W + bias"
    _matmul = is_op("relax.matmul")(wildcard(), wildcard())

    def match(self, view, var, call):
        lhs, rhs = call.args
        if self._matmul.match(rhs, view.var2val) and not self._matmul.match(lhs, view.var2val) \
                and shape_of(rhs) == shape_of(call):
            return Match({var: lambda emit, a=lhs, b=rhs: relax.op.add(emit.get(b), emit.get(a))})
        return None


class FoldScaleIntoWeights(Rule):
    """Distributivity + constant folding: ``((x@W + b) -> reshape/permute...) * c`` becomes
    ``(x@(W*c) + b*c) -> reshape/permute...``; W*c and b*c depend only on weights, so they are
    computed once at compile time and the multiply disappears from the hot path (e.g. attention's
    1/sqrt(d) scaling on Q and K).

    Preconditions: c is a *finite* scalar constant (c = inf turns a zero row of x into NaN); W and b
    are weight-only and x is not; every intermediate (matmul, bias add, layout ops) has this multiply
    as its only user; at most ``LAYOUT_DEPTH`` layout ops; b is a vector (or has a leading 1).
    Holds for every x, +-inf and NaN included: multiplying by a finite c maps inf to inf and 0 to 0
    on both sides (rounding and overflow of W*c aside).
    """

    name = "fold-scale-into-weights"
    root_op = "relax.multiply"
    _mm = is_op("relax.matmul")(wildcard(), wildcard())
    _bias = wildcard()
    _add = is_op("relax.add")(_mm, _bias)
    _scale = is_const()
    _pattern = is_op("relax.multiply")(_through_layout(_add | _mm), _scale)

    def match(self, view, var, call):
        found = self._pattern.extract_matched_expr(call, view.var2val)
        if found is None:
            return None
        c = scalar_constant(found[self._scale])
        if c is None or not np.isfinite(c):
            return None
        t = next(a for a in call.args if not a.same_as(found[self._scale]))
        if not isinstance(t, relax.Var) or shape_of(t) != shape_of(call):
            return None
        val2var = {value: v for v, value in view.var2val.items()}
        # every call between the matmul and the multiply is used by the next one only
        chain = [e for p, e in found.items()  # the matched ops themselves, not what wildcards bound
                 if isinstance(e, relax.Call) and not e.same_as(call) and not isinstance(p, WildcardPattern)]
        if not all(view.single_use(val2var.get(e)) for e in chain):
            return None
        mm_call = found[self._mm]
        x, w = mm_call.args
        if not view.is_weight_only(w) or view.is_weight_only(x):
            return None
        mm_var = val2var[mm_call]
        add_var, bias = None, None
        if self._add in found:
            add_var, bias = val2var[found[self._add]], found[self._bias]
            if not view.is_weight_only(bias):
                return None
            bias_shape = shape_of(bias)
            if bias_shape is None or len(bias_shape) > 1 and bias_shape[0] != 1:
                return None
        const = relax.const(c, call.ty.dtype)
        builds = {mm_var: lambda emit, x=x, w=w, k=const: relax.op.matmul(
            emit.get(x), emit.emit(relax.op.multiply(emit.get(w), k)))}
        if add_var is not None:
            builds[add_var] = lambda emit, mm=mm_var, b=bias, k=const: relax.op.add(
                emit.get(mm), emit.emit(relax.op.multiply(emit.get(b), k)))
        builds[var] = lambda emit, t=t: emit.get(t)
        return Match(builds, detail={"scale": c, "at": var.name},
                     before=f"(x@W + b) -> layout -> * {c:.6g}", after=f"x@(W*{c:.6g}) + b*{c:.6g} -> layout")


class DropNoopBroadcast(Rule):
    """``broadcast_to(x, shape(x))`` -> ``x``. Exact. Precondition: both shapes are known and equal."""

    name = "drop-noop-broadcast"
    root_op = "relax.broadcast_to"
    before, after = "broadcast_to(x, shape(x))", "x"

    def match(self, view, var, call):
        x = call.args[0]
        if shape_of(x) is not None and shape_of(x) == shape_of(call) and x.ty.dtype == call.ty.dtype:
            return Match({var: lambda emit, x=x: emit.get(x)})
        return None


class HoistMaskTest(Rule):
    """``(S + M) == -inf`` -> ``M == -inf`` when S is a matmul's output (through layout ops and
    finite scalings): the "row is fully masked" test of safe softmax then depends on the mask alone,
    so common sub-expression elimination computes it once for all layers instead of once per layer.

    Precondition on values (an assumption, not proven on the IR, as in ONNX Runtime's attention
    fusion): the scores S are finite. For S = NaN or +-inf the two sides differ. Precondition on
    shapes (proven): the result keeps the shape of ``S + M``; where M is smaller (a [1, 1, 1, L]
    mask against [1, H, L, L] scores), the test on M is broadcast back with an explicit
    ``broadcast_to``, so no consumer sees a different shape. At most ``LAYOUT_DEPTH`` ops between
    the matmul and the add.
    """

    name = "hoist-mask-test"
    root_op = "relax.equal"
    before, after = "(scores + mask) == -inf", "mask == -inf (shared by all layers)"
    _scores = _through_layout(is_op("relax.matmul")(wildcard(), wildcard()), scalings=True)
    _mask = wildcard()
    _neg_inf = is_const()
    _pattern = is_op("relax.equal")(is_op("relax.add")(_scores, _mask), _neg_inf)

    def match(self, view, var, call):
        found = self._pattern.extract_matched_expr(call, view.var2val)
        if found is None:
            return None
        c = scalar_constant(found[self._neg_inf])
        if c is None or not np.isneginf(c):
            return None
        scalings = [scalar_constant(e) for e in _matched(found, ConstantPattern)
                    if not e.same_as(found[self._neg_inf])]
        if not all(s is not None and np.isfinite(s) for s in scalings):
            return None
        out_shape = getattr(call.ty, "shape", None)
        if out_shape is None or not isinstance(out_shape, relax.ShapeExpr):
            return None  # the shape to keep is not known
        m, r = found[self._mask], found[self._neg_inf]
        if _same_shape(m, call):
            return Match({var: lambda emit, m=m, r=r: relax.op.equal(emit.get(m), r)})
        return Match({var: lambda emit, m=m, r=r, shape=out_shape: relax.op.broadcast_to(
            emit.emit(relax.op.equal(emit.get(m), r)), shape)})


class WhereZeroLikeToScalar(Rule):
    """``where(c, full_like(y, v), z)`` -> ``where(c, v, z)``: a broadcast scalar instead of a
    materialized tensor of v. Exact for every v (+-inf and NaN included). Preconditions: v is a
    scalar constant, and z has the shape of the result (so dropping full_like's shape changes none)."""

    name = "full-like-to-scalar"
    root_op = "relax.where"
    before, after = "where(c, full_like(y, v), y)", "where(c, v, y)"
    _fill = is_const()
    _pattern = is_op("relax.where")(wildcard(), is_op("relax.full_like")(wildcard(), _fill), wildcard())

    def match(self, view, var, call):
        found = self._pattern.extract_matched_expr(call, view.var2val)
        if found is None:
            return None
        cond, _, z = call.args
        fill_value = scalar_constant(found[self._fill])
        if fill_value is None or shape_of(z) != shape_of(call) or shape_of(call) is None:
            return None
        const = relax.const(fill_value, call.ty.dtype)
        return Match({var: lambda emit, cond=cond, k=const, z=z: relax.op.where(emit.get(cond), k, emit.get(z))})


class LinearOnLeadingDims(Rule):
    """``reshape(reshape(x, [M, K]) @ W + b, S)`` -> ``reshape(x @ W + b, S)`` (the reshape dropped
    when S is already the shape of ``x @ W``): torch.export lowers a linear layer on a [B, S, K]
    activation to a flatten, a 2-D GEMM and an unflatten. Left in, the two reshapes join the GEMM's
    fusion group and its epilogue (bias, GELU, residual) reads the accumulator through
    ``(i // N + j) % M`` index arithmetic that the vectoriser cannot see through (MiniLM FFN-up +
    GELU: scalar stores). Relax's matmul takes the leading dims as batch dims directly.

    Exact: the same products and sums in the same order, only the indexing changes.
    Preconditions: static shapes; x is [..., K] and the flatten keeps K last (M = prod(x's leading
    dims)); W is 2-D and weight-only; b (optional) is a vector of N, weight-only; the GEMM and the
    bias add have this reshape as their only user.
    """

    name = "linear-on-leading-dims"
    root_op = "relax.reshape"
    before, after = "reshape(reshape(x, [M, K]) @ W + b, S)", "reshape(x @ W + b, S)"
    _x = wildcard()
    _flat = is_op("relax.reshape")(_x, wildcard())
    _w = wildcard()
    _mm = is_op("relax.matmul")(_flat, _w)
    _bias = wildcard()
    _add = is_op("relax.add")(_mm, _bias)
    _pattern = is_op("relax.reshape")(_add | _mm, wildcard())

    def match(self, view, var, call):
        found = self._pattern.extract_matched_expr(call, view.var2val)
        if found is None:
            return None
        x, w = found[self._x], found[self._w]
        x_shape, w_shape, flat_shape = shape_of(x), shape_of(w), shape_of(found[self._flat])
        out_shape = shape_of(call)
        if None in (x_shape, w_shape, flat_shape, out_shape) or len(x_shape) < 3 or len(w_shape) != 2:
            return None
        k, n = w_shape
        if flat_shape != (int(np.prod(x_shape[:-1])), k) or x_shape[-1] != k:
            return None
        if not view.is_weight_only(w) or view.is_weight_only(x):
            return None
        val2var = {value: v for v, value in view.var2val.items()}
        mm_var = val2var.get(found[self._mm])
        top = found[self._add] if self._add in found else found[self._mm]
        if not view.single_use(val2var.get(top)) or not view.single_use(mm_var):
            return None
        bias = found.get(self._bias) if self._add in found else None
        if bias is not None and (shape_of(bias) != (n,) or not view.is_weight_only(bias)):
            return None
        batched = tuple(x_shape[:-1]) + (n,)
        out_dtype = found[self._mm].attrs.out_dtype

        def build(emit, x=x, w=w, bias=bias, out_shape=out_shape, batched=batched, out_dtype=out_dtype):
            y = emit.emit(relax.op.matmul(emit.get(x), emit.get(w), out_dtype=out_dtype))
            if bias is not None:
                y = emit.emit(relax.op.add(y, emit.get(bias)))
            return y if tuple(out_shape) == batched else relax.op.reshape(y, out_shape)

        return Match({var: build})


ALGEBRA_RULES = (MatmulFirstInAdd, FoldScaleIntoWeights, DropNoopBroadcast, HoistMaskTest, WhereZeroLikeToScalar,
                 LinearOnLeadingDims)
