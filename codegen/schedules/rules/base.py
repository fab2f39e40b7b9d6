"""The rule base class: a DLight ScheduleRule for llvm targets that never breaks a build.

A rule that hits a case it did not foresee (a schedule primitive refuses, an odd block shape)
returns None, so ApplyDefaultSchedule tries the next rule and, failing all, leaves the stock
(unscheduled, correct) PrimFunc in place.
"""
from tvm import tirx
from tvm.s_tir.dlight import ScheduleRule

from ..target_traits import cpu_traits
from .common import log


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
            log.debug("rule %s gave up on a PrimFunc: %s", self.name, str(exc).splitlines()[0][:200])
            return None

    def schedule(self, func, target, traits):
        raise NotImplementedError


__all__ = ["CPURule"]
