"""The one measurement core: everything in CANAO that times code goes through here.

Used by the benchmark (``canao.bench.timing``), the yellow-edge fusion measurements
(``canao.fusion.yellow_edges``), the tuning baseline / variants / side-by-side verdict and the fusion
version choice (``canao.codegen.tuning.kernel_timing``, ``versions``) and the NAS latency dataset
(``canao.nas.measurer``). What it does, in one place:

* **warm-up** calls of every candidate before anything is timed;
* **interleaved rounds**: round r runs every candidate once, in rotating order, so a burst of load
  on a shared machine hits all of them rather than one;
* a **fixed reference workload** (:class:`Reference`, a seeded float32 matmul) timed in the same
  rounds, so every figure is also stored as a ratio to it: a shared machine slows both alike;
* **robust statistics** (:func:`robust_stats`): min, median, percentiles, HAT's trimmed mean, MAD,
  and the spread (IQR / median);
* a **noise gate** (:class:`Gate`): when the reference's spread within a try, or its drift (first
  half of the rounds vs second half, and this try vs the quietest reference seen in this process)
  passes a threshold, the candidates are measured again; after ``max_tries`` the row is recorded
  *flagged*. The 1-minute load average and the reference time are stored with every row
  (:meth:`Row.noise`).
* :func:`assert_quiet_machine` refuses to start a long measurement while the load average says
  another heavy job is running (an override skips it).

Two entry points: :func:`measure` times Python callables (one call = one sample, or a callable
with ``reports_ms = True`` that returns its own milliseconds, e.g. a device runner or TVM's
time evaluator); :func:`measure_rounds` drives a *batch* per round (MetaSchedule's runner, an
instrumented VM run) and times the reference right before and after each batch.
"""
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

REFERENCE = "__reference__"
MEASURE_VERSION = 2  # bump when the method changes: cached measurements keyed on it go stale

Number = Union[float, int]


# --------------------------------------------------------------------------------------- statistics

def robust_stats(samples_ms: Sequence[Number], trim: float = 0.1) -> Dict[str, float]:
    """Statistics of one candidate's samples (ms). ``trimmed_mean_ms`` is HAT's: sort, drop the
    lowest and highest ``trim`` share, mean of the rest. ``spread`` is IQR / median."""
    a = np.sort(np.asarray([float(s) for s in samples_ms], dtype=np.float64))
    if a.size == 0:
        return {"n": 0}
    k = int(a.size * trim)
    kept = a[k:a.size - k] if a.size - 2 * k > 0 else a
    median = float(np.median(a))
    q25, q75 = (float(x) for x in np.percentile(a, [25, 75]))
    return {"n": int(a.size), "min_ms": float(a[0]), "p10_ms": float(np.percentile(a, 10)), "p50_ms": median,
            "p90_ms": float(np.percentile(a, 90)), "max_ms": float(a[-1]), "mean_ms": float(a.mean()),
            "std_ms": float(a.std()), "trimmed_mean_ms": float(kept.mean()), "trimmed_std_ms": float(kept.std()),
            "trimmed_kept": int(kept.size), "mad_ms": float(np.median(np.abs(a - median))),
            "spread": (q75 - q25) / median if median > 0 else 0.0}


def reference_drift(samples_ms: Sequence[Number]) -> float:
    """|median of the second half / median of the first half - 1| of samples in time order (0 for
    fewer than 4): the load changed while the candidates were being measured."""
    xs = [float(s) for s in samples_ms]
    if len(xs) < 4:
        return 0.0
    half = len(xs) // 2
    first, second = float(np.median(xs[:half])), float(np.median(xs[half:]))
    return abs(second / first - 1.0) if first > 0 else 0.0


# ---------------------------------------------------------------------------------------- the gate

