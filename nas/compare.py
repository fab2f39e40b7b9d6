"""Teacher vs student as a user would ship them, timed side by side on this machine.

Rows (every one built from the SubTransformer folders, its output checked against PyTorch, timed in
the same interleaved rounds, scored on the RT test split):
- ``teacher`` and ``student``: this toolkit's fp32 build (LP-Fusion + default schedules);
- ``student-int8``: the student built with ``--quantize int8`` (CANAO's headline configuration);
- ``teacher-litert``: the teacher on LiteRT / XNNPACK fp32 (what a phone user would otherwise ship).
The speedups of CANAO's headline (searched + compiled + int8 vs the teacher on TFLite) and of the
compiled student over the compiled teacher are ratios within this one run.
"""
import time
from typing import Dict, List, Optional

import numpy as np

ROWS = ("teacher", "student", "student-int8", "teacher-litert")


def _engine(row: str):
    from canao.bench.engines import LiteRTEngine, TVMEngine

    if row == "teacher-litert":
        return LiteRTEngine(row, "teacher on LiteRT / XNNPACK fp32")
    options = {"quantize": "int8"} if row.endswith("int8") else None
    return TVMEngine(row, f"{row} compiled by canao", "canao", options=options)


def compare(teacher_folder: str, student_folder: str, seq_len: int = 64, runs: int = 60, threads: int = 2,
            rows: Optional[List[str]] = None, test_limit: Optional[int] = None, progress: bool = True) -> Dict:
    """{row: {folder, size_mb, max_abs_err_vs_pytorch, latency, test_accuracy_compiled, ...},
    "speedups": {...}}. A row whose engine is unavailable is recorded with the reason, never dropped
    silently."""
    import tempfile

    from canao.bench.engines import EngineUnavailable
    from canao.bench.timing import interleaved
    from canao.frontends import load_model
    from canao.nas.training.data import encoded_split
    from canao.nas.training.evaluate import accuracy

    data = encoded_split("test", seq_len, 8)
    inputs = {"input_ids": data.input_ids[:1], "attention_mask": data.attention_mask[:1]}
    out, engines = {}, {}
    imported = {"teacher": load_model(teacher_folder, seq_len=seq_len, batch=1),
                "student": load_model(student_folder, seq_len=seq_len, batch=1)}
    for row in rows or ROWS:
        model = imported["teacher" if row.startswith("teacher") else "student"]
        engine = _engine(row)
        start = time.perf_counter()
        try:
            engine.prepare(model, threads, tempfile.mkdtemp(prefix=f"canao-{row}-"))
        except EngineUnavailable as exc:
            out[row] = {"status": f"unavailable: {exc}"}
            continue
        ref = model.reference(inputs)
        out[row] = {"status": "ok", "folder": teacher_folder if row.startswith("teacher") else student_folder,
                    "prepare_seconds": round(time.perf_counter() - start, 1), "size_mb": round(engine.size_mb, 2),
                    "max_abs_err_vs_pytorch": float(np.abs(engine.output(inputs) - ref).max())}
        if getattr(engine, "compiled", None) is not None:
            out[row]["kernels"] = engine.compiled.kernels
        engines[row] = engine
    timings = interleaved({r: e.runner(inputs) for r, e in engines.items()}, runs=runs, warmup=5, max_seconds=180)
    for row, t in timings.items():
        out[row]["latency"] = t.stats()
    for row, engine in engines.items():
        out[row]["test_accuracy_compiled"] = accuracy(engine.output, "test", seq_len, batch=1, limit=test_limit,
                                                      progress=progress)
    out["speedups"] = speedups(out)
    return out


def speedups(out: Dict) -> Dict[str, float]:
    """Ratios of p50 and min latencies between the rows that were timed (> 1: the second is faster)."""
    pairs = {"student_vs_teacher": ("teacher", "student"),
             "student_int8_vs_teacher": ("teacher", "student-int8"),
             "student_int8_vs_teacher_litert": ("teacher-litert", "student-int8"),
             "teacher_vs_teacher_litert": ("teacher-litert", "teacher")}
    result = {}
    for name, (slow, fast) in pairs.items():
        a, b = out.get(slow, {}).get("latency"), out.get(fast, {}).get("latency")
        if a and b:
            result[f"{name}_p50"] = a["p50_ms"] / b["p50_ms"]
            result[f"{name}_min"] = a["min_ms"] / b["min_ms"]
    return result
