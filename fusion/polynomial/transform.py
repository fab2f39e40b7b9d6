"""``PolynomialSimplify``: the Relax module pass that rewrites element-wise DAGs by algebra.

For every Relax function: find the element-wise DAGs of each dataflow block (relax_terms.py), load all of
them into one e-graph and saturate (egraph.py), extract the cheapest form of every root under the
broadcast-aware cost (cost.py), and re-emit a DAG only when its cost strictly drops. Roots keep their
Relax vars (and so their shapes and dtypes); values that depend only on weights (params after
``num_input``) or constants are compile-time, so ``x * w1 * c`` becomes ``x * (w1 * c)`` and
``LiftTransformParams`` hoists ``w1 * c`` out of the hot path.
"""
from typing import Dict, List, Optional, Sequence

import numpy as np

from . import term as tm
from .cost import Cost, Shapes, broadcast, dag_cost
from .egraph import DTYPE_RANGE, Limits, extract, saturate
from .relax_terms import BlockTerms, static_shape, users, weight_params
from .records import RewriteLog, RewriteRecord

_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}


def _make_call(t: tm.Term, args: list, dtype: str):
    from tvm import relax

    op = relax.op
    if t.op in ("add", "sub", "mul", "div"):
        return {"add": op.add, "sub": op.subtract, "mul": op.multiply, "div": op.divide}[t.op](*args)
    if t.op == "neg":
        return op.negative(args[0])
    if t.op == "recip":
        return op.divide(relax.const(1.0, dtype), args[0])
    if t.op == "pow":
        return op.power(args[0], relax.const(t.value, dtype))
    if t.op == "where":
        return op.where(*args)
    return getattr(op, t.op)(args[0])  # sqrt, rsqrt, exp, erf, tanh


class _BlockRewriter:
    """Walks one dataflow block in order, keeping or re-emitting each DAG."""

    def __init__(self, fname: str, terms: BlockTerms, new_roots: Dict[int, tm.Term], shapes: Shapes,
                 log: RewriteLog, counter: List[int]):
        from tvm import relax

        self.fname, self.terms, self.new_roots, self.shapes, self.log = fname, terms, new_roots, shapes, log
        self.bb = relax.BlockBuilder()
        self.counter = counter
        self.available: Dict[tm.Term, object] = {}
        self.out: list = []
        self.kept = self.rewritten = 0
        self.leaf_pos = {}
        for leaf_id, expr in terms.leaf_exprs.items():
            pos = terms.position.get(expr) if isinstance(expr, relax.Var) else None
            self.leaf_pos[leaf_id] = -1 if pos is None else pos

    def run(self):
        from tvm import relax

        comp_of = {p: c for c in self.terms.components for p in c.positions}
        decision: Dict[int, bool] = {}
        for i, binding in enumerate(self.terms.bindings):
            comp = comp_of.get(i)
            if comp is None:
                self.out.append(binding)
                continue
            key = id(comp)
            if key not in decision:
                decision[key] = self._decide(comp)
            if not decision[key]:
                self.out.append(binding)
                self._remember(self.terms.root_term(i), binding.var)
            elif i in comp.roots:
                self._emit_root(i, comp.dtype)
        return relax.DataflowBlock(self.out)

    # ---- decide ---------------------------------------------------------------------------------
    def _required(self, i: int):
        return static_shape(self.terms.bindings[i].var.ty)

    def _decide(self, comp) -> bool:
        """Rewrite ``comp`` only if every root's new form is usable here and the cost strictly drops."""
        old = [(self.terms.root_term(r), self._required(r)) for r in comp.roots]
        new = [(self.new_roots[r], self._required(r)) for r in comp.roots]
        if all(self.shapes.of(t)[1] for t, _ in old):
            self.kept += 1
            return False  # compile-time already: LiftTransformParams / FoldConstant handle it
        for r, (t, required) in zip(comp.roots, new):
            natural = self.shapes.of(t)[0]
            try:
                fits = broadcast(natural, required) == tuple(required)
            except ValueError:
                fits = False
            if not fits or any(self.leaf_pos[leaf] >= r for leaf in tm.leaves_of(t)):
                self.kept += 1
                return False
        itemsize = _ITEMSIZE.get(comp.dtype, 4)
        before = Cost()
        for p in comp.positions:
            flops, nbytes, static = self.terms.binding_cost(p, itemsize)
            if static:
                before.static_ops += 1
            else:
                before.flops, before.bytes, before.ops = before.flops + flops, before.bytes + nbytes, before.ops + 1
        after = dag_cost(new, self.shapes, itemsize, free=set(self.available))
        if not after.score < before.score * (1 - 1e-9):
            self.kept += 1
            return False
        self.rewritten += 1
        names = {k: v.name for k, v in self.terms.leaves.items()}
        root_names = [self.terms.bindings[r].var.name for r in comp.roots]
        fresh = set(tm.walk([t for t, _ in new])) - set(self.available)
        emitted = sum(1 for t in fresh if t.op not in ("leaf", "num"))
        emitted += sum(1 for t, req in new if tuple(self.shapes.of(t)[0]) != tuple(req))
        self.log.records.append(RewriteRecord(
            function=self.fname, roots=root_names,
            before=[f"{n} = {self.terms.relax_text(r, names)}" for n, r in zip(root_names, comp.roots)],
            after=[f"{n} = {tm.to_text(t, names)}" for n, (t, _) in zip(root_names, new)],
            cost_before=before, cost_after=after,
            relax_ops_before=len(comp.positions), relax_ops_after=emitted))
        return True

    # ---- emit -----------------------------------------------------------------------------------
    def _remember(self, t: tm.Term, var):
        if t.op in ("leaf", "num") or t in self.available:
            return
        if static_shape(var.ty) == tuple(self.shapes.of(t)[0]):  # same shape: interchangeable
            self.available[t] = var

    def _operand(self, t: tm.Term, dtype: str):
        from tvm import relax

        if t.op == "num":
            return relax.const(t.value, dtype)
        if t.op == "leaf":
            return self.terms.leaf_exprs[t.value]
        hit = self.available.get(t)
        if hit is not None:
            return hit
        call = self.bb.normalize(_make_call(t, [self._operand(a, dtype) for a in t.args], dtype))
        self.counter[0] += 1
        var = relax.DataflowVar(f"poly{self.counter[0]}", call.ty)
        self.out.append(relax.VarBinding(var, call))
        self.available[t] = var
        return var

    def _emit_root(self, i: int, dtype: str):
        from tvm import relax

        root_var = self.terms.bindings[i].var
        t = self.new_roots[i]
        required = self._required(i)
        natural = tuple(self.shapes.of(t)[0])
        if t.op in ("leaf", "num") or t in self.available or natural != tuple(required):
            value = self._operand(t, dtype)
            if natural != tuple(required):
                value = self.bb.normalize(relax.op.broadcast_to(value, relax.ShapeExpr(list(required))))
        else:
            value = self.bb.normalize(_make_call(t, [self._operand(a, dtype) for a in t.args], dtype))
        self.out.append(relax.VarBinding(root_var, value))
        self._remember(t, root_var)


