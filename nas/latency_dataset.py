"""A resumable latency dataset: one JSON line per measured SubTransformer.

Each row holds the genes, the compiled plan (one entry per kernel: structural signature, op kinds,
shapes, FLOPs, bytes, calls, measured ms) and the trimmed whole-model latency. Rows are appended
with one ``write`` + ``fsync`` each; a torn last line (kill -9 mid-write) is cut off on the next
open, and genes already in the file are skipped, so a rerun measures only what is missing. Kernels
are also kept in ``<out>.kernels.json`` keyed by signature: a model whose kernels are all known
already skips the per-kernel pass. Rows measured on a device over RPC (``RemoteMeasurer``) carry the
plan without kernel times and leave that cache, which holds this machine's times, alone."""
import json
import os
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from canao.atomic import write_json
from canao.errors import CanaoError

from .kernels import kernel_table
from .measurer import LocalMeasurer, Measurer, compile_subnet


def read_rows(path) -> List[dict]:
    """Complete rows of a dataset file (a torn final line is ignored)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def repair(path) -> None:
    """Cut a torn last line so the next append starts on a fresh line."""
    path = Path(path)
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())


def append_row(path, row: dict) -> None:
    line = (json.dumps(row, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def kernel_cache_path(out) -> Path:
    return Path(str(out) + ".kernels.json")


def load_kernel_cache(out) -> Dict[str, dict]:
    p = kernel_cache_path(out)
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return {}


def sample_genes(space, n: int, seed: int) -> List[dict]:
    """``n`` distinct genes (largest and smallest first: they bound the predictor's range)."""
    out, seen = [], set()
    candidates = [space.largest(), space.smallest()] + [space.sample(seed * 1_000_003 + i) for i in range(20 * n + 50)]
    for g in candidates:
        key = space.to_json(g)
        if key not in seen:
            seen.add(key)
            out.append(g)
        if len(out) == n:
            break
    return out


def build_dataset(space, target_spec, n: int, out, seq_len: int = 128, seed: int = 0,
                  measurer: Optional[Measurer] = None, progress: bool = True,
                  on_row: Optional[Callable[[int, dict], None]] = None) -> List[dict]:
    """Measure ``n`` SubTransformers into ``out`` (JSONL), skipping genes already there.

    A target that does not run here needs a device measurer (``RemoteMeasurer``); a measurer with
    ``close()`` (its RPC session) is closed when the dataset is done or fails."""
    if n < 1:
        raise CanaoError(f"-n {n} asks for no architectures", "give -n 1 or more")
    if not target_spec.runs_locally and (measurer is None or isinstance(measurer, LocalMeasurer)):
        raise CanaoError(f"target {target_spec.name} does not run on this machine",
                         "measure on the device over TVM RPC: --rpc HOST:PORT, or --tracker HOST:PORT --key KEY "
                         "(docs/nas.md); or measure --target x86 here")
    measurer = measurer or LocalMeasurer()
    try:
        return _measure_missing(space, target_spec, n, Path(out), seq_len, seed, measurer, progress, on_row)
    finally:
        if hasattr(measurer, "close"):
            measurer.close()


def _measure_missing(space, target_spec, n, out: Path, seq_len, seed, measurer, progress, on_row) -> List[dict]:
    """The dataset loop: compile, measure and append each architecture not yet in ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    repair(out)
    done = {space.to_json(r["genes"]) for r in read_rows(out) if r.get("seq_len") == seq_len}
    cache = load_kernel_cache(out)
    todo = [g for g in sample_genes(space, n, seed) if space.to_json(g) not in done]
    from tqdm import tqdm

    for i, genes in enumerate(tqdm(todo, desc="latency dataset", disable=not progress, unit="arch")):
        t0 = time.perf_counter()
        imported, compiled, inputs = compile_subnet(space, genes, target_spec, seq_len)
        build_s = time.perf_counter() - t0
        table = kernel_table(compiled)
        timed = getattr(measurer, "times_kernels", True)
        need_kernels = timed and any(k["signature"] not in cache for k in table.values())
        m = measurer.measure(compiled, imported, inputs, kernels=need_kernels)
        kernels = _kernel_rows(table, m, cache if timed else None, compiled)
        row = {"genes": genes, "seq_len": seq_len, "target": target_spec.name, "measurer": measurer.name,
               "latency": m.latency, "kernels": kernels, "count": space.count(genes),
               "build_seconds": round(build_s, 2), "kernel_pass": need_kernels}
        if timed:
            write_json(kernel_cache_path(out), cache)
        append_row(out, row)
        if on_row is not None:
            on_row(i, row)
    return read_rows(out)


def _kernel_rows(table: Dict[str, dict], m, cache: Optional[Dict[str, dict]], compiled) -> List[dict]:
    """The plan of one row: every kernel with its calls and its median measured time per call.

    ``cache`` None: the measurer times no kernels (RPC), so the cache is left alone (its times are
    this machine's, not the device's) and ``ms_per_call`` is None; calls are counted in the plan."""
    kernels = []
    for name, k in sorted(table.items()):
        calls = m.kernel_calls.get(name, k["calls"])
        if not calls:  # a PrimFunc left in the module that main never calls is not part of the plan
            continue
        per_call = None
        if cache is not None:
            entry = cache.setdefault(k["signature"], {**{f: k[f] for f in ("ops", "shapes", "flops", "bytes", "kind")},
                                                      "samples_ms": []})
            if name in m.kernel_ms and m.kernel_calls.get(name):
                entry["samples_ms"].append(m.kernel_ms[name] / m.kernel_calls[name])
            per_call = sorted(entry["samples_ms"])[len(entry["samples_ms"]) // 2] if entry["samples_ms"] else None
        kernels.append({**k, "calls": calls, "ms_per_call": per_call})
    return kernels
