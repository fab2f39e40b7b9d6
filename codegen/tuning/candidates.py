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


def agrees(mod, reference_mod, target, rtol: float = 1e-4, seed: int = 0) -> bool:
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
    except Exception:  # a candidate that does not build or run is no candidate
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
