"""int8 side by side: CANAO fp32 / int8 / w4 vs LiteRT fp32 + dynamic-range int8 vs ONNX Runtime dynamic int8.

Latency: MiniLM-L6 (real weights, encoder output), seq 128, batch 1, engines interleaved in rounds in
one process (p50 and min); each engine's output vs the fp32 PyTorch output (cosine, max abs error)
on a real sentence; model size as shipped (CANAO: the weights main() takes; LiteRT / ORT: the file).
Accuracy: the fine-tuned teacher (canao.nas.training.teacher) compiled by every engine at seq 64,
batch 1, on the Rotten Tomatoes test split. Writes benchmarks/results/int8.json and int8.md.

    python benchmarks/bench_int8.py --rounds 30            # full
    python benchmarks/bench_int8.py --acc-limit 200         # accuracy on the first 200 test sentences
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

ENGINES = ("canao-fp32", "canao-int8", "canao-w4", "litert-fp32", "litert-int8", "onnxruntime-int8")


def make_engines(names):
    from canao.bench.engines import LiteRTEngine, OrtEngine, TVMEngine

    table = {
        "canao-fp32": lambda: TVMEngine("canao-fp32", "CANAO fp32 (LP-Fusion + default schedules)", "canao"),
        "canao-int8": lambda: TVMEngine("canao-int8", "CANAO int8 (per-channel weights, per-token activations, VNNI)",
                                        "canao", options={"quantize": "int8"}),
        "canao-w4": lambda: TVMEngine("canao-w4", "CANAO w4 (4-bit group-64 weights on the int8 kernels)", "canao",
                                      options={"quantize": "w4"}),
        "litert-fp32": lambda: LiteRTEngine("litert-fp32", "LiteRT fp32, XNNPACK"),
        "litert-int8": lambda: LiteRTEngine("litert-int8", "LiteRT dynamic-range int8, XNNPACK", quantize="int8"),
        "onnxruntime-int8": lambda: OrtEngine("onnxruntime-int8", "ONNX Runtime quantize_dynamic QInt8",
                                              quantize="int8"),
    }
    return [table[n]() for n in names]


def cosine(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))


def latency(args, names):
    """Prepare every engine on MiniLM-L6, check its output, time all of them interleaved."""
    from canao.bench.suite import real_inputs
    from canao.bench.timing import interleaved
    from canao.frontends import load_model

    model = load_model("minilm-l6", seq_len=args.seq_len)
    inputs, desc = real_inputs(model, 1)
    ref = model.reference(inputs)
    rows, runners = [], {}
    workdir = tempfile.mkdtemp(prefix="canao-int8-")
    for engine in make_engines(names):
        start = time.perf_counter()
        engine.prepare(model, args.threads, workdir)
        out = np.asarray(engine.output(inputs), np.float32).reshape(ref.shape)
        rows.append({"name": engine.name, "description": engine.description,
                     "prepare_s": round(time.perf_counter() - start, 1), "size_mb": getattr(engine, "size_mb", None),
                     "cosine_vs_fp32": cosine(out, ref), "max_abs_err": float(np.abs(out - ref).max())})
        if getattr(engine, "compiled", None) is not None:
            rows[-1]["kernels"] = engine.compiled.kernels
        runners[engine.name] = engine.runner(inputs)
        print(f"prepared {engine.name}: cosine {rows[-1]['cosine_vs_fp32']:.5f}", file=sys.stderr, flush=True)
    timings = interleaved(runners, args.rounds, args.warmup, args.max_seconds)
    for row in rows:
        row.update(timings[row["name"]].stats())
    return {"model": "minilm-l6", "seq_len": args.seq_len, "input": desc, "rows": rows}


def accuracy(args, names):
    """Test-split accuracy of the fine-tuned teacher as compiled by each engine (batch 1, seq 64)."""
    try:
        from canao.nas.training.evaluate import accuracy as split_accuracy
        from canao.nas.training.teacher import teacher_dir
    except ImportError as exc:
        return {"skipped": f"teacher code not available: {exc}"}
    folder = teacher_dir()
    if not (folder / "weights.pt").exists():
        return {"skipped": f"no fine-tuned teacher at {folder} yet (canao.nas.training.teacher.train_teacher)"}
    from canao.frontends import load_model

    teacher = load_model(str(folder), seq_len=args.acc_seq)
    result = {"model": str(folder), "seq_len": args.acc_seq, "limit": args.acc_limit, "rows": []}
    result["pytorch_fp32"] = split_accuracy(lambda x: teacher.reference(x), "test", args.acc_seq, args.acc_limit,
                                            batch=1)
    workdir = tempfile.mkdtemp(prefix="canao-int8-acc-")
    for engine in make_engines(names):
        engine.prepare(teacher, args.threads, workdir)
        acc = split_accuracy(lambda x, e=engine: np.asarray(e.output(x)).reshape(1, -1), "test", args.acc_seq,
                             args.acc_limit, batch=1)
        row = {"name": engine.name, "accuracy": acc, "loss_points_vs_fp32": 100 * (result["pytorch_fp32"] - acc)}
        skipped = getattr(getattr(engine, "compiled", None), "reports", {}).get("quantize", {}).get("skipped")
        if skipped:
            row["left_fp32"] = skipped
        result["rows"].append(row)
        print(f"accuracy {engine.name}: {acc:.4f}", file=sys.stderr, flush=True)
    return result


def markdown(report):
    lat = report["latency"]
    lines = [f"# int8 benchmark: {lat['model']}, seq {lat['seq_len']}, batch 1, {report['threads']} threads",
             "", f"{report['machine']}; {report['time']}; engines interleaved in {report['rounds']} rounds; "
             f"cosine / max error vs the fp32 PyTorch output on {lat['input']}.", "",
             "| engine | p50 ms | min ms | size MB | cosine vs fp32 | max abs err | kernels |",
             "|---|---|---|---|---|---|---|"]
    for r in lat["rows"]:
        lines.append(f"| {r['name']} | {r.get('p50_ms', float('nan')):.2f} | {r.get('min_ms', float('nan')):.2f} | "
                     f"{r['size_mb']:.1f} | {r['cosine_vs_fp32']:.5f} | {r['max_abs_err']:.3g} | "
                     f"{r.get('kernels', '-')} |")
    by = {r["name"]: r for r in lat["rows"]}
    if "canao-int8" in by and "litert-int8" in by and by["canao-int8"].get("p50_ms"):
        lines += ["", f"CANAO int8 speed vs LiteRT dynamic int8 (p50 ratio, > 1 = CANAO faster): "
                  f"**{by['litert-int8']['p50_ms'] / by['canao-int8']['p50_ms']:.2f}x** "
                  f"(min: {by['litert-int8']['min_ms'] / by['canao-int8']['min_ms']:.2f}x)"]
    acc = report["accuracy"]
    lines += ["", "## Accuracy (Rotten Tomatoes test split, fine-tuned teacher)", ""]
    if "skipped" in acc:
        lines.append(f"Skipped: {acc['skipped']}")
    else:
        lines += [f"Teacher {acc['model']}, seq {acc['seq_len']}, batch 1"
                  + (f", first {acc['limit']} sentences" if acc.get("limit") else ", whole split")
                  + f"; PyTorch fp32 accuracy {100 * acc['pytorch_fp32']:.2f}%.", "",
                  "| engine | accuracy % | loss vs fp32 (points) | left in fp32 |", "|---|---|---|---|"]
        for r in acc["rows"]:
            left = ", ".join(s["var"] for s in r.get("left_fp32", [])) or "-"
            lines.append(f"| {r['name']} | {100 * r['accuracy']:.2f} | {r['loss_points_vs_fp32']:+.2f} | {left} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--max-seconds", type=float, default=60.0)
    p.add_argument("--acc-seq", type=int, default=64)
    p.add_argument("--acc-limit", type=int, default=None, help="score only the first N test sentences")
    p.add_argument("--engines", default=",".join(ENGINES))
    p.add_argument("--skip-accuracy", action="store_true")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = p.parse_args(argv)
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import platform

    from canao.atomic import write_json, write_text
    from canao.codegen.targets import host_cpu_name

    names = [n for n in args.engines.split(",") if n]
    report = {"threads": args.threads, "rounds": args.rounds, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "machine": f"{platform.machine()} {host_cpu_name()}, {os.cpu_count()} cores"}
    report["latency"] = latency(args, names)
    report["accuracy"] = {"skipped": "--skip-accuracy"} if args.skip_accuracy else accuracy(args, names)
    write_json(os.path.join(args.out, "int8.json"), report)
    text = markdown(report)
    write_text(os.path.join(args.out, "int8.md"), text)
    print(text)


if __name__ == "__main__":
    main()
