"""Building and timing scheduled kernels with the tuning builder and runner, in interleaved
rounds through the measurement core (``canao.measure.measure_rounds``: one runner batch per round,
the reference workload timed before and after each, the noise gate), so kernels compared with
each other are measured under the same machine load. A kernel that fails to build or run is
recorded (``tuning-measurement`` in the build report, a CanaoWarning) instead of vanishing.

Which kernel wins is decided elsewhere (verdict.py, variants.py); whether a kernel computes the
right thing is kernel_check.py's job.
"""
import os
import shutil
from typing import Dict, List, Optional, Sequence, Tuple


def measure_modules(mods: Sequence, target_spec, builder, runner, names: Sequence[str],
                    rounds: int = 1) -> Tuple[List[Optional[float]], object]:
    """Build ``mods`` (IRModules with one PrimFunc "main") in one batch and time them in
    ``rounds`` interleaved rounds. Returns (the best mean run time of each in microseconds, None
    where its build or a run failed; the measurement core's Row, None when nothing built)."""
    built = _build(mods, target_spec, builder)
    try:
        return _time_built(mods, built, target_spec, runner, rounds, list(names))
    finally:
        _remove_artifacts(built)


def _build(mods: Sequence, target_spec, builder) -> list:
    """MetaSchedule BuilderResults for ``mods`` (one batch)."""
    from tvm.s_tir.meta_schedule.builder import BuilderInput

    target = target_spec.tvm_target()
    return builder.build([BuilderInput(mod, target) for mod in mods])


def _time_built(mods: Sequence, built: Sequence, target_spec, runner, rounds: int,
                names: List[str]) -> Tuple[List[Optional[float]], object]:
    """Every round runs every built module once, in order, so a burst of load on this shared
    machine hits all of them rather than one; the minimum over rounds is kept."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.meta_schedule.runner import RunnerInput

    from canao.measure import measure_rounds
    from canao.measure.report import TUNING_MEASUREMENT, record

    target = target_spec.tvm_target()
    device = {"llvm": "cpu", "c": "cpu"}.get(target.kind.name, target.kind.name)
    ok = [i for i, b in enumerate(built) if b.error_msg is None]
    for i, b in enumerate(built):
        if b.error_msg is not None:
            record(TUNING_MEASUREMENT, names[i], f"build failed: {b.error_msg}")
    run_errors: Dict[int, str] = {}

    def one_round(_round):
        futures = runner.run([RunnerInput(built[i].artifact_path, device, ArgInfo.from_prim_func(mods[i]["main"]))
                              for i in ok])
        out = {}
        for i, future in zip(ok, futures):
            result = future.result()
            if result.error_msg is not None or not result.run_secs:
                run_errors.setdefault(i, result.error_msg or "no run times")
                out[str(i)] = None
                continue
            secs = [float(s) for s in result.run_secs]
            out[str(i)] = 1e3 * sum(secs) / len(secs)  # ms, one sample per round
        return out

    if not ok:
        return [None] * len(mods), None
    row = measure_rounds(one_round, [str(i) for i in ok], max(1, rounds))
    for i, why in sorted(run_errors.items()):
        record(TUNING_MEASUREMENT, names[i], f"run failed: {why}")
    times = []
    for i in range(len(mods)):
        best = row.best_ms(str(i)) if i in ok and i not in run_errors else None
        times.append(None if best is None else 1e3 * best)
    return times, row


def _remove_artifacts(built) -> None:
    for result in built:
        if result.artifact_path:
            shutil.rmtree(os.path.dirname(result.artifact_path), ignore_errors=True)
