"""The pass: default schedules for every PrimFunc that no earlier stage (e.g. a tuning database)
has scheduled, through DLight's ApplyDefaultSchedule so the rules are ordinary DLight rules."""
from typing import Optional, Sequence

# Attribute names that mark a PrimFunc as already scheduled. TVM 0.27 (DLight, MetaSchedule's
# relax integration) uses "tirx.is_scheduled"; "s_tir.is_scheduled" is honoured too in case a
# stage spells it after the s_tir namespace.
SCHEDULED_ATTRS = ("tirx.is_scheduled", "s_tir.is_scheduled")


def is_scheduled(func) -> bool:
    attrs = getattr(func, "attrs", None)
    if attrs is None:
        return False
    return any(key in attrs and bool(attrs[key]) for key in SCHEDULED_ATTRS)


def default_schedule_pass(rules: Optional[Sequence] = None, fast_math: bool = True):
    """A module pass: vectorisable erf/exp (``fast_math``) + the CPU rules, on unscheduled PrimFuncs.

    Run it under the build target (``with target:``) or on PrimFuncs carrying a "target" attr.
    A PrimFunc no rule recognises is left as it was (still correct, just slow).
    """
    import tvm
    from tvm import tirx
    from tvm.s_tir.dlight import ApplyDefaultSchedule

    from .fast_math import rewrite_func
    from .rules import default_rules

    chosen = list(rules) if rules is not None else default_rules()

    @tvm.transform.module_pass(opt_level=0, name="CanaoDefaultSchedule")
    def _pass(mod, _ctx):
        todo = {}
        for gv, func in mod.functions_items():
            if isinstance(func, tirx.PrimFunc) and not is_scheduled(func):
                if fast_math:
                    func = rewrite_func(func) or func
                todo[gv] = func
        if not todo:
            return mod
        scheduled = ApplyDefaultSchedule(*chosen)(tvm.IRModule(todo))
        out = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)  # never write into the input
        for gv, func in scheduled.functions_items():
            out[gv] = func
        return out

    return _pass


def fast_math_factory(target, options: dict):
    """Pipeline factory for the schedule prelude: vectorisable erf/exp in every unscheduled CPU
    kernel, before a tuning database is applied (so tuned kernels get it too)."""
    from .fast_math import vectorizable_math_pass

    options = options or {}
    if options.get("fast_math", True) is False or target.kind.name != "llvm":
        return None
    return vectorizable_math_pass(skip=is_scheduled)


def stage_factory(target, options: dict):
    """Pipeline factory for the "schedule" slot: None for non-CPU targets or when switched off."""
    options = options or {}
    if options.get("default_schedules", True) is False or target.kind.name != "llvm":
        return None
    return default_schedule_pass(fast_math=options.get("fast_math", True) is not False)
