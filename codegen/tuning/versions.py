"""Fusion versions chosen by measurement (CANAO: "auto-tuning picks the best fusion version").

Given alternative modules for the same computation — e.g. one per yellow decision of an
LP-Fusion plan, or whole alternative plans — tune each with the same trial budget, build it
with its database (default schedules for the rest), check it computes what the first one does,
time them side by side in interleaved rounds (the measurement core, ``canao.measure``), and keep
the fastest.
"""
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from canao.atomic import write_json
from canao.errors import CanaoError

from ..options import BuildOptions

REPORT = "fusion_versions.json"


@dataclass
class VersionResult:
    name: str
    kernels: int  # PrimFuncs in the fused module: kernel launches per call, roughly
    trials: int
    tuning_seconds: float
    min_ms: Optional[float] = None
    median_ms: Optional[float] = None
    max_abs_diff: Optional[float] = None  # against the first candidate's outputs
    agrees: bool = True
    ratio_to_reference: Optional[float] = None  # median / the reference workload's median, same rounds


@dataclass
class FusionChoice:
    chosen: str
    speedup_vs_runner_up: Optional[float]  # runner-up min time / chosen min time
    speedup_vs_slowest: Optional[float]
    versions: List[VersionResult] = field(default_factory=list)
    noise: dict = field(default_factory=dict)  # the measurement's reference time, load, tries, flag

    def to_json(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"{'version':32s} {'kernels':>7s} {'trials':>6s} {'min ms':>9s} {'median ms':>9s} {'max diff':>9s}"]
        for v in self.versions:
            mark = " <- chosen" if v.name == self.chosen else ("" if v.agrees else " (disagrees, excluded)")
            lines.append(f"{v.name[:32]:32s} {v.kernels:7d} {v.trials:6d} {_fmt(v.min_ms)} {_fmt(v.median_ms)} "
                         f"{v.max_abs_diff if v.max_abs_diff is not None else float('nan'):9.2e}{mark}")
        if self.speedup_vs_runner_up is not None:
            lines.append(f"{self.chosen} is {self.speedup_vs_runner_up:.2f}x faster than the runner-up, "
                         f"{self.speedup_vs_slowest:.2f}x faster than the slowest (min times)")
        return "\n".join(lines)


def choose_fusion_version(candidates: Sequence[Tuple[str, object]], target_spec, work_dir, trials: int,
                          time_budget_s: Optional[float] = None, runner=None, *, inputs=None,
                          pipeline: str = "canao", options: Optional[dict] = None, rounds: int = 5,
                          measure: Optional[Callable] = None, rtol: float = 1e-4, atol: float = 1e-5,
                          progress: bool = True) -> FusionChoice:
    """Tune every (name, module) candidate with the same budget, measure, keep the fastest.

    Each candidate gets its own resumable database under ``work_dir/<name>``; the report is
    written to ``work_dir/fusion_versions.json``. ``inputs``: arguments of ``main`` (numpy),
    generated from its signature when omitted. ``measure(name, executable, args) -> [seconds]``
    replaces local timing (e.g. on a phone through RPC); ``time_budget_s`` is per candidate.
    """
    from canao.measure import measure as measure_core

    from .apply import compile_fused
    from .tasks import fused_module
    from .tuner import tune

    if len(candidates) < 1:
        raise CanaoError("no fusion versions to choose from", "pass at least one (name, IRModule) candidate")
    names = [name for name, _ in candidates]
    if len(set(names)) != len(names):
        raise CanaoError(f"fusion version names repeat: {names}", "give each candidate a distinct name")
    if measure is None and not target_spec.runs_locally:
        raise CanaoError(f"cannot time fusion versions for {target_spec.name} on this machine",
                         "pass measure=<function timing an executable on the device> (e.g. over RPC)")
    work_dir = Path(work_dir)
    results, executables = [], []
    for name, mod in candidates:
        fused = fused_module(mod, target_spec, pipeline, options)
        db = work_dir / _safe(name)
        report = tune(fused, target_spec, db, trials, time_budget_s, runner, pipeline=pipeline,
                      options=options, progress=progress)
        opts = BuildOptions.coerce(options)
        if report.trials_total:
            opts = opts.replace(tuning_db=str(db))
        executables.append(compile_fused(fused, target_spec, pipeline, opts))
        results.append(VersionResult(name, _kernel_count(fused), report.trials_total, report.seconds_total))
    args = inputs if inputs is not None else example_args(candidates[0][1])
    _check_agreement(executables, args, results, rtol, atol)
    timer = measure or _local_timer
    # interleaved rounds through the measurement core, so a noisy neighbour hits every version alike
    row = measure_core({r.name: _reports_ms(timer, r.name, exe, args) for r, exe in zip(results, executables)},
                       rounds, warmup=1)
    for result in results:
        result.min_ms = row.best_ms(result.name)
        result.median_ms = row.median_ms(result.name)
        result.ratio_to_reference = row.ratio(result.name)
    choice = _choose(results)
    choice.noise = row.noise()
    write_json(work_dir / REPORT, choice.to_json())
    return choice


