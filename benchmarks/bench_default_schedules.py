"""Zero-trial builds: MiniLM-L6 (seq 128, batch 1) with the canao pipeline's default CPU schedules,
next to stock TVM untuned and PyTorch, timed in interleaved rounds in one process.

Each round runs every engine in turn (canao and PyTorch ``--number`` calls each, stock untuned one
call in its first ``--stock-rounds`` rounds: it takes ~1.7 s). Reports min and median per engine,
the ratios from both, and the GFLOP/s the matmuls reach (``canao.analysis.matmul_flops``).
``--kernels`` adds a per-kernel table of the canao build (each PrimFunc timed alone on random
inputs, times its call count). ``--tuned-work-dir`` adds stock TVM with an existing MetaSchedule
database applied (``static_shape_tuning_pipeline(total_trials=0, ...)``: nothing is tuned here).

    python benchmarks/bench_default_schedules.py --rounds 8 --kernels --out results/default_schedules.json
"""
import argparse
import collections
import statistics
import sys
import time

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="minilm-l6")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--rounds", type=int, default=8, help="interleaved timing rounds")
    p.add_argument("--number", type=int, default=5, help="calls per engine per round (canao, PyTorch, tuned)")
    p.add_argument("--stock-rounds", type=int, default=3, help="rounds that include stock untuned (0 = skip)")
    p.add_argument("--threads", type=int, default=2, help="threads for every engine")
    p.add_argument("--kernels", action="store_true", help="per-kernel times of the canao build")
    p.add_argument("--no-fusion", action="store_true", help="canao build with stock FuseOps instead of LP-Fusion")
    p.add_argument("--tuned-work-dir", help="apply this MetaSchedule database to a stock build and time it too")
    p.add_argument("--out", help="write the results as JSON (atomically)")
    return p.parse_args(argv)


def _vm_runner(compiled_exe, params, inputs, specs):
    import tvm
    from tvm import relax

    dev = tvm.cpu()
    vm = relax.VirtualMachine(compiled_exe, dev)
    args = [tvm.runtime.tensor(inputs[s.name], dev) for s in specs] + [tvm.runtime.tensor(p, dev) for p in params]

    def run():
        out = vm["main"](*args)
        while not hasattr(out, "numpy"):
            out = out[0]
        return out

    return run


def _first_array(out):
    while not hasattr(out, "numpy"):
        out = out[0]
    return out.numpy()


def _tuned_stock(imported, target, work_dir):
    """Stock TVM with a MetaSchedule database applied (zero new trials)."""
    import tvm
    from tvm import relax

    from canao.codegen.build import _run_transform, _split_transform

    mod = relax.pipeline.static_shape_tuning_pipeline(total_trials=0, target=target, work_dir=work_dir)(imported.mod)
    main, transform = _split_transform(mod)
    params = _run_transform(transform, list(imported.params)) if transform is not None else list(imported.params)
    exe = tvm.compile(main, target=target)
    return exe, params


