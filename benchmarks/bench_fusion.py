"""LP-Fusion's numbers (issue 4), measured in one run.

For each BERT-family model: kernels launched per inference (stock TVM FuseOps+FuseTIR vs LP-Fusion),
ONNX Runtime's node count after its BERT optimizer, bytes of intermediates materialized, and the
latency of LP-Fusion vs the same build without LP-Fusion (stock FuseOps), both with the same tuning
budget (zero trials: CANAO's default schedules) and stock TVM untuned, interleaved in rounds.

    python benchmarks/bench_fusion.py --models minilm-l6,bert-base,distilbert,mobilebert --seq-len 128
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np


def structure(name, seq_len):
    from canao import analysis
    from canao.bench.engines import OrtEngine
    from canao.codegen import resolve_target
    from canao.codegen.build import lower, prepare
    from canao.frontends import load_model

    model = load_model(name, seq_len=seq_len)
    target = resolve_target("x86")
    row = {"model": name, "seq_len": seq_len}
    for pipeline, options in (("stock", {}), ("canao", {"yellow": "default"})):
        mod, _, _ = prepare(model, target, pipeline, options)
        fused, _ = lower(mod, target, pipeline, stop_after="lp-fuse" if pipeline == "canao" else "fuse", options=options)
        _, stats = lower(mod, target, pipeline, options=options)
        row[f"{pipeline}_kernels"] = stats[-1].kernels
        row[f"{pipeline}_intermediate_mb"] = analysis.intermediate_bytes(fused) / 2 ** 20
    ort = OrtEngine("ort-bert", "", bert_optimizer=True)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            ort.prepare(model, 1, tmp)
            row["ort_bert_nodes"] = ort.node_count
        except Exception as exc:  # noqa: BLE001 - reported, not hidden
            row["ort_bert_nodes"] = f"failed: {str(exc).splitlines()[0][:80]}"
    row["kernel_ratio"] = row["canao_kernels"] / row["stock_kernels"]
    row["intermediate_ratio"] = row["canao_intermediate_mb"] / row["stock_intermediate_mb"]
    return model, row


def latency(model, threads, runs, max_seconds):
    from canao.bench import suite
    from canao.bench.engines import TorchEngine, TVMEngine

    engines = [TVMEngine("canao", "LP-Fusion + default schedules", "canao", options={"yellow": "measure"}),
               TVMEngine("canao-no-lpfusion", "stock FuseOps + default schedules", "canao", options={"fusion": False}),
               TVMEngine("tvm-stock", "TVM default pipeline, untuned", "stock"),
               TorchEngine("pytorch", "PyTorch eager")]
    return suite.run(model, engines, threads, runs, 2, max_seconds, progress=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="minilm-l6,bert-base,distilbert,mobilebert")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--max-seconds", type=float, default=20.0)
    p.add_argument("--latency-models", default="minilm-l6", help="models also timed (comma-separated)")
    p.add_argument("--out", default="benchmarks/results/fusion.json")
    args = p.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    from canao.atomic import write_json

    rows, timings = [], {}
    for name in args.models.split(","):
        start = time.time()
        model, row = structure(name, args.seq_len)
        rows.append(row)
        print(f"{name}: kernels stock {row['stock_kernels']} -> LP-Fusion {row['canao_kernels']} "
              f"({row['kernel_ratio']:.2f}x), intermediates {row['stock_intermediate_mb']:.1f} -> "
              f"{row['canao_intermediate_mb']:.1f} MB, ORT-BERT nodes {row['ort_bert_nodes']} [{time.time() - start:.0f} s]",
              flush=True)
        if name in args.latency_models.split(","):
            result = latency(model, args.threads, args.runs, args.max_seconds)
            timings[name] = result
            by = {e["name"]: e for e in result["engines"]}
            base = by["canao"]
            for e in result["engines"]:
                if e.get("p50_ms"):
                    print(f"   {e['name']:20s} min {e['min_ms']:8.2f}  p50 {e['p50_ms']:8.2f} ms  "
                          f"p50/canao {e['p50_ms'] / base['p50_ms']:.2f}x  err {e['max_abs_err']:.1e}")
                else:
                    print(f"   {e['name']:20s} {e['status']}: {e.get('reason', '')}")
    print("\n| model | stock kernels | LP-Fusion kernels | ratio | ORT-BERT nodes | intermediates stock MB | LP-Fusion MB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['stock_kernels']} | {r['canao_kernels']} | {r['kernel_ratio']:.2f} | "
              f"{r['ort_bert_nodes']} | {r['stock_intermediate_mb']:.1f} | {r['canao_intermediate_mb']:.1f} |")
    write_json(args.out, {"structure": rows, "latency": timings, "command": " ".join(sys.argv)})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
