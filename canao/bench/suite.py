"""`canao benchmark`: every engine on the same model, weights and real input, checked, then timed."""
import os
import platform
import tempfile
import time
from typing import Dict, List

import numpy as np

from .. import analysis
from ..errors import CanaoError
from .engines import Engine, EngineUnavailable
from .peak import measure_gemm_gflops
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


def within_tolerance(err: float, ref: np.ndarray, atol: float) -> bool:
    return err <= atol * max(1.0, float(np.abs(ref).max()))


def run(imported, engines: List[Engine], threads: int, runs: int, warmup: int, max_seconds: float,
        atol: float = 1e-3, progress: bool = True) -> dict:
    from tqdm import tqdm

    inputs, input_desc = real_inputs(imported, imported.inputs[0].shape[0])
    reference = imported.reference(inputs)
    peak = measure_gemm_gflops(threads)
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
        try:
            engine.prepare(imported, threads, workdir)
        except EngineUnavailable as exc:
            row.update(status="skipped", reason=str(exc))
            continue
        except CanaoError as exc:
            row.update(status="failed", reason=exc.one_line())
            continue
        row["init_s"] = time.perf_counter() - start
        runner = engine.runner(inputs)
        row["first_run_ms"] = time_once(runner)
        out = np.asarray(engine.output(inputs), dtype=np.float32).reshape(reference.shape)
        err = float(np.abs(out - reference).max())
        row["max_abs_err"] = err
        row["max_rel_err"] = err / max(1e-12, float(np.abs(reference).max()))
        row["rss_delta_mb"] = _rss_mb() - rss0
        for attr in ("kernels", "node_count"):
            value = getattr(getattr(engine, "compiled", engine), attr, None)
            if value is not None:
                row[attr] = value
        if not within_tolerance(err, reference, getattr(engine, "atol", None) or atol):
            row.update(status="failed", reason=f"output differs from PyTorch: max abs err {err:.3g} > tolerance")
            continue
        row["status"] = "ok"
        runners[engine.name] = engine.runner(inputs)
    rounds = tqdm(total=runs, desc="timing rounds", disable=not progress, leave=False)
    timings = interleaved(runners, runs, warmup, max_seconds, progress=lambda r: rounds.update(1))
    rounds.close()
    for row in rows:
        if row["name"] in timings:
            row.update(timings[row["name"]].stats())
            row["gflops"] = flops / (row["p50_ms"] * 1e6) if flops else None
            row["pct_peak"] = 100 * row["gflops"] / peak if flops else None
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
                 "peak_gflops": peak, "model_gflop": flops / 1e9, "input": input_desc,
                 "tolerance_atol": atol, "time": time.strftime("%Y-%m-%dT%H:%M:%S")},
        "engines": rows,
    }


def _cpu_name() -> str:
    try:
        from ..codegen.targets import host_cpu_name

        return host_cpu_name()
    except Exception:  # noqa: BLE001 - informational only
        return platform.processor()
