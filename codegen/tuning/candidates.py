"""Building and timing scheduled kernels with the tuning builder and runner, in interleaved
rounds, so kernels compared with each other are measured under the same machine load."""
from typing import Dict, List, Optional, Sequence


def build_modules(mods: Sequence, target_spec, builder) -> List[object]:
    """MetaSchedule BuilderResults for ``mods`` (one batch)."""
    from tvm.s_tir.meta_schedule.builder import BuilderInput

    target = target_spec.tvm_target()
    return builder.build([BuilderInput(mod, target) for mod in mods])


def time_built(mods: Sequence, built: Sequence, target_spec, runner, rounds: int = 1) -> List[Optional[float]]:
    """Best (minimum over ``rounds``) mean run time in microseconds of each built module; None
    where the build or a run failed. Every round runs every module once, in order, so a burst
    of load on this shared machine hits all of them rather than one."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.meta_schedule.runner import RunnerInput

    target = target_spec.tvm_target()
    device = {"llvm": "cpu", "c": "cpu"}.get(target.kind.name, target.kind.name)
    ok = [i for i, b in enumerate(built) if b.error_msg is None]
    best: Dict[int, float] = {}
    failed = set()
    for _ in range(max(1, rounds)):
        futures = runner.run([RunnerInput(built[i].artifact_path, device, ArgInfo.from_prim_func(mods[i]["main"]))
                              for i in ok])
        for i, future in zip(ok, futures):
            result = future.result()
            if result.error_msg is not None or not result.run_secs:
                failed.add(i)
                continue
            secs = [float(s) for s in result.run_secs]
            us = 1e6 * sum(secs) / len(secs)
            best[i] = min(best.get(i, us), us)
    return [None if i in failed or i not in best else best[i] for i in range(len(mods))]


def remove_artifacts(built) -> None:
    import os
    import shutil

    for result in built:
        if result.artifact_path:
            shutil.rmtree(os.path.dirname(result.artifact_path), ignore_errors=True)


def measure_modules(mods: Sequence, target_spec, builder, runner, rounds: int = 1) -> List[Optional[float]]:
    """Build ``mods`` in one batch and time them in ``rounds`` interleaved rounds (microseconds)."""
    built = build_modules(mods, target_spec, builder)
    try:
        return time_built(mods, built, target_spec, runner, rounds)
    finally:
        remove_artifacts(built)
