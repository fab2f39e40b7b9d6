"""Building and timing scheduled kernels with the tuning builder and runner, in interleaved
rounds through the measurement core (``canao.measure.measure_rounds``: one runner batch per round,
the reference workload timed before and after each, the noise gate), so kernels compared with
each other are measured under the same machine load. A candidate that fails to build or run is
recorded (``tuning-measurement`` in the build report, a CanaoWarning) instead of vanishing."""
from typing import Dict, List, Optional, Sequence, Tuple


def build_modules(mods: Sequence, target_spec, builder) -> List[object]:
    """MetaSchedule BuilderResults for ``mods`` (one batch)."""
    from tvm.s_tir.meta_schedule.builder import BuilderInput

    target = target_spec.tvm_target()
    return builder.build([BuilderInput(mod, target) for mod in mods])


def time_built(mods: Sequence, built: Sequence, target_spec, runner, rounds: int = 1,
               names: Optional[Sequence[str]] = None) -> List[Optional[float]]:
    """Best (minimum over ``rounds``) mean run time in microseconds of each built module; None
    where the build or a run failed. Every round runs every module once, in order, so a burst
    of load on this shared machine hits all of them rather than one."""
    return time_built_row(mods, built, target_spec, runner, rounds, names)[0]


def time_built_row(mods: Sequence, built: Sequence, target_spec, runner, rounds: int = 1,
                   names: Optional[Sequence[str]] = None) -> Tuple[List[Optional[float]], object]:
    """(time_built's list, the measurement core's Row: reference, load, tries, flag)."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.meta_schedule.runner import RunnerInput

    from canao.measure import measure_rounds
    from canao.measure.report import TUNING_MEASUREMENT, record

    labels = list(names) if names is not None else [_label(m, i) for i, m in enumerate(mods)]
    target = target_spec.tvm_target()
    device = {"llvm": "cpu", "c": "cpu"}.get(target.kind.name, target.kind.name)
    ok = [i for i, b in enumerate(built) if b.error_msg is None]
    for i, b in enumerate(built):
        if b.error_msg is not None:
            record(TUNING_MEASUREMENT, labels[i], f"build failed: {b.error_msg}")
    run_errors: Dict[int, str] = {}

    def one_round(_r):
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
        record(TUNING_MEASUREMENT, labels[i], f"run failed: {why}")
    times = []
    for i in range(len(mods)):
        best = row.best_ms(str(i)) if i in ok and i not in run_errors else None
        times.append(None if best is None else 1e3 * best)
    return times, row


def _label(mod, i: int) -> str:
    try:
        attrs = mod["main"].attrs
        if attrs is not None and "global_symbol" in attrs:
            return f"candidate {i} ({attrs['global_symbol']})"
    except Exception:  # noqa: BLE001 - a label only
        pass
    return f"candidate {i}"


def remove_artifacts(built) -> None:
    import os
    import shutil

    for result in built:
        if result.artifact_path:
            shutil.rmtree(os.path.dirname(result.artifact_path), ignore_errors=True)


def measure_modules(mods: Sequence, target_spec, builder, runner, rounds: int = 1,
                    names: Optional[Sequence[str]] = None) -> List[Optional[float]]:
    """Build ``mods`` in one batch and time them in ``rounds`` interleaved rounds (microseconds)."""
    return measure_modules_row(mods, target_spec, builder, runner, rounds, names)[0]


def measure_modules_row(mods: Sequence, target_spec, builder, runner, rounds: int = 1,
                        names: Optional[Sequence[str]] = None):
    """(measure_modules' list, the measurement core's Row or None when nothing built)."""
    built = build_modules(mods, target_spec, builder)
    try:
        return time_built_row(mods, built, target_spec, runner, rounds, names)
    finally:
        remove_artifacts(built)


def _random_args(func, seed: int):
    import numpy as np
    import tvm
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    rng = np.random.default_rng(seed)
    out = []
    for info in ArgInfo.from_prim_func(func):
        shape, dtype = [int(d) for d in info.shape], str(info.dtype)
        if "float" in dtype:
            value = rng.standard_normal(shape).astype(dtype)
        elif dtype == "bool":
            value = rng.integers(0, 2, size=shape).astype(bool)
        else:  # indices and masks: small non-negative values stay in range
            value = rng.integers(0, 2, size=shape).astype(dtype)
        out.append(tvm.runtime.tensor(value))
    return out


def agrees(mod, reference_mod, target, rtol: float = 1e-4, seed: int = 0, name: Optional[str] = None) -> bool:
    """Whether ``mod`` computes what ``reference_mod`` does (both one PrimFunc "main", built for
    ``target`` here, run on the same random inputs). A schedule is only a candidate if it does:
    e.g. a register tile that straddles a reshape/transpose epilogue's rows gave wrong results."""
    import numpy as np
    import tvm

    try:
        got_lib, want_lib = tvm.tirx.build(mod, target=target), tvm.tirx.build(reference_mod, target=target)
        got, want = _random_args(mod["main"], seed), _random_args(reference_mod["main"], seed)
        got_lib["main"](*got)
        want_lib["main"](*want)
    except Exception as exc:  # a candidate that does not build or run is no candidate: recorded
        from canao.measure.report import VARIANT_CHECK, record

        record(VARIANT_CHECK, name or _label(mod, 0).replace("candidate 0", "candidate"), exc)
        return False
    if len(got) != len(want):
        return False
    for a, b in zip(got, want):
        a, b = a.numpy(), b.numpy()
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.dtype == bool or b.dtype == bool:
            if not np.array_equal(a, b):
                return False
        elif not np.allclose(a, b, rtol=rtol, atol=rtol * max(1.0, float(np.abs(b).max())), equal_nan=True):
            return False
    return True
