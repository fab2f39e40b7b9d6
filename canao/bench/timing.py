"""Timing engines fairly on a noisy shared machine: interleaved rounds, min and median reported."""
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List

import numpy as np


@dataclass
class Timings:
    samples_ms: List[float] = field(default_factory=list)

    def stats(self) -> Dict[str, float]:
        a = np.asarray(self.samples_ms, dtype=float)
        if a.size == 0:
            return {}
        return {"runs": int(a.size), "avg_ms": float(a.mean()), "min_ms": float(a.min()),
                "p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
                "max_ms": float(a.max()), "std_ms": float(a.std())}


def time_once(fn: Callable[[], object]) -> float:
    """Milliseconds of one call; a runner that measures itself (on a device) returns its own ms."""
    start = time.perf_counter()
    result = fn()
    elapsed = (time.perf_counter() - start) * 1e3
    return float(result) if getattr(fn, "reports_ms", False) else elapsed


def interleaved(runners: Dict[str, Callable[[], object]], runs: int, warmup: int,
                max_seconds: float, progress=None) -> Dict[str, Timings]:
    """Round r runs every engine once, in rotating order, so noise hits all engines alike.

    An engine whose timed total passes ``max_seconds`` leaves the rounds early (keeping >= 3 runs):
    an untuned build at seconds per call must not hold the others hostage. Runs done are reported.
    """
    for fn in runners.values():
        for _ in range(warmup):
            fn()
    results = {name: Timings() for name in runners}
    spent = {name: 0.0 for name in runners}
    names = list(runners)
    for r in range(runs):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            t = results[name]
            if len(t.samples_ms) >= 3 and spent[name] > max_seconds * 1e3:
                continue
            ms = time_once(runners[name])
            t.samples_ms.append(ms)
            spent[name] += ms
        if progress:
            progress(r + 1)
    return results
