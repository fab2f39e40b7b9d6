"""The rewrite machinery: rules decide on the original function, an emitter writes the new one.

A rule's ``plan(view)`` returns {var: build} where ``build(emit)`` returns the new value of that
binding (an expression to bind) or an existing var (the binding becomes an alias and disappears).
Every applied rule leaves a RewriteRecord (kept by ``Rule.plan``), so the fusion report can show
before and after. ``apply_rule`` plans on the original function and applies the plan in one mutation,
so a decision never depends on half-rewritten IR.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import tvm
from tvm import relax

from ..dataflow import DataflowView, op_name


@dataclass
class RewriteRecord:
    rule: str
    before: str
    after: str
    count: int = 1
    detail: dict = field(default_factory=dict)

    def to_json(self):
        return {"rule": self.rule, "before": self.before, "after": self.after, "count": self.count, **self.detail}


class Emitter:
    """What a rule's build callback sees: the rewritten counterparts of old expressions, and emit()."""

    def __init__(self, mutator):
        self._m = mutator

    def get(self, expr):
        return self._m.visit_expr(expr)

    def emit(self, expr):
        return self._m.builder_.emit(expr)


@relax.expr_functor.mutator
class _PlanApplier(relax.PyExprMutator):
    def __init__(self, mod, plan):
        super().__init__(mod)
        self.plan = plan

    def visit_var_binding_(self, binding):
        build = self.plan.get(binding.var)
        if build is None:
            return super().visit_var_binding_(binding)
        new = build(Emitter(self))
        if not isinstance(new, relax.Var):
            new = self.builder_.emit(new, name_hint=binding.var.name)
        self.set_var_remap(binding.var, new)
        return None


class Rule:
    """One rewrite on Relax operators, applied wherever its preconditions hold.

    A rule names the operator at the root of its left-hand side (``root_op``) and implements
    ``match(view, var, call)``: the partial plan {var: build} for one occurrence, or None when the
    occurrence does not match or a precondition (value range, shape, single use) is not proven. The
    base class owns the walk over the function's bindings, drops matches that overlap an earlier one,
    and keeps the records: one ``RewriteRecord`` with the count of occurrences, or one per occurrence
    when ``match`` returns a ``Match`` with its own ``detail``.
    """

    name = "rule"
    root_op = ""
    before = ""  # the left-hand side, as the records show it
    after = ""   # the right-hand side

    def match(self, view: DataflowView, var: relax.Var, call: relax.Call) -> Optional["Match"]:
        raise NotImplementedError

    def plan(self, view: DataflowView, records: List[RewriteRecord]) -> Dict[relax.Var, Callable]:
        plan: Dict[relax.Var, Callable] = {}
        count = 0
        for var, value in view.var2val.items():
            if op_name(value) != self.root_op:
                continue
            found = self.match(view, var, value)
            if found is None or any(v in plan for v in found.builds):
                continue
            plan.update(found.builds)
            if found.detail is None:
                count += 1
            else:
                records.append(RewriteRecord(self.name, found.before or self.before, found.after or self.after,
                                             detail=found.detail))
        if count:
            records.append(RewriteRecord(self.name, self.before, self.after, count))
        return plan


@dataclass
class Match:
    """One occurrence of a rule: the new values of the bindings it replaces, and optionally a record
    of its own (``detail`` set: e.g. the scale folded, with its own before/after text)."""
    builds: Dict[relax.Var, Callable]
    detail: Optional[dict] = None
    before: str = ""
    after: str = ""


def apply_rule(mod: tvm.IRModule, rule: Rule, records: List[RewriteRecord]) -> tvm.IRModule:
    """Apply ``rule`` to every Relax function with dataflow in ``mod`` (which is left untouched)."""
    out = tvm.IRModule(dict(mod.functions.items()), attrs=mod.attrs)  # the builder adds to its module
    for gv, func in list(mod.functions.items()):
        if not isinstance(func, relax.Function) or func.attrs is not None and "Primitive" in func.attrs:
            continue
        plan = rule.plan(DataflowView(func), records)
        if not plan:
            continue
        applier = _PlanApplier(out, plan)
        new_func = applier.visit_expr(func)
        out = applier.builder_.get()
        out[gv] = new_func
    return out


def rule_pass(rule: Rule, records: List[RewriteRecord]):
    """Wrap a rule as a tvm.transform.Pass (so it composes in any Sequential)."""

    @tvm.transform.module_pass(opt_level=0, name=f"LPFusion.{rule.name}")
    def _pass(mod, _ctx):
        return apply_rule(mod, rule, records)

    return _pass

