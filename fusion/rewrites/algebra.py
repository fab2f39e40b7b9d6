"""LP-Fusion's algebraic rules on Relax operators: commutativity, distributivity, constant folding
into weights, and dead broadcasts. Each rule is an identity that holds for every input."""
from typing import Callable, Dict

import numpy as np
from tvm import relax

from ..graph import DataflowView, op_name, scalar_constant, shape_of
from .base import RewriteRecord, Rule

# Operators that only move data: a scalar multiply commutes with them.
_LAYOUT_OPS = ("relax.reshape", "relax.permute_dims", "relax.expand_dims", "relax.squeeze")


def _is_matmul(view: DataflowView, expr) -> bool:
    return op_name(view.value(expr)) == "relax.matmul"


class MatmulFirstInAdd(Rule):
    """Commutativity: ``b + x@W`` -> ``x@W + b``, the canonical form bias-add patterns (and TVM's
    CombineParallelMatmul) look for."""

    name = "commute-bias-add"
    description = "add(bias, matmul) -> add(matmul, bias)"

    def plan(self, view, records):
        plan = {}
        for var, value in view.var2val.items():
            if op_name(value) != "relax.add":
                continue
            lhs, rhs = value.args
            if _is_matmul(view, rhs) and not _is_matmul(view, lhs) and shape_of(rhs) == shape_of(value):
                plan[var] = lambda emit, a=lhs, b=rhs: relax.op.add(emit.get(b), emit.get(a))
        if plan:
            records.append(RewriteRecord(self.name, "bias + x@W", "x@W + bias", len(plan)))
        return plan


class FoldScaleIntoWeights(Rule):
    """Distributivity + constant folding: ``((x@W + b) -> reshape/permute...) * c`` becomes
    ``(x@(W*c) + b*c) -> reshape/permute...``; W*c and b*c depend only on weights, so they are
    computed once at compile time and the multiply disappears from the hot path (e.g. attention's
    1/sqrt(d) scaling on Q and K)."""

    name = "fold-scale-into-weights"
    description = "(x@W + b) * c -> x@(W*c) + b*c, through layout-only ops"

    def plan(self, view, records):
        plan: Dict[relax.Var, Callable] = {}
        for var, value in view.var2val.items():
            if op_name(value) != "relax.multiply":
                continue
            a, b = value.args
            c, t = (scalar_constant(b), a) if scalar_constant(b) is not None else (scalar_constant(a), b)
            if c is None or not isinstance(t, relax.Var) or shape_of(t) != shape_of(value):
                continue
            affine = self._find_affine(view, t)
            if affine is None or affine[0] in plan or affine[1] in plan:
                continue
            add_var, mm_var, x, w, bias = affine
            dtype = value.ty.dtype
            const = relax.const(c, dtype)
            plan[mm_var] = lambda emit, x=x, w=w, k=const: relax.op.matmul(
                emit.get(x), emit.emit(relax.op.multiply(emit.get(w), k)))
            if add_var is not None:
                plan[add_var] = lambda emit, mm=mm_var, b=bias, k=const: relax.op.add(
                    emit.get(mm), emit.emit(relax.op.multiply(emit.get(b), k)))
            plan[var] = lambda emit, t=t: emit.get(t)
            records.append(RewriteRecord(self.name, f"(x@W + b) -> layout -> * {c:.6g}",
                                         f"x@(W*{c:.6g}) + b*{c:.6g} -> layout",
                                         detail={"scale": c, "at": var.name}))
        return plan

    @staticmethod
    def _find_affine(view, t):
        """Walk back through single-use layout ops to x@W (+ b) with W, b weight-only."""
        cur = t
        while True:
            if not view.single_use(cur):
                return None
            value = view.var2val.get(cur)
            name = op_name(value)
            if name in _LAYOUT_OPS:
                cur = value.args[0]
                continue
            break
        add_var, bias = None, None
        if name == "relax.add":
            lhs, rhs = value.args
            if _is_matmul(view, lhs) and view.is_weight_only(rhs):
                mm, bias = lhs, rhs
            elif _is_matmul(view, rhs) and view.is_weight_only(lhs):
                mm, bias = rhs, lhs
            else:
                return None
            add_var = cur
            if not isinstance(mm, relax.Var) or not view.single_use(mm):
                return None
        elif name == "relax.matmul":
            mm = cur
        else:
            return None
        mm_value = view.var2val[mm]
        x, w = mm_value.args
        if not view.is_weight_only(w) or view.is_weight_only(x):
            return None
        if bias is not None and len(shape_of(bias) or ()) > 1 and (shape_of(bias) or (0,))[0] != 1:
            return None
        return add_var, mm, x, w, bias


