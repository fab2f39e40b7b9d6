"""The rewrite machinery: rules decide on the original function, an emitter writes the new one.

A rule's ``plan(view)`` returns {var: build} where ``build(emit)`` returns the new value of that
binding (an expression to bind) or an existing var (the binding becomes an alias and disappears).
Every applied rule leaves a RewriteRecord, so the fusion report can show before and after.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List

import tvm
from tvm import relax

from ..graph import DataflowView


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
    """One algebraic identity, applied wherever it holds."""

    name = "rule"
    description = ""

    def plan(self, view: DataflowView, records: List[RewriteRecord]) -> Dict[relax.Var, Callable]:
        raise NotImplementedError


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


def text(expr, limit: int = 160) -> str:
    """A short one-line rendering of an expression for reports."""
    try:
        s = " ".join(expr.script().split()) if hasattr(expr, "script") else str(expr)
    except Exception:  # noqa: BLE001 - printing is best-effort
        s = str(expr)
    return s if len(s) <= limit else s[: limit - 3] + "..."
