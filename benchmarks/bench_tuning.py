"""Tuned CANAO vs stock TVM tuned with the same trial budget vs XNNPACK / ONNX Runtime / PyTorch:
MiniLM-L6 (seq 128, batch 1) on this CPU, engines interleaved in rounds in one process.

1. CANAO: ``canao.codegen.tuning.tune`` on the LP-Fused module into ``WORK/canao`` (resumable:
   rerun the script after an interrupt and it continues), then a build with that database
   (tuned kernels where they beat the default schedules, default schedules elsewhere).
2. Stock: ``relax.pipeline.static_shape_tuning_pipeline(total_trials=N)`` into ``WORK/stock``
   (MetaSchedule's own flow, with weight prepacking; not resumable, so a finished run is marked
   with ``WORK/stock/canao_done.json`` and later runs only apply its database).
3. Timing: ``canao.bench.suite.run`` (interleaved rounds, min / median, numbers checked against
   PyTorch on real text), then the issue's goals as ratios from the same run, and the tuning
   time each side took.

    python benchmarks/bench_tuning.py --trials 448 --work-dir benchmarks/results/tuning \
        --out benchmarks/results/tuning.json

``--smoke`` runs a tiny budget (a few trials, few rounds) to check the plumbing, not the numbers.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

GOALS = [  # (engine compared, minimum speed-up of canao-tuned over it, what the issue asks)
    ("litert-xnnpack", 1.0, "at least as fast as XNNPACK fp32"),
    ("onnxruntime", 1.5, ">= 1.5x faster than ONNX Runtime"),
    ("tvm-stock-tuned", 1.5, ">= 1.5x faster than stock TVM tuned with the same budget"),
]
PEAK_GOAL = 85.0  # % of the machine's practical peak FLOP/s


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="minilm-l6")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--trials", type=int, default=448, help="trial budget for each side (default 448)")
    p.add_argument("--time-budget", type=float, default=None, help="seconds of CANAO tuning per run (resumable)")
    p.add_argument("--work-dir", default="benchmarks/results/tuning", help="tuning databases (canao/, stock/)")
    p.add_argument("--skip-stock-tuning", action="store_true", help="no stock tuning (its engine is left out)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=30, help="interleaved timing rounds")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--max-seconds", type=float, default=20.0, help="per-engine timing cap")
    p.add_argument("--smoke", action="store_true", help="tiny budget: plumbing check only")
    p.add_argument("--out", help="write the results as JSON (atomically)")
    return p.parse_args(argv)


def tune_canao(imported, target, work_dir, trials, time_budget):
    from canao.codegen.tuning import tune

    report = tune(imported, target, work_dir, trials, time_budget)
    print(report.summary(), file=sys.stderr)
    return report


def stock_task_count(imported, target) -> int:
    from canao.codegen.tuning import extract_tasks, fused_module

    return len(extract_tasks(fused_module(imported, target, "stock"), target))


def tune_stock(imported, target, work_dir, trials):
    """MetaSchedule's stock flow over TVM's fused module; seconds it took (0 when reused).

    Set up as a TVM user would for a fair comparison: the budget spread over every task
    (``max_trials_per_task`` = budget / tasks; left at its default, one task takes the whole
    budget and the rest stay unscheduled, which made stock tuned ~1 s) and CPU weight prepacking.
    """
    from tvm import relax

    from canao.atomic import write_json

    done = Path(work_dir) / "canao_done.json"
    if done.exists():
        return json.loads(done.read_text())
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    per_task = max(1, trials // max(1, stock_task_count(imported, target)))
    start = time.perf_counter()
    with target.tvm_target():
        relax.pipeline.static_shape_tuning_pipeline(total_trials=trials, target=target.tvm_target(),
                                                    work_dir=str(work_dir), cpu_weight_prepack=True,
                                                    max_trials_per_task=per_task)(imported.mod)
    info = {"trials": trials, "max_trials_per_task": per_task, "seconds": time.perf_counter() - start}
    write_json(done, info)
    return info


def stock_tuned_engine(work_dir):
    from canao.bench.engines import Engine

    class StockTuned(Engine):
        """Stock Relax pipeline with the MetaSchedule database applied (weights prepacked once)."""

        def prepare(self, imported, threads, workdir):
            import tvm
            from tvm import relax

            from canao.codegen import resolve_target
            from canao.codegen.build import CompiledModel, _run_transform, _split_transform
            from canao.runtime import LocalModel

            spec = resolve_target("x86", threads=threads)
            target = spec.tvm_target()
            with target:
                mod = relax.pipeline.static_shape_tuning_pipeline(total_trials=0, target=target,
                                                                  work_dir=str(work_dir),
                                                                  cpu_weight_prepack=True)(imported.mod)
            main, transform = _split_transform(mod)
            params = _run_transform(transform, list(imported.params)) if transform is not None else list(imported.params)
            exe = tvm.compile(main, target=target)
            self.compiled = CompiledModel(exe, params, spec, "stock-tuned")
            self.model = LocalModel.from_compiled(self.compiled, imported.inputs)

        def runner(self, inputs):
            return self.model.runner(inputs)

        def output(self, inputs):
            return self.model.run(inputs)

    return StockTuned("tvm-stock-tuned", f"TVM Relax static_shape_tuning_pipeline, database {work_dir}")


def goals(rows):
    by_name = {r["name"]: r for r in rows if r.get("p50_ms")}
    tuned = by_name.get("canao-tuned")
    out = []
    if tuned is None:
        return out
    for name, need, text in GOALS:
        other = by_name.get(name)
        if other is None:
            out.append({"goal": text, "status": "not measured"})
            continue
        ratio_med = other["p50_ms"] / tuned["p50_ms"]
        ratio_min = other["min_ms"] / tuned["min_ms"]
        out.append({"goal": text, "need": need, "speedup_median": ratio_med, "speedup_min": ratio_min,
                    "status": "met" if ratio_med >= need else "NOT met"})
    if tuned.get("pct_peak") is not None:
        out.append({"goal": f">= {PEAK_GOAL:.0f}% of the practical peak FLOP/s", "pct_peak": tuned["pct_peak"],
                    "status": "met" if tuned["pct_peak"] >= PEAK_GOAL else "NOT met"})
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    if args.smoke:
        args.trials, args.runs, args.warmup = min(args.trials, 8), min(args.runs, 3), 1
    from canao.atomic import write_json
    from canao.bench.engines import LiteRTEngine, OrtEngine, TorchEngine, TVMEngine
    from canao.bench.suite import run
    from canao.codegen import resolve_target
    from canao.frontends import load_model

    imported = load_model(args.model, seq_len=args.seq_len)
    target = resolve_target("x86", threads=args.threads)
    work = Path(args.work_dir)
    canao_report = tune_canao(imported, target, work / "canao", args.trials, args.time_budget)
    stock = None if args.skip_stock_tuning else tune_stock(imported, target, work / "stock", args.trials)

    engines = [TVMEngine("canao-tuned", f"CANAO + tuning database ({canao_report.trials_total} trials)", "canao",
                         options={"tuning_db": str(work / "canao")}),
               TVMEngine("canao", "CANAO untuned (LP-Fusion + default schedules)", "canao")]
    if stock is not None:
        engines.append(stock_tuned_engine(work / "stock"))
    engines += [OrtEngine("onnxruntime", "ONNX Runtime CPU, default graph optimizations"),
                LiteRTEngine("litert-xnnpack", "LiteRT/TFLite fp32 with XNNPACK"),
                TorchEngine("pytorch", "PyTorch eager (inference_mode)")]
    result = run(imported, engines, args.threads, args.runs, args.warmup, args.max_seconds)
    result["tuning"] = {"canao": {"trials": canao_report.trials_total, "seconds": canao_report.seconds_total,
                                  "complete": canao_report.complete,
                                  "kernels_using_tuned": sum(t.uses_tuned for t in canao_report.tasks),
                                  "kernels": len(canao_report.tasks)},
                        "stock": stock}
    result["goals"] = goals(result["engines"])
    result["meta"]["smoke"] = bool(args.smoke)

    print(f"\n{'engine':18s} {'min ms':>8s} {'median ms':>9s} {'GFLOP/s':>8s} {'% peak':>7s}  status")
    for row in result["engines"]:
        def fmt(key, spec):
            return format(row[key], spec) if row.get(key) is not None else "-"
        print(f"{row['name']:18s} {fmt('min_ms', '8.2f'):>8s} {fmt('p50_ms', '9.2f'):>9s} "
              f"{fmt('gflops', '8.1f'):>8s} {fmt('pct_peak', '7.1f'):>7s}  {row.get('status')} {row.get('reason', '')}")
    print(f"\ntuning: canao {result['tuning']['canao']['trials']} trials in {result['tuning']['canao']['seconds']:.0f} s"
          + (f"; stock {stock['trials']} trials in {stock['seconds']:.0f} s" if stock else ""))
    for goal in result["goals"]:
        detail = (f"x{goal['speedup_median']:.2f} median, x{goal['speedup_min']:.2f} min" if "speedup_median" in goal
                  else f"{goal['pct_peak']:.1f}% of peak" if "pct_peak" in goal else "")
        print(f"  {goal['status']:>12s}: {goal['goal']} ({detail})")
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