class DropNoopBroadcast(Rule):
    """``broadcast_to(x, shape(x))`` is the identity."""

    name = "drop-noop-broadcast"
    description = "broadcast_to(x, shape of x) -> x"

    def plan(self, view, records):
        plan = {}
        for var, value in view.var2val.items():
            if op_name(value) == "relax.broadcast_to":
                x = value.args[0]
                if shape_of(x) is not None and shape_of(x) == shape_of(value):
                    plan[var] = lambda emit, x=x: emit.get(x)
        if plan:
            records.append(RewriteRecord(self.name, "broadcast_to(x, shape(x))", "x", len(plan)))
        return plan


class HoistMaskTest(Rule):
    """``(S + M) == -inf`` -> ``M == -inf`` when S comes from a matmul (finite scores): the
    "row is fully masked" test of safe softmax then depends on the mask alone, so common
    sub-expression elimination computes it once for all layers instead of once per layer.
    (Assumes finite attention scores, as ONNX Runtime's attention fusion does.)"""

    name = "hoist-mask-test"
    description = "(scores + mask) == -inf -> mask == -inf"

    def plan(self, view, records):
        plan = {}
        for var, value in view.var2val.items():
            if op_name(value) != "relax.equal":
                continue
            lhs, rhs = value.args
            c = scalar_constant(rhs)
            if c is None or not np.isneginf(c):
                continue
            summed = view.value(lhs)
            if op_name(summed) != "relax.add":
                continue
            s, m = summed.args
            if not self._from_matmul(view, s):
                s, m = m, s
                if not self._from_matmul(view, s):
                    continue
            plan[var] = lambda emit, m=m, r=rhs: relax.op.equal(emit.get(m), r)
        if plan:
            records.append(RewriteRecord(self.name, "(scores + mask) == -inf", "mask == -inf (shared by all layers)",
                                         len(plan)))
        return plan

    @staticmethod
    def _from_matmul(view, expr):
        """A matmul's output seen through layout ops and finite scalar scalings."""
        value = view.value(expr)
        while True:
            name = op_name(value)
            if name in _LAYOUT_OPS:
                value = view.value(value.args[0])
            elif name == "relax.multiply" and any(
                    scalar_constant(a) is not None and np.isfinite(scalar_constant(a)) for a in value.args):
                value = view.value(next(a for a in value.args if scalar_constant(a) is None))
            else:
                return name == "relax.matmul"


class WhereZeroLikeToScalar(Rule):
    """``where(c, full_like(y, v), y)`` -> ``where(c, v, y)``: a broadcast scalar instead of a
    materialized tensor of v."""

    name = "full-like-to-scalar"
    description = "where(c, full_like(y, v), y) -> where(c, v, y)"

    def plan(self, view, records):
        plan = {}
        for var, value in view.var2val.items():
            if op_name(value) != "relax.where":
                continue
            cond, a, b = value.args
            a_val = view.value(a)
            if op_name(a_val) != "relax.full_like" or shape_of(b) != shape_of(value):
                continue
            fill = a_val.args[1]
            fill_value = scalar_constant(fill)
            if fill_value is None:
                continue
            const = relax.const(fill_value, value.ty.dtype)
            plan[var] = lambda emit, cond=cond, k=const, b=b: relax.op.where(emit.get(cond), k, emit.get(b))
        if plan:
            records.append(RewriteRecord(self.name, "where(c, full_like(y, v), y)", "where(c, v, y)", len(plan)))
        return plan


ALGEBRA_RULES = (MatmulFirstInAdd, FoldScaleIntoWeights, DropNoopBroadcast, HoistMaskTest, WhereZeroLikeToScalar)
