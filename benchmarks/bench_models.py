"""Issue 13's model matrix: `canao benchmark` per (model, seq len), each one interleaved run of
canao, canao-unpacked (no weight prepacking), canao-stock-fusion (TVM's FuseOps, same schedules)
and LiteRT/XNNPACK; then one table of the ratios each run measured.

    python benchmarks/bench_models.py                                   # the full matrix (~20 min)
    python benchmarks/bench_models.py --only minilm-l6:32 bert-base:128 --runs 40
    python benchmarks/bench_models.py --summary-only                    # re-print from the saved runs

Every row comes from one `canao benchmark` process (engines timed in rounds, the FMA roofline
measured in the same run), written to OUT/<model>-seq<L>/benchmark.json; a run already there is
reused (delete it to re-measure), so a killed matrix resumes. Run it alone on the machine (the
benchmark's noise gate re-times noisy rounds, it cannot make a shared machine quiet). Ratios > 1
mean canao is faster.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

from canao.atomic import write_text

HERE = Path(__file__).resolve().parent
MATRIX = ["minilm-l6:128", "minilm-l6:32", "minilm-l6:512", "bert-base:128", "distilbert:128", "mobilebert:128"]
ENGINES = "canao,canao-unpacked,canao-stock-fusion,litert-xnnpack"


def run_one(model: str, seq: int, out: Path, runs: int) -> dict:
    folder = out / f"{model}-seq{seq}"
    result = folder / "benchmark.json"
    if not result.exists():
        cmd = ["canao", "benchmark", model, "--seq-len", str(seq), "--engines", ENGINES, "--runs", str(runs),
               "--out", str(folder)]
        print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
        proc = subprocess.run(cmd)
        if proc.returncode != 0 or not result.exists():
            return {"model": model, "seq": seq, "error": f"canao benchmark exited {proc.returncode}"}
    data = json.loads(result.read_text())
    rows = {e["name"]: e for e in data["engines"]}
    return {"model": model, "seq": seq, "rows": rows, "meta": data.get("meta", {})}


def _ratio(rows, slow: str, fast: str, key: str):
    a, b = rows.get(slow, {}).get(key), rows.get(fast, {}).get(key)
    return a / b if a and b else None


def _roofline(r) -> str:
    peak = r["meta"].get("peak_gflops")
    return f"{peak:.0f}" if peak else "-"


def _pct(r, ms) -> str:
    """Matmul work over ``ms`` as a share of the FMA roofline measured in the same run."""
    peak, gflop = r["meta"].get("peak_gflops"), r["meta"].get("model_gflop")
    return f"{100 * gflop / (ms / 1e3) / peak:.1f}%" if peak and gflop and ms else "-"


def summary(results) -> str:
    lines = ["| model | seq | canao p50 / min ms | XNNPACK p50 / min ms | canao vs XNNPACK (p50, min) | "
             "LP-Fusion vs stock fusion (p50, min) | prepacking (p50, min) | roofline GFLOP/s (same run) | "
             "canao % roofline (p50, min) |",
             "|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda x: f"{x:.2f}x" if x else "-"  # noqa: E731
    for r in results:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['seq']} | {r['error']} | | | | | | |")
            continue
        rows = r["rows"]
        c, x = rows.get("canao", {}), rows.get("litert-xnnpack", {})
        pair = lambda slow: f"{fmt(_ratio(rows, slow, 'canao', 'p50_ms'))}, {fmt(_ratio(rows, slow, 'canao', 'min_ms'))}"  # noqa: E731
        lines.append(f"| {r['model']} | {r['seq']} | {c.get('p50_ms', 0):.2f} / {c.get('min_ms', 0):.2f} | "
                     f"{x.get('p50_ms') or 0:.2f} / {x.get('min_ms') or 0:.2f} | {pair('litert-xnnpack')} | "
                     f"{pair('canao-stock-fusion')} | {pair('canao-unpacked')} | {_roofline(r)} | "
                     f"{_pct(r, c.get('p50_ms'))}, {_pct(r, c.get('min_ms'))} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", metavar="MODEL:SEQ", help=f"subset of the matrix (default: {' '.join(MATRIX)})")
    p.add_argument("--runs", type=int, default=80, help="timed rounds per run (default 80)")
    p.add_argument("--out", default=str(HERE / "results" / "models"), help="folder for the runs and summary.md")
    p.add_argument("--summary-only", action="store_true", help="only re-print the table from runs already saved")
    args = p.parse_args(argv)
    out = Path(args.out)
    results = []
    for item in args.only or MATRIX:
        model, _, seq = item.partition(":")
        if not seq.isdigit():
            p.error(f"'{item}' is not MODEL:SEQ (e.g. minilm-l6:128)")
        if args.summary_only and not (out / f"{model}-seq{seq}" / "benchmark.json").exists():
            continue
        results.append(run_one(model, int(seq), out, args.runs))
    table = summary(results)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "summary.md", table + "\n")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