def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass
class Gate:
    """When a try counts as too noisy to keep. ``max_spread``: the reference's IQR / median within
    the try; ``max_drift``: the reference's change within the try (halves) or its slowdown against
    ``baseline`` (the quietest reference median seen in this process unless given);
    ``max_tries``: tries before the row is recorded flagged. Defaults can be set with
    CANAO_MEASURE_MAX_SPREAD / CANAO_MEASURE_MAX_DRIFT / CANAO_MEASURE_TRIES."""
    max_spread: float = 0.25
    max_drift: float = 0.25
    max_tries: int = 3

    @classmethod
    def from_env(cls) -> "Gate":
        return cls(_env_float("CANAO_MEASURE_MAX_SPREAD", 0.25), _env_float("CANAO_MEASURE_MAX_DRIFT", 0.25),
                   max(1, int(_env_float("CANAO_MEASURE_TRIES", 3))))

    def check(self, reference_ms: Sequence[Number], baseline_ms: Optional[float] = None) -> Tuple[List[str], dict]:
        """(reasons to re-measure — empty when the try is clean, figures) for one try's reference samples."""
        stats = robust_stats(reference_ms)
        if not stats["n"]:
            return [], {"spread": 0.0, "drift": 0.0, "slowdown": 0.0}
        spread = stats["spread"]
        drift = reference_drift(reference_ms)
        slowdown = stats["p50_ms"] / baseline_ms - 1.0 if baseline_ms else 0.0
        reasons = []
        if spread > self.max_spread:
            reasons.append(f"reference spread {spread:.0%} > {self.max_spread:.0%}")
        if drift > self.max_drift:
            reasons.append(f"reference drifted {drift:.0%} within the rounds > {self.max_drift:.0%}")
        if slowdown > self.max_drift:
            reasons.append(f"reference {slowdown:.0%} slower than the quietest seen ({baseline_ms:.3f} ms) "
                           f"> {self.max_drift:.0%}")
        return reasons, {"spread": spread, "drift": drift, "slowdown": slowdown}


# ----------------------------------------------------------------------------------- the reference

class Reference:
    """The fixed reference workload: ``repeat`` passes of element-wise float32 arithmetic (a
    multiply-add and a tanh) over a seeded ``size``-element vector — single-threaded numpy, no
    BLAS (whose thread pool on a loaded machine times its own contention), cache-resident, about
    a millisecond per call. Its identity (``key``) names the quietest-median baseline kept per
    process.

    Why a millisecond: at 8 passes (0.1 ms) the reference's own jitter, timed right after a
    two-thread model run, was 40-50% (IQR / median) on a quiet machine, so the gate flagged 19 of
    20 latency rows; at 96 passes it is 15-25%, and model / reference ratios of consecutive
    measurements agreed within 3% where raw model times moved 25% (a shared VM's host load)."""

    def __init__(self, size: int = 16384, repeat: int = 96):
        rng = np.random.default_rng(1234)
        self.size, self.repeat = size, repeat
        self.x = rng.standard_normal(size).astype(np.float32)
        self.a = rng.standard_normal(size).astype(np.float32)
        self.out = np.empty_like(self.x)
        self.key = f"tanh-fma{size}x{repeat}"

    def __call__(self) -> None:
        np.copyto(self.out, self.x)
        for _ in range(self.repeat):  # each pass depends on the last
            np.multiply(self.out, self.a, out=self.out)
            np.add(self.out, self.x, out=self.out)
            np.tanh(self.out, out=self.out)
        return None


_DEFAULT_REFERENCE: Optional[Reference] = None
_QUIETEST: Dict[str, float] = {}  # reference key -> quietest median (ms) seen in this process


def default_reference() -> Reference:
    global _DEFAULT_REFERENCE
    if _DEFAULT_REFERENCE is None:
        _DEFAULT_REFERENCE = Reference()
    return _DEFAULT_REFERENCE


def reference_baseline(reference=None) -> Optional[float]:
    """The quietest reference median seen in this process (None before the first measurement)."""
    return _QUIETEST.get(getattr(reference or default_reference(), "key", "custom"))


def calibrate_reference(reference=None, samples: int = 15, clock=time.perf_counter) -> float:
    """Time the reference alone ``samples`` times (after one warm-up); its median (ms) becomes the
    process baseline if it is the quietest yet. Returns that median."""
    reference = reference or default_reference()
    reference()
    ms = [time_call(reference, clock)[0] for _ in range(samples)]
    median = float(np.median(ms))
    _note_quiet(reference, median)
    return median


def _note_quiet(reference, median: float) -> None:
    key = getattr(reference, "key", "custom")
    if median > 0 and (key not in _QUIETEST or median < _QUIETEST[key]):
        _QUIETEST[key] = median


# ----------------------------------------------------------------------------------- load average

def load_average() -> Optional[Tuple[float, float, float]]:
    """(1, 5, 15)-minute load averages, None where the OS has none."""
    try:
        return tuple(float(x) for x in os.getloadavg())
    except (OSError, AttributeError):
        return None


def default_max_load() -> float:
    """The 1-minute load above which another heavy job is running: CANAO_MAX_LOAD, else half the
    cores (at least 1): a measurement of its own would load the machine further."""
    return _env_float("CANAO_MAX_LOAD", max(1.0, 0.5 * (os.cpu_count() or 1)))


def busy_override() -> bool:
    """CANAO_ALLOW_BUSY=1 measures on a busy machine anyway (rows still record the load)."""
    return os.environ.get("CANAO_ALLOW_BUSY", "").strip().lower() not in ("", "0", "false", "no")


