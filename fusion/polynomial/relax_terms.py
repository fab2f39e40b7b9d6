"""Relax -> terms: find the maximal DAGs of element-wise ops in each dataflow block.

A binding is a *node* when its value is an element-wise op the engine understands, on one float
dtype with static shapes; everything else is a *leaf* (matmuls, reductions, reshapes, params...).
Nodes joined by def-use edges form a component; its *roots* are the nodes used outside it (by a
leaf, a later block, the function result, or as a block output). Anything whose meaning is not
certain stays a leaf, so it is never rewritten.
"""
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set

import numpy as np

from . import term as tm
from .cost import LeafInfo

BINARY = {"relax.add": "add", "relax.subtract": "sub", "relax.multiply": "mul", "relax.divide": "div"}
UNARY = {"relax.negative": "neg", "relax.sqrt": "sqrt", "relax.rsqrt": "rsqrt", "relax.exp": "exp",
         "relax.erf": "erf", "relax.tanh": "tanh"}
FILL_LIKE = {"relax.full_like": None, "relax.zeros_like": 0.0, "relax.ones_like": 1.0}
FILL = {"relax.full": None, "relax.zeros": 0.0, "relax.ones": 1.0}
FLOAT_DTYPES = ("float16", "float32", "float64", "bfloat16")


def weight_params(func) -> list:
    """The params of ``func`` that are weights: those after the ``num_input`` attr (none without it)."""
    attrs = func.attrs
    if attrs is None or "num_input" not in attrs:
        return []
    return list(func.params[int(attrs["num_input"]):])


def static_shape(ty) -> Optional[tuple]:
    """(dims...) of a TensorType with known static shape, else None."""
    from tvm import relax, tirx

    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        return None
    shape = ty.shape
    if not isinstance(shape, relax.ShapeExpr):
        return None
    dims = []
    for d in shape.values:
        if not isinstance(d, tirx.IntImm):
            return None
        dims.append(int(d.value))
    return tuple(dims)


def _scalar_value(const) -> Optional[float]:
    """The finite float of a one-element relax.Constant, else None (non-finite values stay leaves)."""
    arr = const.value.numpy()
    if arr.size != 1 or arr.dtype.kind not in "fiub":
        return None
    value = float(arr.reshape(()))
    return value if math.isfinite(value) else None


@dataclass
class Component:
    """One maximal element-wise DAG: its node bindings (block order) and roots."""
    positions: List[int] = field(default_factory=list)  # binding indices of its nodes
    roots: List[int] = field(default_factory=list)  # binding indices of its roots
    dtype: str = "float32"


