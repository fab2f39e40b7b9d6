"""What a tuned kernel has to beat: the same kernel under the pipeline's default schedules,
measured once per task with the tuning builder and runner (one batch for all tasks).

A short tuning run can find schedules slower than hand-written defaults (or than their fast
erf/exp rewrite); the database stage applies a tuned kernel only where it measured faster.
"""
from typing import Dict, List, Optional

from .tasks import TuningTask


def default_schedule_pass(target_spec, pipeline: str, options: Optional[dict]):
    """The pipeline's schedule stage without the tuning database (None when it has none)."""
    from .. import pipeline as pipelines

    options = {k: v for k, v in (options or {}).items() if k != "tuning_db"}
    for name, stage in pipelines.stages(pipeline, target_spec.tvm_target(), options):
        if name == "schedule":
            return stage
    return None


def measure_defaults(tasks: List[TuningTask], target_spec, builder, runner, schedule) -> Dict[str, Optional[float]]:
    """{task key: mean run time in microseconds under the default schedules, None if it failed}."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.meta_schedule.builder import BuilderInput
    from tvm.s_tir.meta_schedule.runner import RunnerInput

    from .tasks import copy_module

    target = target_spec.tvm_target()
    mods = []
    for task in tasks:
        mod = task.mod
        if schedule is not None:
            try:
                with target:
                    mod = schedule(copy_module(task.mod))
            except Exception:  # a rule that fails on this kernel: the baseline is the plain kernel
                mod = task.mod
        mods.append(mod)
    built = builder.build([BuilderInput(mod, target) for mod in mods])
    results: Dict[str, Optional[float]] = {task.key: None for task in tasks}
    runnable = [(task, mod, b) for task, mod, b in zip(tasks, mods, built) if b.error_msg is None]
    device = {"llvm": "cpu", "c": "cpu"}.get(target.kind.name, target.kind.name)
    futures = runner.run([RunnerInput(b.artifact_path, device, ArgInfo.from_prim_func(mod["main"]))
                          for _, mod, b in runnable])
    for (task, _, _), future in zip(runnable, futures):
        result = future.result()
        if result.error_msg is None and result.run_secs:
            secs = [float(s) for s in result.run_secs]
            results[task.key] = 1e6 * sum(secs) / len(secs)
    _remove_artifacts(built)
    return results


def _remove_artifacts(built) -> None:
    import os
    import shutil

    for result in built:
        if result.artifact_path:
            shutil.rmtree(os.path.dirname(result.artifact_path), ignore_errors=True)