def own_load() -> float:
    """This process's own share of the 1-minute load average (its threads and children).

    Why: a command compiles before it measures (``canao profile`` builds for 20-60 s on every core),
    and that work is in the load average when the quiet check runs, so the check refused the
    command's own compile. Estimated from the process's CPU seconds, assumed spread evenly since it
    started, through the kernel's 1-minute exponential average: rate x (1 - exp(-elapsed / 60))."""
    try:
        import psutil

        proc = psutil.Process()
        times = proc.cpu_times()
        cpu = times.user + times.system + getattr(times, "children_user", 0.0) + getattr(times, "children_system", 0.0)
        elapsed = max(1e-3, time.time() - proc.create_time())
    except Exception:  # no psutil / no /proc: count nothing as ours (the check stays strict)
        return 0.0
    return (cpu / elapsed) * (1.0 - math.exp(-elapsed / 60.0))


def assert_quiet_machine(override: bool = False, max_load: Optional[float] = None, load=None,
                         what: str = "measuring", own=None) -> Optional[float]:
    """Refuse (CanaoError) to start ``what`` while the 1-minute load average, less this process's
    own share (:func:`own_load`, or ``own()``), exceeds ``max_load`` (default :func:`default_max_load`)
    — another heavy job is running and would be in every figure. ``override`` (or CANAO_ALLOW_BUSY=1)
    skips the refusal. Returns the 1-minute load (None if unknown)."""
    loads = (load or load_average)()
    one = loads[0] if loads else None
    if override or busy_override() or one is None:
        return one
    limit = default_max_load() if max_load is None else max_load
    others = one - (own or own_load)()
    if others > limit:
        from canao.errors import CanaoError

        raise CanaoError(f"refusing to start {what}: the 1-minute load average is {one:.2f}, {others:.2f} of it "
                         f"not ours (> {limit:.2f} on {os.cpu_count()} cores): another heavy job is running",
                         "wait for it to finish, or override (--allow-busy / CANAO_ALLOW_BUSY=1; rows record the load)")
    return one


# -------------------------------------------------------------------------------------------- rows

@dataclass
class Row:
    """One measurement: every candidate's samples and statistics, the reference timed with them,
    the ratios to it, the load, and what the noise gate said."""
    samples_ms: Dict[str, List[float]]
    reference_ms: List[float]
    load_avg: Optional[Tuple[float, float, float]] = None
    tries: int = 1
    flagged: bool = False
    reasons: List[str] = field(default_factory=list)  # why each rejected try was rejected
    failed: List[str] = field(default_factory=list)  # candidates that failed (no samples)
    gate: dict = field(default_factory=dict)  # spread / drift / slowdown of the kept try

    def stats(self, name: str) -> Dict[str, float]:
        return robust_stats(self.samples_ms.get(name, []))

    @property
    def reference_median_ms(self) -> Optional[float]:
        return float(np.median(self.reference_ms)) if self.reference_ms else None

    def best_ms(self, name: str) -> Optional[float]:
        xs = self.samples_ms.get(name)
        return float(min(xs)) if xs else None

    def median_ms(self, name: str) -> Optional[float]:
        xs = self.samples_ms.get(name)
        return float(np.median(xs)) if xs else None

    def ratio(self, name: str, statistic: str = "p50_ms") -> Optional[float]:
        """The candidate's ``statistic`` over the reference's median (same rounds)."""
        ref = self.reference_median_ms
        st = self.stats(name)
        return st[statistic] / ref if ref and st.get(statistic) is not None else None

    def noise(self) -> dict:
        """What every stored figure carries: reference time, load, tries, flag."""
        return {"reference_ms": self.reference_median_ms,
                "reference_spread": self.gate.get("spread"), "reference_drift": self.gate.get("drift"),
                "reference_slowdown": self.gate.get("slowdown"),
                "load_avg_1m": self.load_avg[0] if self.load_avg else None,
                "load_avg": list(self.load_avg) if self.load_avg else None,
                "tries": self.tries, "flagged": self.flagged, "reasons": list(self.reasons),
                "measure_version": MEASURE_VERSION}


# ---------------------------------------------------------------------------------------- timing

def time_call(fn: Callable[[], object], clock=time.perf_counter) -> List[float]:
    """Milliseconds of one call, as a list: a callable with ``reports_ms = True`` (a runner timing
    itself on a device, TVM's time evaluator) returns its own ms (one number or several)."""
    start = clock()
    result = fn()
    elapsed = (clock() - start) * 1e3
    if getattr(fn, "reports_ms", False):
        if isinstance(result, (list, tuple, np.ndarray)):
            return [float(x) for x in result]
        return [float(result)]
    return [elapsed]


