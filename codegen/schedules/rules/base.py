"""The rule base class: a DLight ScheduleRule for llvm targets that never breaks a build.

A rule that hits a case it did not foresee (a schedule primitive refuses, an odd block shape)
returns None, so the next rule is tried and, failing all, the stock (unscheduled, correct)
PrimFunc stays in place. The exception is not lost: it goes to the list installed by
``collecting_rule_errors`` (the default-schedule pass records it in the build report and warns).
"""
import contextlib
import contextvars

from tvm import tirx
from tvm.s_tir.dlight import ScheduleRule

from ..target_traits import cpu_traits

_ERRORS: contextvars.ContextVar = contextvars.ContextVar("canao_rule_errors", default=None)


@contextlib.contextmanager
def collecting_rule_errors(errors: list):
    """Append (rule name, exception) for every rule that raises inside the block to ``errors``."""
    token = _ERRORS.set(errors)
    try:
        yield errors
    finally:
        _ERRORS.reset(token)


class CPURule(ScheduleRule):
    """Subclasses implement ``schedule(func, target, traits) -> s_tir.Schedule | None``."""

    name = "cpu-rule"

    def is_target_available(self, target) -> bool:
        return target is not None and target.kind.name == "llvm"

    def apply(self, func, target, tunable):  # noqa: D401 - DLight's signature
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        try:
            return self.schedule(func, target, cpu_traits(target))
        except Exception as exc:  # a refused primitive or an unforeseen structure: next rule
            errors = _ERRORS.get()
            if errors is not None:
                errors.append((self.name, exc))
            else:  # called outside the default-schedule pass (e.g. by DLight directly): still visible
                from canao.measure.report import SCHEDULE_RULE, record

                record(SCHEDULE_RULE, f"{_func_name(func)} (rule {self.name})", exc)
            return None

    def schedule(self, func, target, traits):
        raise NotImplementedError


def _func_name(func) -> str:
    attrs = getattr(func, "attrs", None)
    if attrs is not None and "global_symbol" in attrs:
        return str(attrs["global_symbol"])
    return "a PrimFunc"


__all__ = ["CPURule", "collecting_rule_errors"]
