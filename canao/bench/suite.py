"""`canao benchmark`: every engine on the same model, weights and real input, checked, then timed."""
import os
import platform
import tempfile
import time
from typing import Dict, List, Optional

import numpy as np

from .. import analysis
from ..errors import CanaoError
from .engines import Engine, EngineUnavailable
from . import peak as peaks
from .timing import interleaved, time_once


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2 ** 20


def real_inputs(imported, batch: int) -> (Dict[str, np.ndarray], str):
    """Tokenized Rotten Tomatoes sentences when the model has a tokenizer, else seeded synthetic ids."""
    if imported.tokenizer_dir:
        from ..text import sample_sentences, tokenize

        seq_len = imported.inputs[0].shape[1]
        texts = sample_sentences(batch)
        dtypes = {s.name: s.dtype for s in imported.inputs}
        return tokenize(imported.tokenizer_dir, texts, seq_len, [s.name for s in imported.inputs], dtypes), \
            f"Rotten Tomatoes sentence(s), e.g. \"{texts[0][:60]}\""
    return imported.example_inputs(), "seeded synthetic token ids"


def relative_error(reference, candidate, floor: float = 1.0) -> float:
    """max |candidate - reference| / max(floor, max |reference|): the error the build's numeric check
    bounds (``within_tolerance``, ``canao compile --atol``), as one number.

    The maximum is over elements (not a norm), scaled by the reference's magnitude with a floor (1
    by default, so near-zero outputs are judged in absolute terms; the differential zoo and the
    benchmark's ``max_rel_err`` column use a tiny floor, i.e. purely relative). NaN-aware: NaN where both have NaN and equal
    infinities count as equal; NaN in only one of them, or a shape mismatch, is ``inf``. Lists /
    tuples of arrays (several outputs): the worst of the pairs (``inf`` when the counts differ).
    """
    if isinstance(reference, (list, tuple)):
        if len(reference) != len(candidate):
            return float("inf")
        return max((relative_error(a, b, floor) for a, b in zip(reference, candidate)), default=0.0)
    reference, candidate = np.asarray(reference, "float64"), np.asarray(candidate, "float64")
    if reference.shape != candidate.shape:
        return float("inf")
    if np.any(np.isnan(reference) != np.isnan(candidate)):
        return float("inf")
    ok = (np.isnan(reference) & np.isnan(candidate)) | (np.isinf(reference) & (reference == candidate))
    with np.errstate(invalid="ignore"):  # inf - inf where ``ok`` masks it
        diff = np.where(ok, 0.0, np.abs(reference - candidate))
    scale = max(floor, float(np.max(np.where(ok, 0.0, np.abs(reference)), initial=0.0)))
    return float(np.max(diff, initial=0.0)) / scale


def within_tolerance(err: float, ref: np.ndarray, atol: float) -> bool:
    """``err`` (max abs error) within ``atol`` relative to ``ref`` as ``relative_error`` scales it."""
    return err <= atol * max(1.0, float(np.abs(ref).max()))


