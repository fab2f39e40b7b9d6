"""Benchmark reports: JSON for scripts, Markdown for people, a PNG bar chart for a glance."""
from pathlib import Path
from typing import List

from ..atomic import write_json, write_text

COLUMNS = [("engine", "name"), ("status", "status"), ("init s", "init_s"), ("first ms", "first_run_ms"),
           ("min ms", "min_ms"), ("p50 ms", "p50_ms"), ("p90 ms", "p90_ms"), ("avg ms", "avg_ms"),
           ("std ms", "std_ms"), ("runs", "runs"), ("x canao (p50)", "ratio_vs_canao"),
           ("GFLOP/s", "gflops"), ("% peak", "pct_peak"), ("max abs err", "max_abs_err"),
           ("RSS +MB", "rss_delta_mb")]


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


def markdown(result: dict) -> str:
    m = result["meta"]
    lines = [f"# {m['model']}: seq {m['seq_len']}, batch {m['batch']}, {m['threads']} threads",
             "",
             f"{m['machine']}; peak (1024^3 GEMM) {m['peak_gflops']:.0f} GFLOP/s; model matmul work "
             f"{m['model_gflop']:.2f} GFLOP; input: {m['input']}.",
             "Engines timed interleaved in rounds; `x canao` = engine p50 / canao p50 (> 1: canao is faster).",
             "",
             "| " + " | ".join(h for h, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for e in result["engines"]:
        lines.append("| " + " | ".join(_fmt(e.get(k)) for _, k in COLUMNS) + " |")
    notes = [f"- {e['name']}: {e['reason']}" for e in result["engines"] if e.get("reason")]
    if notes:
        lines += ["", "Notes:"] + notes
    return "\n".join(lines) + "\n"


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