def measure_rounds(run_round: Callable[[int], Mapping[str, object]], names: Sequence[str], rounds: int, *,
                   warmup_round: Optional[Callable[[], object]] = None, reference=None,
                   gate: Optional[Gate] = None, baseline_ms: Optional[float] = None, progress=None,
                   load=load_average, clock=time.perf_counter) -> Row:
    """Drive ``rounds`` batch rounds through the gate. ``run_round(r)`` runs every candidate once
    and returns {name: ms, list of ms, or None when it failed}; the reference is timed right
    before and after each batch. ``warmup_round`` (if given) runs once before the first try."""
    reference = reference if reference is not None else default_reference()
    if warmup_round is not None:
        warmup_round()
    reference()  # its own warm-up

    def one_try(_try: int):
        samples: Dict[str, List[float]] = {n: [] for n in names}
        failed = set()
        ref: List[float] = []
        for r in range(max(1, rounds)):
            ref += time_call(reference, clock)
            got = run_round(r)
            ref += time_call(reference, clock)
            for n in names:
                value = got.get(n) if got is not None else None
                if value is None:
                    failed.add(n)
                elif isinstance(value, (list, tuple, np.ndarray)):
                    samples[n] += [float(v) for v in value]
                else:
                    samples[n].append(float(value))
            if progress:
                progress(r + 1)
        return samples, ref, failed

    return _gated(one_try, reference, gate, baseline_ms, load)


def measure(candidates: Mapping[str, Callable[[], object]], rounds: int, *, warmup: int = 1,
            max_seconds: Optional[float] = None, min_runs: int = 3, reference=None, gate: Optional[Gate] = None,
            baseline_ms: Optional[float] = None, progress=None, load=load_average,
            clock=time.perf_counter) -> Row:
    """Time callables in interleaved rounds with the reference as one more candidate in the
    rotation. ``warmup`` calls of each first. A candidate whose timed total passes
    ``max_seconds`` leaves the rounds early (keeping >= ``min_runs`` samples): an untuned build at
    seconds per call must not hold the others hostage. An exception in a candidate propagates."""
    reference = reference if reference is not None else default_reference()
    names = list(candidates)
    for _ in range(max(0, warmup)):
        for fn in candidates.values():
            fn()
        reference()
    runners = dict(candidates)
    runners[REFERENCE] = reference
    order0 = names + [REFERENCE]

    def one_try(_try: int):
        samples: Dict[str, List[float]] = {n: [] for n in order0}
        spent = {n: 0.0 for n in order0}
        for r in range(max(1, rounds)):
            shift = r % len(order0)
            for n in order0[shift:] + order0[:shift]:
                if n != REFERENCE and max_seconds is not None and len(samples[n]) >= min_runs \
                        and spent[n] > max_seconds * 1e3:
                    continue
                ms = time_call(runners[n], clock)
                samples[n] += ms
                spent[n] += sum(ms)
            if progress:
                progress(r + 1)
        ref = samples.pop(REFERENCE)
        return samples, ref, set()

    return _gated(one_try, reference, gate, baseline_ms, load)


def _gated(one_try, reference, gate: Optional[Gate], baseline_ms: Optional[float], load) -> Row:
    """Run tries until the gate passes or ``max_tries`` is spent; keep the clean try, or else the
    least noisy one, flagged."""
    gate = gate if gate is not None else Gate.from_env()
    reasons_all: List[str] = []
    kept = None
    for attempt in range(1, max(1, gate.max_tries) + 1):
        loads = load()
        samples, ref, failed = one_try(attempt)
        base = baseline_ms if baseline_ms is not None else reference_baseline(reference)
        reasons, figures = gate.check(ref, base)
        if ref and baseline_ms is None:
            _note_quiet(reference, float(np.median(ref)))
        score = max(figures["spread"] / max(gate.max_spread, 1e-9),
                    max(figures["drift"], figures["slowdown"]) / max(gate.max_drift, 1e-9))
        candidate = (score, samples, ref, failed, figures, loads)
        if kept is None or score < kept[0]:
            kept = candidate
        if not reasons:
            kept = candidate
            return _row(kept, attempt, False, reasons_all)
        reasons_all += [f"try {attempt}: {r}" for r in reasons]
    return _row(kept, gate.max_tries, True, reasons_all)


def _row(kept, tries: int, flagged: bool, reasons: List[str]) -> Row:
    _, samples, ref, failed, figures, loads = kept
    failed = set(failed) | {n for n, xs in samples.items() if not xs}
    return Row({n: list(v) for n, v in samples.items()}, list(ref), loads, tries, flagged, reasons,
               sorted(failed), dict(figures))