def run(imported, engines: List[Engine], threads: int, runs: int, warmup: int, max_seconds: float,
        atol: float = 1e-3, progress: bool = True, time_s: Optional[Dict[str, float]] = None) -> dict:
    """Prepare, check and time ``engines``; ``time_s`` (phase -> seconds, e.g. the caller's model import)
    is extended with where this run's time went and stored in meta["time_s"]."""
    from tqdm import tqdm

    time_s = dict(time_s or {})
    clock = time.perf_counter()
    inputs, input_desc = real_inputs(imported, imported.inputs[0].shape[0])
    reference = imported.reference(inputs)
    time_s["reference"] = time.perf_counter() - clock
    clock = time.perf_counter()
    on_device = any(getattr(e, "timed_on_device", False) for e in engines)
    # the host's roofline says nothing about a device's engines
    measured = peaks.measure(threads) if not on_device else {"fma": None, "fma_error": "timed on a device",
                                                               "gemm_gflops": None}
    peak = peaks.peak_gflops(measured)
    time_s["peak"] = time.perf_counter() - clock
    flops = analysis.matmul_flops(imported.mod)
    rows, runners = [], {}
    workdir = tempfile.mkdtemp(prefix="canao-bench-")
    bar = tqdm(engines, desc="prepare engines", unit="engine", disable=not progress, leave=False)
    for engine in bar:
        bar.set_postfix_str(engine.name)
        row = {"name": engine.name, "description": engine.description}
        rows.append(row)
        rss0 = _rss_mb()
        start = time.perf_counter()
        engine_clock = start
        try:
            engine.prepare(imported, threads, workdir)
        except EngineUnavailable as exc:
            row.update(status="skipped", reason=str(exc))
            time_s[f"prepare {engine.name}"] = time.perf_counter() - engine_clock
            continue
        except CanaoError as exc:
            row.update(status="failed", reason=exc.one_line())
            time_s[f"prepare {engine.name}"] = time.perf_counter() - engine_clock
            continue
        row["init_s"] = time.perf_counter() - start
        check_start = time.perf_counter()
        runner = engine.runner(inputs)
        row["first_run_ms"] = time_once(runner)
        out = np.asarray(engine.output(inputs), dtype=np.float32).reshape(reference.shape)
        err = float(np.abs(out - reference).max())
        row["max_abs_err"] = err
        row["max_rel_err"] = relative_error(reference, out, floor=1e-12)
        row["rss_delta_mb"] = _rss_mb() - rss0
        row["check_s"] = time.perf_counter() - check_start
        for attr in ("kernels", "node_count"):
            value = getattr(getattr(engine, "compiled", engine), attr, None)
            if value is not None:
                row[attr] = value
        time_s[f"prepare {engine.name}"] = time.perf_counter() - engine_clock
        if not within_tolerance(err, reference, getattr(engine, "atol", None) or atol):
            row.update(status="failed", reason=f"output differs from PyTorch: max abs err {err:.3g} > tolerance")
            continue
        row["status"] = "ok"
        runners[engine.name] = engine.runner(inputs)
    bar.close()
    clock = time.perf_counter()
    rounds = tqdm(total=runs, desc="timing rounds", disable=not progress, leave=False)

    def advance(r: int) -> None:
        if r == 1 and rounds.n:  # the noise gate rejected the last try: the rounds start over
            rounds.reset(total=runs)
            rounds.set_description("timing rounds (noisy try, again)")
        rounds.update(1)

    timings = interleaved(runners, runs, warmup, max_seconds, progress=advance)
    rounds.close()
    time_s["timing"] = time.perf_counter() - clock
    # The roofline is a maximum: measured again after the rounds and the higher kept, since one
    # half-second sample on a shared host came out 196-233 GFLOP/s within one hour (Zen 4).
    peak_samples = [peak]
    if peak is not None:
        clock = time.perf_counter()
        peak_samples.append(peaks.peak_gflops(peaks.measure(threads, gemm=False)))
        peak = max(p for p in peak_samples if p is not None)
        time_s["peak"] += time.perf_counter() - clock
    for row in rows:
        if row["name"] in timings:
            row.update(timings[row["name"]].stats())
            row["gflops"] = flops / (row["p50_ms"] * 1e6) if flops else None
            row["pct_peak"] = 100 * row["gflops"] / peak if flops and peak else None
    base = next((r for r in rows if r["name"] == "canao" and r.get("p50_ms")), None)
    for row in rows:
        if base and row.get("p50_ms"):
            row["ratio_vs_canao"] = row["p50_ms"] / base["p50_ms"]
    for engine in engines:
        engine.close()
    return {
        "meta": {"model": imported.name, "seq_len": int(imported.inputs[0].shape[-1]),
                 "batch": int(imported.inputs[0].shape[0]), "threads": threads, "runs": runs,
                 "warmup": warmup, "machine": f"{platform.machine()} {_cpu_name()}, {os.cpu_count()} cores",
                 "peak_gflops": peak, "peak_samples_gflops": peak_samples, "peak_method": ((measured["fma"] or {}).get("method", "") + ", before and after the timing rounds, higher kept"
                                 if measured["fma"] else measured["fma_error"]),
                 "gemm_gflops": measured["gemm_gflops"], "model_gflop": flops / 1e9, "input": input_desc,
                 "time_s": time_s,
                 "tolerance_atol": atol, "time": time.strftime("%Y-%m-%dT%H:%M:%S")},
        "engines": rows,
    }


def _cpu_name() -> str:
    try:
        from ..codegen.targets import host_cpu_name

        return host_cpu_name()
    except Exception:  # noqa: BLE001 - informational only
        return platform.processor()
