"""The same kernel under the pipeline's default schedules: timed once at the start of a tuning
run (one batch, for the report and as the fallback of a stale verdict); the build's choice is made
by verdict.py, which times it again side by side with the tuned contenders.
"""
from typing import Dict, List, Optional

from .tasks import TuningTask


def default_schedule_pass(target_spec, pipeline: str, options: Optional[dict]):
    """The pipeline's schedule stage without the tuning database (None when it has none)."""
    from .. import pipeline as pipelines

    from ..options import BuildOptions

    options = BuildOptions.coerce(options).replace(tuning_db=None)
    for name, stage in pipelines.stages(pipeline, target_spec.tvm_target(), options):
        if name == "schedule":
            return stage
    return None


def default_modules(tasks: List[TuningTask], target_spec, schedule) -> list:
    """Each task's kernel under the default schedules (the plain kernel where they fail, recorded as
    ``tuning-baseline`` in the build report and warned)."""
    from .tasks import copy_module

    target = target_spec.tvm_target()
    mods = []
    for task in tasks:
        mod = task.mod
        if schedule is not None:
            try:
                with target:
                    mod = schedule(copy_module(task.mod))
            except Exception as exc:  # the baseline is the plain kernel then: recorded, not hidden
                from canao.measure.report import TUNING_BASELINE, record

                record(TUNING_BASELINE, task.name, f"default schedules failed, the plain kernel is the baseline: "
                       f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                mod = task.mod
        mods.append(mod)
    return mods


def measure_defaults(tasks: List[TuningTask], target_spec, builder, runner, schedule) -> Dict[str, Optional[float]]:
    """{task key: mean run time in microseconds under the default schedules, None if it failed}."""
    from .kernel_timing import measure_modules

    times, _row = measure_modules(default_modules(tasks, target_spec, schedule), target_spec, builder, runner,
                                  names=[f"{t.name} (default schedule)" for t in tasks])
    return {task.key: us for task, us in zip(tasks, times)}
