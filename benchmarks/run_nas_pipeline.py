"""The whole compiler-aware NAS pipeline on this machine, stage by stage, with each stage's wall time.

    python benchmarks/run_nas_pipeline.py                      # defaults sized for ~45 min on 2 busy cores
    python benchmarks/run_nas_pipeline.py --n-archs 6 --kd-steps 4 --population 8 --iterations 2 \\
        --finetune-limit 256 --timing-runs 10 --work /tmp/nas-short   # a short smoke run

Stages (each one's output on disk is its checkpoint; a rerun skips finished stages and resumes the
interrupted one): teacher (MiniLM fine-tuned on RT) -> baselines (TF-IDF + LR and frozen MiniLM
embeddings + LR on the same split, to put the teacher's accuracy in context) -> latency dataset
(compiled SubTransformers timed on this CPU) -> predictors (held-out report; the search uses the one
--search-predictor names) -> supernet KD from the teacher -> evolutionary search under teacher
latency / --speedup -> fine-tune the winner with KD -> compile teacher and student with this
toolkit, check them against PyTorch, time them side by side in interleaved rounds, and score both
compiled models on the RT test split.
Writes benchmarks/results/nas_pipeline.json and nas_pipeline.md."""
import argparse
import json
import os
import sys
import time
from pathlib import Path

from canao.atomic import write_json, write_text

RESULTS = Path(__file__).parent / "results"


class Stages:
    """``work/stages.json``: finished stages with their wall time and outputs (written atomically)."""

    def __init__(self, work: Path):
        self.path = work / "stages.json"
        self.done = json.loads(self.path.read_text()) if self.path.exists() else {}

    def run(self, name: str, fn):
        if name in self.done:
            print(f"[{name}] done before ({self.done[name]['seconds']:.0f} s), reused", flush=True)
            return self.done[name]["output"]
        print(f"[{name}] ...", flush=True)
        start = time.perf_counter()
        output = fn()
        self.done[name] = {"seconds": round(time.perf_counter() - start, 1), "output": output}
        write_json(self.path, self.done)
        print(f"[{name}] {self.done[name]['seconds']:.0f} s", flush=True)
        return output


def stage_teacher():
    from canao.nas.training.folder import read_meta
    from canao.nas.training.teacher import ensure_teacher

    folder = ensure_teacher()
    meta = read_meta(folder)
    return {"folder": str(folder), "metrics": meta["metrics"], "settings": meta["training"]["settings"]}


def stage_baselines():
    """Two cheap reference points for the teacher's accuracy (nas/training/baselines.py)."""
    from canao.nas.training.baselines import run_all

    return run_all()


def baselines_line(result) -> str:
    """'teacher X% test; TF-IDF+LR Y%; frozen MiniLM embeddings+LR Z%' (empty without a baselines stage)."""
    b = result.get("baselines")
    if not b:
        return ""
    return (f"Reference points (test accuracy): teacher {result['teacher_metrics']['test_accuracy']:.2%} test; "
            f"TF-IDF+LR {b['tfidf_logreg']['test_accuracy']:.2%}; "
            f"frozen MiniLM embeddings+LR {b['frozen_embedding_logreg']['test_accuracy']:.2%}.")


def stage_dataset(args, space, target, work):
    from canao.nas.latency_dataset import build_dataset
    from canao.nas.measurer import LocalMeasurer

    rows = build_dataset(space, target, args.n_archs, work / "latency.jsonl", seq_len=args.seq_len,
                         seed=args.seed, measurer=LocalMeasurer(repeat=args.latency_repeat, allow_busy=args.allow_busy))
    largest = space.to_json(space.largest())
    teacher = next(r for r in rows if space.to_json(r["genes"]) == largest and r["seq_len"] == args.seq_len)
    return {"file": str(work / "latency.jsonl"), "rows": len(rows), "teacher_ms": teacher["latency"]["mean_ms"]}


def stage_predictor(args, work):
    from canao.nas.latency_dataset import read_rows
    from canao.nas.predictor import PREDICTORS, evaluate, save

    rows = read_rows(work / "latency.jsonl")
    report = evaluate(rows, heldout=0.25, seed=args.seed) if len(rows) >= 8 else {"note": "fewer than 8 rows"}
    path = work / f"predictor-{args.search_predictor}.pkl"
    save(PREDICTORS[args.search_predictor]().fit(rows), path)
    return {"file": str(path), "kind": args.search_predictor, "heldout_report": report}


