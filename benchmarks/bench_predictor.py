"""Latency predictors on held-out architectures: fusion-aware vs HAT's MLP, on this CPU.

    python benchmarks/bench_predictor.py --space bert_minilm --target x86 -n 60 --seq-len 128

Measures (resumably) ``-n`` SubTransformers into benchmarks/results/latency_<space>_<target>.jsonl,
trains both predictors on a seeded 80% and writes their held-out metrics to
benchmarks/results/predictor_<target>.json (rmse_ms, mape, within_5pct, within_10pct, n_heldout)."""
import argparse
import json
import time
from pathlib import Path

from canao.atomic import write_json
from canao.codegen import resolve_target
from canao.nas.latency_dataset import build_dataset
from canao.nas.predictor import evaluate
from canao.nas.spaces import load_space

RESULTS = Path(__file__).parent / "results"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="bert_minilm")
    ap.add_argument("--target", default="x86")
    ap.add_argument("-n", type=int, default=60)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--heldout", type=float, default=0.2)
    args = ap.parse_args()
    space, target = load_space(args.space), resolve_target(args.target)
    data = RESULTS / f"latency_{args.space}_{args.target}_seq{args.seq_len}.jsonl"
    t0 = time.perf_counter()
    rows = build_dataset(space, target, args.n, data, seq_len=args.seq_len)
    dataset_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = evaluate(rows, args.heldout, seed=0)
    report["meta"] = {"space": args.space, "target": args.target, "seq_len": args.seq_len, "rows": len(rows),
                      "dataset_seconds_this_run": round(dataset_s, 1),
                      "predictor_seconds": round(time.perf_counter() - t0, 1), "dataset": data.name}
    write_json(RESULTS / f"predictor_{args.target}.json", report)
    print(json.dumps(report, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