class BlockTerms:
    """Terms, leaves and components of one dataflow block of a function."""

    def __init__(self, block_index: int, block, static_params: Set, var_users: Dict,
                 leaves: Dict[str, LeafInfo], leaf_exprs: Dict[str, object], leaf_ids: Dict):
        from tvm import relax

        self.block = block
        self.bindings = list(block.bindings)
        self.leaves, self.leaf_exprs, self._leaf_ids = leaves, leaf_exprs, leaf_ids
        self.position = {b.var: i for i, b in enumerate(self.bindings)}
        self.static: Set = set(static_params)
        self.constant_of: Dict = {}
        for b in self.bindings:
            if isinstance(b, relax.VarBinding):
                value = b.value
                if _is_const(value):
                    self.constant_of[b.var] = value
                if all(v in self.static for v in relax.analysis.free_vars(value)):
                    self.static.add(b.var)
        self.node_op: Dict[int, tuple] = {}
        for i, b in enumerate(self.bindings):
            spec = self._node_spec(b)
            if spec is not None:
                self.node_op[i] = spec
        self._terms: Dict[int, tm.Term] = {}
        self.block_index = block_index
        self.components = self._components(var_users)
        # a root is materialised anyway, so other expressions read it as a leaf: terms stay small
        # and every root's rewrite shares its neighbours' results
        self.root_set = {r for c in self.components for r in c.roots}

    # ---- which bindings are nodes -------------------------------------------------------------
    def _node_spec(self, binding):
        """(kind, operands...) when ``binding`` is an element-wise node, else None."""
        import tvm
        from tvm import relax

        if not isinstance(binding, relax.VarBinding) or not isinstance(binding.value, relax.Call):
            return None
        call = binding.value
        if not isinstance(call.op, tvm.ir.Op):
            return None
        name = call.op.name
        out_shape = static_shape(binding.var.ty)
        if out_shape is None or str(binding.var.ty.dtype) not in FLOAT_DTYPES:
            return None
        dtype = str(binding.var.ty.dtype)

        def same(arg):
            return static_shape(arg.ty) is not None and str(arg.ty.dtype) == dtype

        args = list(call.args)
        if name in BINARY and all(same(a) for a in args):
            return (BINARY[name], *args)
        if name in UNARY and same(args[0]):
            return (UNARY[name], args[0])
        if name == "relax.power" and same(args[0]) and self._number(args[1]) is not None:
            return ("pow", args[0], self._number(args[1]))
        if name == "relax.where" and same(args[1]) and same(args[2]) and static_shape(args[0].ty) is not None \
                and str(args[0].ty.dtype) == "bool":
            return ("where", *args)
        if name in ("relax.broadcast_to", "relax.astype") and same(args[0]):
            return ("identity", args[0])
        if name in FILL_LIKE:
            value = FILL_LIKE[name] if FILL_LIKE[name] is not None else self._number(args[1])
            return None if value is None else ("fill", value)
        if name in FILL:
            value = FILL[name] if FILL[name] is not None else self._number(args[1])
            return None if value is None else ("fill", value)
        return None

    def _number(self, expr) -> Optional[float]:
        from tvm import relax

        if isinstance(expr, relax.Var) and expr in self.constant_of:
            expr = self.constant_of[expr]
        return _scalar_value(expr) if _is_const(expr) else None

    def _components(self, var_users) -> List[Component]:
        parent = {i: i for i in self.node_op}

        def find(i):
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        from tvm import relax

        for i in self.node_op:  # every var a node reads joins it, even a fill_like's shape source
            for arg in relax.analysis.free_vars(self.bindings[i].value):
                j = self.position.get(arg)
                if j is not None and j in self.node_op:
                    parent[find(i)] = find(j)
        groups: Dict[int, Component] = {}
        for i in sorted(self.node_op):
            comp = groups.setdefault(find(i), Component())
            comp.positions.append(i)
            var = self.bindings[i].var
            comp.dtype = str(var.ty.dtype)
            outside = [u for u in var_users.get(var, ())
                       if u == "result" or u[0] != self.block_index or u[1] not in self.node_op]
            if outside or not _is_dataflow_var(var):
                comp.roots.append(i)
        return [c for c in groups.values() if c.roots]

    # ---- terms -----------------------------------------------------------------------------------
    def term(self, expr) -> tm.Term:
        """The term an operand denotes: a node's expression, a number, or a leaf."""
        from tvm import relax

        if _is_var(expr):
            i = self.position.get(expr)
            if i is not None and i in self.node_op and i not in self.root_set:
                return self._node_term(i)
            if expr in self.constant_of:
                expr = self.constant_of[expr]
        if _is_const(expr):
            value = _scalar_value(expr)
            if value is not None and expr.value.numpy().ndim == 0:
                return tm.num(value)
        return tm.leaf(self.leaf_id(expr))

    def _node_term(self, i: int) -> tm.Term:
        hit = self._terms.get(i)
        if hit is not None:
            return hit
        kind, *operands = self.node_op[i]
        if kind == "identity":
            out = self.term(operands[0])
        elif kind == "fill":
            out = tm.num(operands[0])
        elif kind == "pow":
            out = tm.power(self.term(operands[0]), operands[1])
        else:
            out = tm.Term(kind, tuple(self.term(a) for a in operands))
        self._terms[i] = out
        return out

    def binding_cost(self, i: int, itemsize: int):
        """(flops, bytes, static) of binding ``i`` as it stands: every Relax op writes its output."""
        from .cost import OP_FLOPS, numel

        kind = self.node_op[i][0]
        var = self.bindings[i].var
        n = numel(static_shape(var.ty))
        flops = 0 if kind in ("identity", "fill") else n * OP_FLOPS[kind]
        return flops, n * itemsize, var in self.static

    def relax_text(self, i: int, names) -> str:
        """Binding ``i`` as its Relax ops spell it, e.g. ``multiply(broadcast_to(lv61), 0.420448)``."""
        from tvm import relax

        def operand(arg):
            j = self.position.get(arg) if _is_var(arg) else None
            if j is not None and j in self.node_op and j not in self.root_set:
                return self.relax_text(j, names)
            t = self.term(arg)
            return tm.to_text(t, names)

        call = self.bindings[i].value
        short = call.op.name.split(".")[-1]
        args = [operand(a) for a in call.args if isinstance(a, relax.Expr) and not isinstance(a, relax.ShapeExpr)]
        return f"{short}({', '.join(args)})"

    def root_term(self, i: int) -> tm.Term:
        return self._node_term(i)

    def leaf_id(self, expr) -> str:
        """A stable id for a leaf expression (a Var or a tensor Constant); records its info once."""
        from tvm import relax

        if _is_var(expr) and expr in self.constant_of:
            expr = self.constant_of[expr]  # equal constants are one leaf, wherever they are bound
        key = expr if _is_var(expr) else ("const", expr.ty.dtype, _structural_hash(expr))
        hit = self._leaf_ids.get(key)
        if hit is not None:
            return hit
        leaf_id = f"L{len(self._leaf_ids)}"
        self._leaf_ids[key] = leaf_id
        if _is_var(expr):
            name, static = expr.name, expr in self.static
        else:
            arr = expr.value.numpy()
            name = f"const{list(arr.shape)}" if arr.size != 1 else f"{arr.reshape(()).item():g}"
            static = True
        self.leaves[leaf_id] = LeafInfo(static_shape(expr.ty) or (), str(expr.ty.dtype), static, name)
        self.leaf_exprs[leaf_id] = expr
        return leaf_id

    def defined_before(self, i: int) -> Set[str]:
        """Leaf ids usable at binding ``i``: params, constants, earlier blocks, and bindings < i."""
        out = set()
        for leaf_id, expr in self.leaf_exprs.items():
            j = self.position.get(expr) if _is_var(expr) else None
            if j is None or j < i:
                out.add(leaf_id)
        return out


def _is_var(expr) -> bool:
    from tvm import relax

    return isinstance(expr, relax.Var)


def _is_dataflow_var(expr) -> bool:
    from tvm import relax

    return isinstance(expr, relax.DataflowVar)


def users(func) -> Dict:
    """Var -> set of its users: (block index, binding index) pairs, or "result" for the function's result."""
    from tvm import relax

    found: Dict = {}
    for bi, block in enumerate(func.body.blocks):
        for i, b in enumerate(block.bindings):
            value = b.value
            for v in relax.analysis.free_vars(value):
                found.setdefault(v, set()).add((bi, i))
    for v in relax.analysis.free_vars(func.body.body):
        found.setdefault(v, set()).add("result")
    return found


def _is_const(expr) -> bool:
    import tvm

    return isinstance(expr, tvm.ir.GenericConst)


def _structural_hash(expr) -> int:
    import tvm_ffi

    return tvm_ffi.structural_hash(expr)