def stage_supernet(args, space, work):
    from canao.nas.training.distill import DistillSettings, train_supernet

    s = DistillSettings(steps=args.kd_steps, batch=args.kd_batch, seq_len=args.acc_seq_len, seed=args.seed,
                        checkpoint_every=max(1, min(25, args.kd_steps // 4)))
    path = train_supernet(space, work / "supernet.pt", s)
    return {"file": str(path), "settings": s.__dict__}


def stage_search(args, work, limit_ms, supernet, predictor):
    from canao.nas.search_cli import register_search

    parser = argparse.ArgumentParser()
    register_search(parser.add_subparsers())
    argv = ["search", "--space", args.space, "--target", "x86", "--latency-ms", f"{limit_ms:.4f}",
            "--predictor", predictor, "--out", str(work / "search"), "--seq-len", str(args.seq_len),
            "--dev-seq-len", str(args.acc_seq_len), "--supernet", supernet,
            "--population", str(args.population), "--parents", str(max(2, args.population // 5)),
            "--mutations", str(args.population * 2 // 5), "--crossovers",
            str(args.population - max(2, args.population // 5) - args.population * 2 // 5),
            "--iterations", str(args.iterations), "--seed", str(args.seed)]
    if args.dev_limit:
        argv += ["--dev-limit", str(args.dev_limit)]
    if args.allow_busy:
        argv += ["--allow-busy"]
    ns = parser.parse_args(argv)
    ns.func(ns)
    result = json.loads((work / "search" / "result.json").read_text())
    return {"folder": str(work / "search"), "latency_limit_ms": limit_ms, "best_genes": result["evolution"]["best"],
            "predicted_ms": result["evolution"]["latency_ms"], "dev_accuracy_inherited": result["evolution"]["fitness"],
            "winner_measured_ms": result["winner_measured_ms"], "remeasured": result.get("remeasured"),
            "random_search": {k: result["random"][k] for k in ("fitness", "latency_ms")}}


def stage_finetune(args, space, work, genes, supernet):
    from canao.nas.training.finetune import finetune_settings, finetune_subtransformer

    s = finetune_settings(epochs=args.finetune_epochs, lr=args.finetune_lr, seq_len=args.acc_seq_len,
                          limit=args.finetune_limit, kd_weight=args.finetune_kd_weight,
                          seed=args.seed)
    metrics = finetune_subtransformer(space, genes, work / "student", supernet, s)
    return {"folder": str(work / "student"), "metrics": metrics, "genes": genes}


def stage_compare(args, teacher_folder, student_folder):
    """Compile both with this toolkit, check against PyTorch, time interleaved, score on the test split
    (``canao.nas.compare``, its canao fp32 rows)."""
    from canao.nas.compare import compare

    out = compare(teacher_folder, student_folder, seq_len=args.seq_len, runs=args.timing_runs,
                  threads=os.cpu_count() or 1, rows=["teacher", "student"])
    out["speedup_median"] = out["speedups"]["student_vs_teacher_p50"]
    out["speedup_min"] = out["speedups"]["student_vs_teacher_min"]
    return out


def summary(result) -> str:
    st, c = result["stages"], result["stages"].get("compare", {}).get("output", {})
    lines = ["# Compiler-aware NAS pipeline", "", f"Command: `{result['command']}`", "",
             f"Machine: {result['machine']}. Budgets: " + ", ".join(f"{k}={v}" for k, v in result["budgets"].items()), "",
             "| stage | wall time (s) |", "|---|---|"]
    lines += [f"| {name} | {st[name]['seconds']:.0f} |" for name in st]
    lines += [f"| **total (this machine, stages summed)** | **{result['total_seconds']:.0f}** |", ""]
    if baselines_line(result):
        lines += [baselines_line(result), ""]
    if c:
        t, s = c["teacher"], c["student"]
        lines += ["| model | genes | test acc (PyTorch) | test acc (compiled) | median ms | min ms | kernels |",
                  "|---|---|---|---|---|---|---|"]
        for name, row, meta in (("teacher", t, result["teacher_metrics"]), ("student", s, result["student_metrics"])):
            lines.append(f"| {name} | {result['describe'][name]} | {meta['test_accuracy']:.4f} | "
                         f"{row['test_accuracy_compiled']:.4f} | {row['latency']['p50_ms']:.3f} | "
                         f"{row['latency']['min_ms']:.3f} | {row['kernels']} |")
        g, se = result["goals"], result["search"]
        lines += ["", f"Search: limit {result['latency_limit_ms']:.3f} ms on the {se['predictor']} predictor; winner "
                  f"predicted {se['predicted_ms']:.3f} ms, re-measured {se['winner_measured_ms'] or float('nan'):.3f} ms "
                  f"({'within' if se['within_limit_measured'] else 'OVER'} the limit); inherited dev accuracy "
                  f"{se['dev_accuracy_inherited']:.4f}."]
        for name, rep in result["predictor_heldout"].items():
            if isinstance(rep, dict) and "mape" in rep:
                lines.append(f"Predictor {name} on {rep['n_heldout']} held-out architectures: MAPE {rep['mape']:.1f}%, "
                             f"within 10%: {rep['within_10pct']:.2f}.")
        lines += ["", f"Speedup of the compiled student over the compiled teacher: {c['speedup_median']:.2f}x (median), "
                  f"{c['speedup_min']:.2f}x (min), interleaved rounds, seq_len {result['budgets']['seq_len']}, batch 1.",
                  f"Test accuracy change (PyTorch): {g['accuracy_drop_points']:+.2f} points (negative = student lower).", "",
                  f"- >= 3x faster: **{'met' if g['speedup_3x'] else 'NOT met'}**",
                  f"- <= 1 point lower test accuracy: **{'met' if g['accuracy_within_1pt'] else 'NOT met'}**",
                  f"- whole pipeline <= 2 h: **{'met' if g['under_2h'] else 'NOT met'}**", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="bert_minilm")
    ap.add_argument("--work", default=None, help="work folder (default: $CANAO_CACHE/nas/pipeline)")
    ap.add_argument("--seq-len", type=int, default=64, help="latency sequence length (RT sentences fit in 64)")
    ap.add_argument("--acc-seq-len", type=int, default=64, help="training / accuracy sequence length")
    ap.add_argument("--n-archs", type=int, default=16, help="latency dataset size")
    ap.add_argument("--latency-repeat", type=int, default=20)
    ap.add_argument("--search-predictor", choices=["mlp", "fusion"], default="mlp",
                    help="predictor the search calls (fusion compiles every candidate: minutes per iteration)")
    ap.add_argument("--kd-steps", type=int, default=80)
    ap.add_argument("--kd-batch", type=int, default=32)
    ap.add_argument("--latency-ms", type=float, default=None, help="latency limit (default: teacher / --speedup)")
    ap.add_argument("--speedup", type=float, default=3.0)
    ap.add_argument("--population", type=int, default=20)
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--dev-limit", type=int, default=400, help="dev sentences for the search's fitness")
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--finetune-lr", type=float, default=8e-5)
    ap.add_argument("--finetune-kd-weight", type=float, default=0.5,
                    help="KD share of the fine-tune loss (0: labels only, 1: teacher logits only; default 0.5). "
                    "1.0 won on dev for the 2026-12-03 student (docs/results.md)")
    ap.add_argument("--finetune-limit", type=int, default=None, help="train sentences for the fine-tune (default all)")
    ap.add_argument("--timing-runs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--allow-busy", action="store_true",
                    help="measure latencies even when the load average says another heavy job is running")
    ap.add_argument("--results", default=str(RESULTS), help="where nas_pipeline.json / .md go")
    args = ap.parse_args(argv)

    import platform

    from canao.codegen import resolve_target
    from canao.nas.spaces import load_space
    from canao.nas.training.checkpoint import cache_root

    work = Path(args.work or cache_root() / "nas" / "pipeline")
    work.mkdir(parents=True, exist_ok=True)
    space, target = load_space(args.space), resolve_target("x86")
    stages = Stages(work)
    teacher = stages.run("teacher", stage_teacher)
    baselines = stages.run("baselines", stage_baselines)
    dataset = stages.run("latency_dataset", lambda: stage_dataset(args, space, target, work))
    predictor = stages.run("predictor", lambda: stage_predictor(args, work))
    supernet = stages.run("supernet_kd", lambda: stage_supernet(args, space, work))
    limit = args.latency_ms or dataset["teacher_ms"] / args.speedup
    search = stages.run("search", lambda: stage_search(args, work, limit, supernet["file"], predictor["file"]))
    student = stages.run("finetune", lambda: stage_finetune(args, space, work, search["best_genes"], supernet["file"]))
    compare = stages.run("compare", lambda: stage_compare(args, teacher["folder"], student["folder"]))

    total = sum(v["seconds"] for v in stages.done.values())
    if "teacher" in stages.done and stages.done["teacher"]["seconds"] < 60:  # trained by an earlier run: count it
        total += teacher["metrics"].get("train_seconds", 0)
    drop = (student["metrics"]["test_accuracy"] - teacher["metrics"]["test_accuracy"]) * 100
    result = {
        "command": "python benchmarks/run_nas_pipeline.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores (shared)",
        "budgets": {k: v for k, v in vars(args).items() if k not in ("results", "work")},
        "work": str(work), "stages": stages.done, "total_seconds": total,
        "teacher_metrics": teacher["metrics"], "student_metrics": student["metrics"], "baselines": baselines,
        "describe": {"teacher": space.describe(space.largest()), "student": space.describe(student["genes"])},
        "latency_limit_ms": limit,
        "search": {"predictor": args.search_predictor, "predicted_ms": search["predicted_ms"],
                   "winner_measured_ms": search["winner_measured_ms"],
                   "within_limit_measured": (search["winner_measured_ms"] or float("inf")) <= limit,
                   "dev_accuracy_inherited": search["dev_accuracy_inherited"]},
        "predictor_heldout": predictor["heldout_report"],
        "goals": {"speedup_3x": compare["speedup_median"] >= 3.0, "accuracy_drop_points": drop,
                  "accuracy_within_1pt": drop >= -1.0, "under_2h": total <= 7200},
    }
    results = Path(args.results)
    write_json(results / "nas_pipeline.json", result)
    write_text(results / "nas_pipeline.md", summary(result))
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
