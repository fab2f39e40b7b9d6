"""The pass: default schedules for every PrimFunc that no earlier stage (e.g. a tuning database)
has scheduled; the rules are ordinary DLight rules, tried as DLight's ApplyDefaultSchedule tries
them, with every failure recorded in the build report."""
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
    Rules are tried in order per kernel as DLight's ApplyDefaultSchedule does (first schedule
    wins, marked ``tirx.is_scheduled``), but every rule that raises is recorded
    (``canao.measure.report``: ``schedule-rule``, a CanaoWarning and the build report) and so is a
    kernel no rule scheduled (``unscheduled``: it stays as it was, correct but slow; warned when a
    rule failed on it).
    """
    import tvm
    from tvm import tirx

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
        out = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)  # never write into the input
        for gv, func in todo.items():
            out[gv] = schedule_one(gv.name_hint, func, chosen)
        return out

    return _pass


def schedule_one(name: str, func, rules):
    """``func`` under the first rule that schedules it (marked scheduled), else ``func`` as it was;
    rule failures and an unscheduled kernel are recorded (see default_schedule_pass)."""
    from tvm import s_tir
    from tvm.target import Target

    from canao.measure.report import SCHEDULE_RULE, UNSCHEDULED, record

    from .rules.base import collecting_rule_errors

    target = func.attrs.get("target") if func.attrs is not None else None
    target = target if target is not None else Target.current(allow_none=False)
    errors = []
    with collecting_rule_errors(errors):
        for rule in rules:
            rule_name = getattr(rule, "name", type(rule).__name__)
            try:
                space = rule.apply(func, target, False)
            except Exception as exc:  # a foreign (non-CPURule) rule that raises: next rule, recorded
                errors.append((rule_name, exc))
                continue
            if space is None:
                continue
            sch = space if isinstance(space, s_tir.Schedule) else space[0]
            for failed_rule, exc in errors:
                record(SCHEDULE_RULE, f"{name} (rule {failed_rule}, {rule_name} scheduled it instead)", exc)
            return sch.mod["main"].with_attr("tirx.is_scheduled", True)
    for failed_rule, exc in errors:
        record(SCHEDULE_RULE, f"{name} (rule {failed_rule})", exc)
    why = "; ".join(f"{r}: {str(e).splitlines()[0][:120] if str(e) else type(e).__name__}" for r, e in errors)
    record(UNSCHEDULED, name, f"rules failed ({why})" if errors else "no schedule rule recognises this kernel",
           warn=bool(errors))
    return func


def fast_math_factory(target, options):
    """Pipeline factory for the schedule prelude: vectorisable erf/exp in every unscheduled CPU
    kernel, before a tuning database is applied (so tuned kernels get it too)."""
    from ..options import BuildOptions
    from .fast_math import vectorizable_math_pass

    options = BuildOptions.coerce(options)
    if not options.fast_math or target.kind.name != "llvm":
        return None
    return vectorizable_math_pass(skip=is_scheduled)


def stage_factory(target, options):
    """Pipeline factory for the "schedule" slot: None for non-CPU targets or when switched off."""
    from ..options import BuildOptions

    options = BuildOptions.coerce(options)
    if not options.default_schedules or target.kind.name != "llvm":
        return None
    return default_schedule_pass(fast_math=options.fast_math)


def schedules_fingerprint(target, options) -> str:
    """What the default-schedule stages' kernels depend on: this package's source and the
    options they read (``fast_math``, ``default_schedules``)."""
    from pathlib import Path

    from ..options import BuildOptions
    from ..pipeline import source_fingerprint

    options = BuildOptions.coerce(options)
    return (f"{source_fingerprint(Path(__file__).parent)}|fast_math={options.fast_math}"
            f"|default_schedules={options.default_schedules}")


stage_factory.fingerprint = schedules_fingerprint
fast_math_factory.fingerprint = schedules_fingerprint
