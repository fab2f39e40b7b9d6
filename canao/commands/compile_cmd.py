"""`canao compile`: import, fuse, build for a target, check numbers, write the artifact folder."""
import numpy as np

from .common import (QUANT_MIN_COSINE, W4_MIN_COSINE, add_model_args, add_quantize_arg, add_target_args, build_options,
                     cosine, load, set_threads)

DEFAULT_ATOL = 1e-3


def register(sub) -> None:
    p = sub.add_parser("compile", help="compile a model for a target into an artifact folder",
                       description="Import MODEL, run the CANAO pipeline (LP-Fusion, schedules) for TARGET, check "
                       "the output against the source framework on real text, and write lib.so, params.npz, "
                       "manifest.json (+ tokenizer, reference) to OUT atomically.")
    add_model_args(p)
    add_target_args(p)
    p.add_argument("-o", "--out", required=True, help="output folder (refused if it exists, unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.add_argument("--tuning-db", help="MetaSchedule database folder to take tuned kernels from (see `canao tune`)")
    p.add_argument("--atol", type=float, default=DEFAULT_ATOL, help="tolerance of the numeric check, scaled by max|output|")
    add_quantize_arg(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from rich.console import Console

    from .. import artifact
    from ..bench.suite import real_inputs, within_tolerance
    from ..codegen import resolve_target
    from ..codegen.build import build
    from ..errors import CanaoError
    from ..runtime import LocalModel

    console = Console(stderr=True)
    set_threads(args.threads)
    target = resolve_target(args.target, threads=args.threads)
    from ..codegen.targets import check_cross_compiler

    check_cross_compiler(target)
    if Path(args.out).exists() and not args.force:
        raise CanaoError(f"output folder {args.out} already exists", "pass --force to replace it, or choose another -o")
    with console.status(f"importing {args.model}"):
        imported = load(args)
    options = build_options(args)
    with console.status(f"building for {target.name} ({args.pipeline} pipeline)") as status:
        compiled = build(imported, target, args.pipeline, options=options,
                         on_stage=lambda s: status.update(f"building for {target.name}: {s} done"))
    inputs, desc = real_inputs(imported, args.batch)
    ref = imported.reference(inputs)
    check = {"reference": "onnxruntime" if imported.source.get("kind") == "onnx" else "pytorch", "input": desc,
             "reference_checksum": artifact.output_checksum(ref)}
    if target.runs_locally:
        out = LocalModel.from_compiled(compiled, imported.inputs).run(inputs)
        err = float(np.abs(out - ref).max())
        if args.quantize:  # quantized output: judged by cosine to the fp32 reference
            cos = cosine(out, ref)
            min_cos = W4_MIN_COSINE if args.quantize == "w4" else QUANT_MIN_COSINE
            check.update(status="passed" if cos >= min_cos else "failed", max_abs_err=err, cosine=cos,
                         min_cosine=min_cos, quantize=args.quantize, output_checksum=artifact.output_checksum(out))
        else:
            check.update(status="passed" if within_tolerance(err, ref, args.atol) else "failed", max_abs_err=err,
                         atol=args.atol, output_checksum=artifact.output_checksum(out))
        if check["status"] == "failed":
            raise CanaoError(f"the compiled model's output differs from {check['reference']}: max abs err {err:.3g}",
                             "retry with --pipeline stock and report the model; nothing was written")
    else:
        check.update(status="pending-on-device", note="run `canao deploy OUT --rpc HOST:PORT` to check on the device")
    artifact.write(args.out, compiled, imported, check, {"inputs": inputs, "output": ref}, force=args.force)
    console.print(f"[green]compiled[/] {imported.name} for {target.name}: {compiled.kernels} kernels, "
                  f"check {check['status']}" + (f" (max abs err {check['max_abs_err']:.2e})" if "max_abs_err" in check else "")
                  + (f", cosine {check['cosine']:.4f} to fp32" if "cosine" in check else "") + f" -> {args.out}")
    return 0