def kernel_table(compiled, target):
    """[(total ms, calls, name, ms per call)] for the PrimFuncs main calls, slowest first."""
    import tvm
    from tvm import relax, tirx

    mod = compiled.mod
    calls = collections.Counter()

    def visit(e):
        if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.GlobalVar):
            calls[e.op.name_hint] += 1

    relax.analysis.post_order_visit(mod["main"].body, visit)
    dev, rows, rng = tvm.cpu(), [], np.random.default_rng(0)
    for gv, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc) or calls[gv.name_hint] == 0:
            continue
        lib = tvm.tirx.build(func.with_attr("global_symbol", "main"), target=target)
        args = []
        for p in func.params:
            shape, dtype = [int(s) for s in p.ty.shape], str(p.ty.dtype)
            data = np.zeros(shape, dtype) if dtype.startswith(("int", "uint", "bool")) else \
                np.asarray(rng.standard_normal(shape), dtype=dtype)
            args.append(tvm.runtime.tensor(data, dev))
        per_call = min(lib.time_evaluator("main", dev, number=5, repeat=3)(*args).results) * 1e3
        rows.append((per_call * calls[gv.name_hint], calls[gv.name_hint], gv.name_hint, per_call))
    return sorted(rows, reverse=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    import os

    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))
    import torch

    from canao import analysis
    from canao.codegen import resolve_target
    from canao.codegen.build import build
    from canao.frontends import load_model

    torch.set_num_threads(args.threads)
    imported = load_model(args.model, seq_len=args.seq_len, batch=1)
    spec = resolve_target("x86", threads=args.threads)
    inputs = imported.example_inputs(0)
    ref = imported.reference(inputs)
    flops = analysis.matmul_flops(imported.mod)

    engines = {}
    options = {"fusion": False} if args.no_fusion else {}
    t0 = time.perf_counter()
    try:
        canao_build = build(imported, spec, "canao", options=options)
    except Exception as exc:  # LP-Fusion is developed alongside; say so and measure without it
        if args.no_fusion:
            raise
        print(f"canao build with LP-Fusion failed ({str(exc).splitlines()[0][:160]}); measuring with fusion off")
        options = {"fusion": False}
        canao_build = build(imported, spec, "canao", options=options)
    build_s = {"canao": time.perf_counter() - t0}
    engines["canao default schedules"] = _vm_runner(canao_build.executable, canao_build.params, inputs, imported.inputs)
    if args.stock_rounds:
        t0 = time.perf_counter()
        stock = build(imported, spec, "stock")
        build_s["stock"] = time.perf_counter() - t0
        engines["stock TVM untuned"] = _vm_runner(stock.executable, stock.params, inputs, imported.inputs)
    if args.tuned_work_dir:
        exe, params = _tuned_stock(imported, spec.tvm_target(), args.tuned_work_dir)
        engines["stock TVM + tuning db"] = _vm_runner(exe, params, inputs, imported.inputs)
    module = imported.torch_module
    torch_inputs = [torch.from_numpy(inputs[s.name]) for s in imported.inputs]

    def run_torch():
        with torch.no_grad():
            return module(*torch_inputs)

    engines["PyTorch"] = run_torch

    errors = {}
    for name, run in engines.items():
        if name == "PyTorch":
            continue
        errors[name] = float(np.abs(_first_array(run()) - ref).max())
        print(f"{name:26s} max |out - PyTorch| = {errors[name]:.2e}")
    for run in engines.values():
        run()  # warm-up

    times = {name: [] for name in engines}
    for rnd in range(args.rounds):
        for name, run in engines.items():
            if name == "stock TVM untuned":
                if rnd >= args.stock_rounds:
                    continue
                reps = 1
            else:
                reps = args.number
            for _ in range(reps):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)

    summary = {name: {"min_ms": min(v) * 1e3, "median_ms": statistics.median(v) * 1e3, "samples": len(v),
                      "gflops_at_min": flops / min(v) / 1e9} for name, v in times.items() if v}
    print(f"\n{args.model} seq {args.seq_len}, {args.threads} threads, {spec.tvm_target()}, canao options {options}; "
          f"matmul work {flops / 1e9:.2f} GFLOP; {args.rounds} interleaved rounds")
    print(f"{'engine':26s} {'min ms':>9s} {'median ms':>10s} {'GFLOP/s':>8s}  samples")
    for name, s in summary.items():
        print(f"{name:26s} {s['min_ms']:9.2f} {s['median_ms']:10.2f} {s['gflops_at_min']:8.1f}  {s['samples']}")
    ours = summary["canao default schedules"]
    ratios = {}
    for name, s in summary.items():
        if name != "canao default schedules":
            ratios[name] = {"min": s["min_ms"] / ours["min_ms"], "median": s["median_ms"] / ours["median_ms"]}
            print(f"{name} / canao default: {ratios[name]['min']:.2f}x (min), {ratios[name]['median']:.2f}x (median)")

    kernels = []
    if args.kernels:
        print("\nper-kernel (canao build, each PrimFunc alone on random inputs, x calls per inference)")
        for total, n, name, one in kernel_table(canao_build, spec.tvm_target()):
            kernels.append({"kernel": name, "calls": n, "ms_per_call": one, "ms_total": total})
            print(f"{total:8.3f} ms  {n:3d} x {one:7.3f} ms  {name}")
        print(f"sum {sum(k['ms_total'] for k in kernels):.2f} ms")

    if args.out:
        from canao.atomic import write_json

        write_json(args.out, {"model": args.model, "seq_len": args.seq_len, "threads": args.threads,
                              "target": str(spec.tvm_target()), "matmul_gflop": flops / 1e9,
                              "canao_options": options,
                              "build_seconds": build_s, "max_abs_err_vs_pytorch": errors, "engines": summary,
                              "ratios_vs_canao": ratios, "kernels": kernels, "rounds": args.rounds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
