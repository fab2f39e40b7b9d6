"""A read-only view of a Relax function's dataflow: who defines a var, who uses it, what is a weight.

LP-Fusion's rewrites decide on this view of the *original* function, then emit the new one, so a
decision never depends on half-rewritten IR.
"""
from collections import Counter
from typing import Dict, Optional, Set

import tvm
from tvm import relax


def op_name(expr) -> Optional[str]:
    """'relax.add' for a call of a Relax operator, else None."""
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
        return expr.op.name
    return None


def scalar_constant(expr) -> Optional[float]:
    """The value of a 0-d (or single-element) float constant, else None."""
    if isinstance(expr, tvm.ir.Constant):
        value = constant_array(expr)
        if value is not None and value.size == 1 and value.dtype.kind == "f":
            return float(value.reshape(()))
    return None


def constant_array(expr):
    """A relax constant's value as numpy (None when it is not a tensor constant)."""
    import numpy as np

    if not isinstance(expr, tvm.ir.Constant):
        return None
    value = expr.value
    if hasattr(value, "numpy"):
        return value.numpy()
    if isinstance(value, (int, float, bool)):
        return np.asarray(value)
    return None


def shape_of(expr):
    ty = expr.ty
    if isinstance(ty, relax.TensorType) and ty.shape is not None:
        try:
            return tuple(int(d) for d in ty.shape)
        except TypeError:
            return None
    return None


def _vars_in(expr):
    """Vars an expression reads directly (through tuples and call args, not through bindings)."""
    if isinstance(expr, relax.Var):
        return [expr]
    if isinstance(expr, relax.Call):
        return [v for a in expr.args for v in _vars_in(a)]
    if isinstance(expr, relax.Tuple):
        return [v for f in expr.fields for v in _vars_in(f)]
    if isinstance(expr, relax.TupleGetItem):
        return _vars_in(expr.tuple_value)
    return []


class DataflowView:
    """var -> defining expression, use counts, and which values depend only on weights/constants."""

    def __init__(self, func: relax.Function):
        self.func = func
        self.var2val: Dict[relax.Var, relax.Expr] = relax.analysis.get_var2val(func)
        num_input = func.attrs["num_input"] if func.attrs is not None and "num_input" in func.attrs else len(func.params)
        self.weights: Set[relax.Var] = set(func.params[int(num_input):])
        self.uses: Counter = Counter()
        for value in self.var2val.values():
            for var in _vars_in(value):
                self.uses[var] += 1
        for var in _vars_in(func.body.body):
            self.uses[var] += 1
        self._weight_only: Dict[relax.Expr, bool] = {}

    def value(self, expr):
        """The expression a var is bound to (following var-to-var aliases), or expr itself."""
        seen = 0
        while isinstance(expr, relax.Var) and expr in self.var2val and seen < 1000:
            expr = self.var2val[expr]
            seen += 1
        return expr

    def single_use(self, var) -> bool:
        return isinstance(var, relax.Var) and self.uses[var] == 1

    def is_weight_only(self, expr) -> bool:
        """True if ``expr`` is computable from weights and constants alone (foldable at compile time)."""
        if isinstance(expr, tvm.ir.Constant):
            return True
        if isinstance(expr, relax.Var):
            if expr in self.weights:
                return True
            if expr in self.var2val:
                if expr not in self._weight_only:
                    self._weight_only[expr] = False  # cycles cannot happen in SSA; guard anyway
                    self._weight_only[expr] = self.is_weight_only(self.var2val[expr])
                return self._weight_only[expr]
            return False
        if isinstance(expr, relax.Call):
            return all(self.is_weight_only(a) for a in expr.args)
        if isinstance(expr, relax.Tuple):
            return all(self.is_weight_only(f) for f in expr.fields)
        if isinstance(expr, relax.TupleGetItem):
            return self.is_weight_only(expr.tuple_value)
        # shapes, prim values, dtype/string immediates: static
        return not isinstance(expr, (relax.Function, relax.If, relax.SeqExpr))
