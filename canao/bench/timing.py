"""Timing engines fairly on a noisy shared machine, through the one measurement core
(``canao.measure``): warm-up, interleaved rounds with the reference workload in the same rounds,
the noise gate; min, median and the ratio to the reference reported."""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from canao.measure import Gate, measure, robust_stats, time_call


@dataclass
class Timings:
    samples_ms: List[float] = field(default_factory=list)
    noise: dict = field(default_factory=dict)  # the row's reference time, load, tries, flag (shared by all engines)
    ratio: Optional[float] = None  # median / the reference's median in the same rounds

    def stats(self) -> Dict[str, float]:
        s = robust_stats(self.samples_ms)
        if not s["n"]:
            return {}
        out = {"runs": s["n"], "avg_ms": s["mean_ms"], "min_ms": s["min_ms"], "p50_ms": s["p50_ms"],
               "p90_ms": s["p90_ms"], "max_ms": s["max_ms"], "std_ms": s["std_ms"]}
        if self.noise:
            out.update({"ratio_to_reference": self.ratio, "reference_ms": self.noise.get("reference_ms"),
                        "load_avg_1m": self.noise.get("load_avg_1m"), "measure_tries": self.noise.get("tries"),
                        "noise_flagged": self.noise.get("flagged")})
        return out


def time_once(fn: Callable[[], object]) -> float:
    """Milliseconds of one call; a runner that measures itself (on a device) returns its own ms."""
    return time_call(fn)[0]


def interleaved(runners: Dict[str, Callable[[], object]], runs: int, warmup: int,
                max_seconds: float, progress=None, gate: Optional[Gate] = None) -> Dict[str, Timings]:
    """Round r runs every engine once, in rotating order (the reference workload too), so noise
    hits all engines alike; the noise gate re-measures a noisy try (``canao.measure``).

    An engine whose timed total passes ``max_seconds`` leaves the rounds early (keeping >= 3 runs):
    an untuned build at seconds per call must not hold the others hostage. Runs done are reported.
    """
    if not runners:
        return {}
    row = measure(runners, runs, warmup=warmup, max_seconds=max_seconds, min_runs=3, gate=gate, progress=progress)
    noise = row.noise()
    return {name: Timings(list(row.samples_ms[name]), noise, row.ratio(name)) for name in runners}