def simplify_function(func, fname: str, log: RewriteLog, families: Optional[Sequence[str]] = None,
                      limits: Optional[Limits] = None, finite_weights: bool = True):
    """``func`` with its element-wise DAGs simplified (the same object when nothing changes)."""
    from tvm import relax

    if not isinstance(func.body, relax.SeqExpr):
        return func
    static_params = set(weight_params(func))
    var_users = users(func)
    leaves, leaf_exprs, leaf_ids = {}, {}, {}
    blocks = []
    for bi, block in enumerate(func.body.blocks):
        if isinstance(block, relax.DataflowBlock):
            blocks.append(BlockTerms(bi, block, static_params, var_users, leaves, leaf_exprs, leaf_ids))
        else:
            blocks.append(None)
    roots = [(bt, r) for bt in blocks if bt is not None for c in bt.components for r in c.roots]
    info = {"function": fname, "dags": sum(len(bt.components) for bt in blocks if bt), "roots": len(roots)}
    if not roots:
        log.functions.append(dict(info, rewritten=0))
        return func
    dtypes = {c.dtype for bt in blocks if bt is not None for c in bt.components}
    narrowest = min(dtypes, key=lambda d: DTYPE_RANGE.get(d, DTYPE_RANGE["float32"])[0])
    terms = [bt.root_term(r) for bt, r in roots]  # registers the leaves (leaf_exprs) as it goes
    # leaves known to be finite: tensor constants whose every value is (checked here), and weight
    # params when the caller vouches for them (``finite_weights``: checkable once the weights are known)
    finite_leaves = []
    for leaf_id, expr in leaf_exprs.items():
        if isinstance(expr, relax.Var):
            if finite_weights and expr in static_params:
                finite_leaves.append(leaf_id)
        elif np.isfinite(expr.value.numpy()).all():
            finite_leaves.append(leaf_id)
    egraph, stats = saturate(terms, families, limits,
                             narrowest if narrowest in DTYPE_RANGE else "float32", finite_leaves)
    extracted = extract(egraph, len(roots), leaves, 4)
    new_roots: Dict[int, Dict[int, tm.Term]] = {}
    for (bt, r), t in zip(roots, extracted):
        new_roots.setdefault(id(bt), {})[r] = t
    shapes = Shapes(leaves)
    counter = [0]
    new_blocks, rewritten = [], 0
    for block, bt in zip(func.body.blocks, blocks):
        if bt is None or not bt.components:
            new_blocks.append(block)
            continue
        rewriter = _BlockRewriter(fname, bt, new_roots[id(bt)], shapes, log, counter)
        new_blocks.append(rewriter.run())
        rewritten += rewriter.rewritten
    log.functions.append(dict(info, rewritten=rewritten, saturation=stats.to_json()))
    if not rewritten:
        return func
    body = relax.BlockBuilder().normalize(relax.SeqExpr(new_blocks, func.body.body))  # fills in its type
    return relax.Function(func.params, body, func.ret_ty, func.is_pure, func.attrs, func.span)
