"""Benchmark reports: JSON for scripts, Markdown for people, a PNG bar chart for a glance."""
from pathlib import Path
from typing import List, Optional

from ..atomic import write_json, write_text

COLUMNS = [("engine", "name"), ("status", "status"), ("init s", "init_s"), ("first ms", "first_run_ms"),
           ("min ms", "min_ms"), ("p50 ms", "p50_ms"), ("p90 ms", "p90_ms"), ("avg ms", "avg_ms"),
           ("std ms", "std_ms"), ("runs", "runs"), ("x canao (p50)", "ratio_vs_canao"),
           ("GFLOP/s", "gflops"), ("% peak", "pct_peak"), ("max abs err", "max_abs_err"),
           ("RSS +MB", "rss_delta_mb")]

# On a terminal narrower than the full table: columns in the order they are kept (the rest stay in
# benchmark.md / benchmark.json).
TERMINAL_PRIORITY = ["name", "p50_ms", "ratio_vs_canao", "min_ms", "pct_peak", "status", "init_s", "runs",
                     "p90_ms", "max_abs_err", "first_run_ms", "gflops", "avg_ms", "std_ms", "rss_delta_mb"]


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) < 1e-2:
            return f"{value:.1e}"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def _table(result: dict, columns) -> List[str]:
    lines = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for e in result["engines"]:
        lines.append("| " + " | ".join(_fmt(e.get(k)) for _, k in columns) + " |")
    return lines


def fit_columns(result: dict, width: int):
    """The most important columns whose table fits ``width`` characters (at least engine and p50)."""
    by_key = {k: (h, k) for h, k in COLUMNS}
    chosen = []
    for key in TERMINAL_PRIORITY:
        trial = [c for c in COLUMNS if c[1] in {k for _, k in chosen} | {key}]
        if len(chosen) >= 2 and max(len(line) for line in _table(result, trial)) > width:
            break
        chosen = trial
    return chosen if chosen else [by_key["name"], by_key["p50_ms"]]


def peak_line(m: dict) -> str:
    fma = m.get("peak_gflops")
    gemm = m.get("gemm_gflops")
    samples = [f"{x:.0f}" for x in m.get("peak_samples_gflops") or [] if x]
    measured = f" (before / after the rounds: {' / '.join(samples)})" if len(samples) > 1 else ""
    parts = [f"roofline (FMA peak, same run) {fma:.0f} GFLOP/s{measured}" if fma else
             f"FMA roofline not measured ({m.get('peak_method') or 'unavailable'}): no % peak"]
    if gemm:
        parts.append(f"1024^3 GEMM (torch.mm, for reference) {gemm:.0f} GFLOP/s")
    return "; ".join(parts)


def markdown(result: dict, width: Optional[int] = None) -> str:
    """The report. ``width`` None: every column, lines never wrapped (files, pipes, CI logs); a number
    (a terminal's width): the most important columns that fit, the rest named as in the files."""
    m = result["meta"]
    columns = COLUMNS if width is None else fit_columns(result, width)
    lines = [f"# {m['model']}: seq {m['seq_len']}, batch {m['batch']}, {m['threads']} threads",
             "",
             f"{m['machine']}; {peak_line(m)}; model matmul work {m['model_gflop']:.2f} GFLOP; "
             f"input: {m['input']}.",
             "Engines timed interleaved in rounds; `x canao` = engine p50 / canao p50 (> 1: canao is faster); "
             "`% peak` = matmul GFLOP/s / FMA roofline.",
             ""]
    lines += _table(result, columns)
    if len(columns) < len(COLUMNS):
        lines.append(f"({len(COLUMNS) - len(columns)} more columns in benchmark.md / benchmark.json: "
                     + ", ".join(h for h, k in COLUMNS if (h, k) not in columns) + ")")
    notes = [f"- {e['name']}: {e['reason']}" for e in result["engines"] if e.get("reason")]
    if notes:
        lines += ["", "Notes:"] + notes
    if m.get("time_s"):
        lines += ["", time_line(m["time_s"])]
    return "\n".join(lines) + "\n"


def time_line(time_s: dict) -> str:
    """Where the run's time went: `time: 95 s total = import 4.1 + ... + timing 30`."""
    parts = [(k.replace("prepare ", ""), v) for k, v in time_s.items() if k != "total"]
    total = time_s.get("total", sum(v for _, v in parts))
    return f"time: {total:.0f} s total = " + " + ".join(f"{k} {v:.1f}" for k, v in parts) + " (seconds; " \
        "an engine's share is its preparation: build / export / conversion, first run and output check)"


def bar_chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [e for e in result["engines"] if e.get("p50_ms")]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(rows) + 1.5))
    names = [e["name"] for e in rows]
    ax.barh(names, [e["p50_ms"] for e in rows], color=["#d62728" if n.startswith("canao") else "#7f7f7f" for n in names],
            label="p50")
    ax.scatter([e["min_ms"] for e in rows], names, color="black", zorder=3, label="min", s=12)
    ax.set_xscale("log")
    ax.invert_yaxis()
    m = result["meta"]
    ax.set_xlabel("latency per inference, ms (log scale)")
    ax.set_title(f"{m['model']} seq {m['seq_len']} batch {m['batch']}, {m['threads']} threads")
    for e in rows:
        ax.annotate(f" {e['p50_ms']:.1f}", (e["p50_ms"], e["name"]), va="center", fontsize=8)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def write_all(result: dict, out_dir, json_path=None) -> List[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "benchmark.json", out_dir / "benchmark.md", out_dir / "benchmark.png"]
    write_json(written[0], result)
    write_text(written[1], markdown(result))
    bar_chart(result, written[2])
    if json_path:
        write_json(json_path, result)
        written.append(Path(json_path))
    return written
