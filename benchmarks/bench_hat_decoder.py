"""Time an encoder-decoder SubTransformer HAT's way: the encoder once, then the decoder step by step
for a fixed length with cached keys/values (beam rows, fixed dummy tokens, no early stop).

PyTorch eager and the TVM build (canao pipeline) run the same two functions -- ``CachedEncoder`` and
the fixed-shape ``DecoderStep`` (see docs/spaces.md) -- in interleaved rounds; the script first
checks that the compiled loop's logits match PyTorch's, then prints min/median per engine and the
ratio. Untuned TVM is expected to be far slower until default schedules / tuning land.

    python benchmarks/bench_hat_decoder.py                       # HAT space, its largest SubTransformer
    python benchmarks/bench_hat_decoder.py --pick random --seed 3 --rounds 5 --out results/hat_dec.json
"""
import argparse
import json
import statistics
import sys
import time

import numpy as np


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="hat_wmt14_en_de", help="space config (name or YAML path)")
    p.add_argument("--pick", choices=["largest", "smallest", "random"], default="largest")
    p.add_argument("--seed", type=int, default=0, help="sampling seed for --pick random")
    p.add_argument("--genes", help="genes as JSON (overrides --pick)")
    p.add_argument("--src-len", type=int, help="source length (default: the config's latency.src_len, HAT: 30)")
    p.add_argument("--tgt-len", type=int, help="decoded steps (default: latency.tgt_len, HAT: 30)")
    p.add_argument("--beam", type=int, help="beam rows in the decoder (default: latency.beam, HAT: 5)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    p.add_argument("--target", default="x86")
    p.add_argument("--pipeline", choices=["canao", "stock"], default="canao")
    p.add_argument("--threads", type=int, help="threads for both engines (PyTorch intra-op and TVM_NUM_THREADS); "
                   "1 avoids per-op thread wake-ups dominating on a loaded machine")
    p.add_argument("--out", help="write the results as JSON (atomically)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    import os

    args = parse_args(argv)
    if args.threads:
        os.environ["TVM_NUM_THREADS"] = str(args.threads)  # read when TVM's thread pool starts
    import torch

    from canao.codegen import resolve_target
    from canao.codegen.build import build
    from canao.frontends import from_torch
    from canao.nas.spaces import load_space
    from canao.nas.spaces.check import run_vm
    from canao.nas.spaces.decoder_step import CachedEncoder, DecoderStep, step_inputs, torch_decode

    if args.threads:
        torch.set_num_threads(args.threads)
    space = load_space(args.config)
    if space.kind != "hat":
        print(f"{args.config} is a {space.kind} space; this benchmark times encoder-decoder spaces", file=sys.stderr)
        return 2
    genes = (space.from_json(args.genes) if args.genes else
             {"largest": space.largest, "smallest": space.smallest}.get(args.pick, lambda: space.sample(args.seed))())
    src_len = args.src_len or space.latency["src_len"]
    tgt_len = args.tgt_len or space.latency["tgt_len"]
    beam = args.beam or space.latency["beam"]
    target = resolve_target(args.target)
    print(f"SubTransformer: {space.describe(genes)}")
    print(f"counts: {space.count(genes)}; src {src_len}, {tgt_len} steps, beam {beam}, target {target.name}, "
          f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")

    sub = space.to_subnet(genes)
    encoder, step = CachedEncoder(sub, beam), DecoderStep(sub, beam, tgt_len)
    # HAT's dummy sentence: [2] + [7] * (len-1) as source, [7] * (len-1) + [2] fed to the decoder.
    src = np.array([[2] + [7] * (src_len - 1)], dtype="int64")
    prev = np.array([[7] * (tgt_len - 1) + [2]] * beam, dtype="int64")

    start = time.perf_counter()
    cross_names = [n for n, _ in step.cross_specs(src_len)]
    enc_import = from_torch(encoder, {"src_tokens": src}, name="hat-encoder")
    enc_build = build(enc_import, target, pipeline=args.pipeline)
    cross = dict(zip(cross_names, run_vm(enc_build, [src])))
    step_import = from_torch(step, step_inputs(step, prev[:, :1], 0, cross, step.zero_cache()), name="hat-step")
    step_build = build(step_import, target, pipeline=args.pipeline)
    print(f"built encoder ({enc_build.kernels} kernels) and decoder step ({step_build.kernels} kernels) "
          f"in {time.perf_counter() - start:.1f} s ({args.pipeline} pipeline)")
    order = [s.name for s in step_import.inputs]

    import tvm
    from tvm import relax

    dev = tvm.cpu()
    enc_vm = relax.VirtualMachine(enc_build.executable, dev)
    step_vm = relax.VirtualMachine(step_build.executable, dev)
    enc_params = [tvm.runtime.tensor(p, dev) for p in enc_build.params]
    step_params = [tvm.runtime.tensor(p, dev) for p in step_build.params]
    src_t = tvm.runtime.tensor(src, dev)
    tokens_t = [tvm.runtime.tensor(np.ascontiguousarray(prev[:, t:t + 1]), dev) for t in range(tgt_len)]
    steps_t = [tvm.runtime.tensor(np.array([t], dtype="int64"), dev) for t in range(tgt_len)]
    zero_cache = [tvm.runtime.tensor(v, dev) for v in step.zero_cache().values()]
    n_cross = len(cross_names)

    def tvm_decode():
        cross_out = list(enc_vm["main"](src_t, *enc_params))
        cache = zero_cache
        logits = None
        for t in range(tgt_len):
            out = step_vm["main"](tokens_t[t], steps_t[t], *cross_out, *cache, *step_params)
            logits, cache = out[0], list(out[1:])
        return logits

    def torch_run():
        return torch_decode(encoder, step, src, prev)[-1]

    assert order[:2] == ["tokens", "step"] and order[2:2 + n_cross] == cross_names, order
    err = float(np.abs(tvm_decode().numpy() - torch_run()).max())
    print(f"last-step logits, TVM vs PyTorch: max |err| = {err:.2e}")
    if not err <= 1e-3:  # NaN included
        print("the compiled decoder does not match PyTorch; not timing it", file=sys.stderr)
        return 1

    times = {"pytorch": [], "tvm": []}
    for _ in range(args.rounds):
        for name, fn in (("pytorch", torch_run), ("tvm", tvm_decode)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    summary = {k: {"min_ms": 1e3 * min(v), "median_ms": 1e3 * statistics.median(v)} for k, v in times.items()}
    for k, v in summary.items():
        print(f"{k:>8}: min {v['min_ms']:9.1f} ms   median {v['median_ms']:9.1f} ms   "
              f"(encoder once + {tgt_len} decoder steps)")
    ratio = summary["tvm"]["min_ms"] / summary["pytorch"]["min_ms"]
    print(f"TVM / PyTorch (min): {ratio:.2f}x (above 1: TVM slower)")
    if args.out:
        from canao.atomic import write_json

        write_json(args.out, {"genes": genes, "counts": space.count(genes), "src_len": src_len, "tgt_len": tgt_len,
                              "beam": beam, "target": target.name, "max_abs_err": err, "times": summary,
                              "tvm_over_pytorch": ratio, "rounds": args.rounds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