def example_args(mod) -> List[np.ndarray]:
    """Arguments for ``main`` from its signature: small normal floats, ones for integers
    (valid as token ids, type ids and masks)."""
    rng = np.random.default_rng(0)
    args = []
    for param in mod["main"].params:
        ty = param.ty if hasattr(param, "ty") else param.struct_info
        shape = [int(d) for d in ty.shape]
        dtype = str(ty.dtype)
        if dtype.startswith(("int", "uint")):
            args.append(np.ones(shape, dtype=dtype))
        elif dtype == "bool":
            args.append(np.ones(shape, dtype=bool))
        else:
            args.append((0.1 * rng.standard_normal(shape)).astype(dtype))
    return args


def _run(exe, args):
    import tvm
    from tvm import relax

    dev = tvm.cpu()
    vm = relax.VirtualMachine(exe, dev)
    out = vm["main"](*[tvm.runtime.tensor(a, dev) for a in args])
    return [o.numpy() for o in _flatten(out)]


def _flatten(out):
    if hasattr(out, "numpy"):
        return [out]
    return [x for item in out for x in _flatten(item)]


def _reports_ms(timer, name, exe, args):
    """A candidate for the measurement core: one call = ``timer``'s samples, in ms."""
    def run():
        return [1e3 * float(s) for s in timer(name, exe, args)]

    run.reports_ms = True
    return run


def _local_timer(name, exe, args) -> List[float]:
    import tvm
    from tvm import relax

    dev = tvm.cpu()
    vm = relax.VirtualMachine(exe, dev)
    tensors = [tvm.runtime.tensor(a, dev) for a in args]
    timer = vm.time_evaluator("main", dev, number=1, repeat=3, min_repeat_ms=20)
    return list(timer(*tensors).results)


def _check_agreement(executables, args, results, rtol, atol) -> None:
    reference = _run(executables[0], args)
    results[0].max_abs_diff = 0.0
    for exe, result in zip(executables[1:], results[1:]):
        outs = _run(exe, args)
        same_shape = len(outs) == len(reference) and all(o.shape == r.shape for o, r in zip(outs, reference))
        if not same_shape:
            result.agrees, result.max_abs_diff = False, float("inf")
            continue
        result.max_abs_diff = max(float(np.max(np.abs(o.astype(np.float64) - r))) if o.size else 0.0
                                  for o, r in zip(outs, reference))
        result.agrees = all(np.allclose(o, r, rtol=rtol, atol=atol, equal_nan=True) for o, r in zip(outs, reference))


def _choose(results: List[VersionResult]) -> FusionChoice:
    valid = sorted((r for r in results if r.agrees), key=lambda r: r.min_ms)
    best = valid[0]
    runner_up = valid[1].min_ms / best.min_ms if len(valid) > 1 else None
    slowest = valid[-1].min_ms / best.min_ms if len(valid) > 1 else None
    return FusionChoice(best.name, runner_up, slowest, results)


def _kernel_count(fused) -> int:
    import tvm

    return sum(1 for f in fused.functions.values() if isinstance(f, tvm.tirx.PrimFunc))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "version"


def _fmt(value) -> str:
    return f"{value:9.3f}" if value is not None else f"{'-':>9s}"
