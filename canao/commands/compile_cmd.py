"""`canao compile`: import, fuse, build for a target, check numbers, write the artifact folder."""
import argparse
import sys
from typing import Dict, Optional

import numpy as np

from .common import (QUANT_MIN_COSINE, W4_MIN_COSINE, add_model_args, add_quantize_arg, add_target_args, build_options,
                     cosine, load, set_threads)

DEFAULT_ATOL = 1e-3
UNVERIFIED_NOTE = "unverified until `canao deploy OUT --rpc HOST:PORT` runs it on the device and records the check here"


def register(sub) -> None:
    p = sub.add_parser("compile", help="compile a model for a target into an artifact folder",
                       description="Import MODEL, run the CANAO pipeline (LP-Fusion, schedules) for TARGET, check "
                       "every output against the source framework on real text, and write lib.so, params.npz, "
                       "manifest.json (+ tokenizer, reference) to OUT atomically. A build for another machine "
                       "(e.g. android-arm64) is unverified until `canao deploy` checks it on the device.")
    add_model_args(p)
    add_target_args(p)
    p.add_argument("-o", "--out", required=True, help="output folder (refused if it exists, unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.add_argument("--tuning-db", help="MetaSchedule database folder to take tuned kernels from (see `canao tune`)")
    p.add_argument("--atol", type=float, default=DEFAULT_ATOL, help="tolerance of the numeric check, scaled by max|output|")
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,  # keeps `canao -v compile`
                   help="print the full traceback of an internal failure (import, build stage, check) before the "
                   "one-line error, and let other libraries' output through")
    add_quantize_arg(p)
    p.set_defaults(func=run)


def print_build_report(console, report) -> None:
    """What the build did worse than it could (kernels left unscheduled, schedule rules that raised,
    fusion measurements that failed, matmuls left fp32 by --quantize); also in manifest.json."""
    if report is None or report.ok:
        return
    console.print(f"[yellow]build report[/] ({len(report.degradations)} degradation(s), see build_report in "
                  "manifest.json):", soft_wrap=True)
    for line in report.summary().splitlines():
        console.print(f"  {line}", soft_wrap=True, markup=False)


def _internal(step: str, exc: Exception, verbose: bool):
    """A one-line CanaoError for an unexpected failure in ``step``; the original is chained (and
    printed in full with -v)."""
    from ..errors import CanaoError

    if verbose:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    else:  # into the run's log file when the CLI keeps one (canao.logs), never onto the terminal
        import logging

        try:
            from .. import logs
        except ImportError:
            logs = None
        if logs is not None and getattr(logs, "active", lambda: False)() and logging.getLogger().handlers:
            logging.getLogger("canao.compile").error("%s failed", step, exc_info=exc)
    first = str(exc).strip().splitlines()[0][:240] if str(exc).strip() else ""
    return CanaoError(f"{step} failed: {type(exc).__name__}" + (f": {first}" if first else ""),
                      "rerun with -v for the traceback and report it with the model; --pipeline stock shows "
                      "whether LP-Fusion is the cause; nothing was written")


def check_outputs(got: Dict[str, np.ndarray], ref: Dict[str, np.ndarray], reference: str, atol: float,
                  quantize: Optional[str] = None) -> dict:
    """Compare every compiled output with the reference's output of the same name.

    Float outputs: max abs error within ``atol * max(1, max|ref|)`` (or, quantized, cosine to the
    fp32 reference); integer / bool outputs must be equal. Returns the check fields (per output
    under "outputs"; top level: the worst error, the first output's checksums) with status
    "passed" or "failed"; a count or shape mismatch is a failure too.
    """
    from ..artifact import output_checksum
    from ..bench.suite import within_tolerance

    check = {"outputs": {}}
    if list(got) != list(ref):
        check.update(status="failed", why=f"the compiled model returns outputs {list(got)}, {reference} returns {list(ref)}")
        return check
    min_cos = (W4_MIN_COSINE if quantize == "w4" else QUANT_MIN_COSINE) if quantize else None
    for name, r in ref.items():
        o = np.asarray(got[name])
        r = np.asarray(r)
        entry = {"shape": list(r.shape), "dtype": str(r.dtype), "reference_checksum": output_checksum(r)}
        if o.shape != r.shape:
            entry.update(status="failed", why=f"shape {o.shape} != reference {r.shape}")
            check["outputs"][name] = entry
            continue
        err = float(np.abs(o.astype(np.float64) - r.astype(np.float64)).max()) if r.size else 0.0
        entry.update(max_abs_err=err, output_checksum=output_checksum(o))
        if r.dtype.kind in "iub":
            ok = err == 0.0
        elif quantize:
            entry["cosine"] = cosine(o, r)
            ok = entry["cosine"] >= min_cos
        else:
            entry["tolerance"] = atol * max(1.0, float(np.abs(r).max()) if r.size else 1.0)
            ok = within_tolerance(err, r, atol)
        entry["status"] = "passed" if ok else "failed"
        check["outputs"][name] = entry
    entries = list(check["outputs"].values())
    first = entries[0]
    check.update(status="passed" if all(e["status"] == "passed" for e in entries) else "failed",
                 max_abs_err=max((e.get("max_abs_err", float("inf")) for e in entries), default=0.0),
                 output_checksum=first.get("output_checksum"), reference_checksum=first["reference_checksum"])
    if quantize:
        cosines = [e["cosine"] for e in entries if "cosine" in e]
        check.update(quantize=quantize, min_cosine=min_cos, cosine=min(cosines) if cosines else 1.0)
    else:
        check["atol"] = atol
    return check


def _failure(check: dict, reference: str):
    from ..errors import CanaoError

    fix = "retry with --pipeline stock and report the model; nothing was written"
    if "why" in check:
        return CanaoError(check["why"], fix)
    bad = [(n, e) for n, e in check["outputs"].items() if e["status"] == "failed"]
    parts = []
    for name, e in bad:
        if "why" in e:
            parts.append(f"'{name}' {e['why']}")
        elif "cosine" in e:
            parts.append(f"'{name}' cosine {e['cosine']:.4f}")
        else:
            parts.append(f"'{name}' max abs err {e['max_abs_err']:.3g}")
    noun = "output" if len(bad) == 1 else "outputs"
    return CanaoError(f"the compiled model's {noun} {', '.join(parts)} differ{'s' if len(bad) == 1 else ''} "
                      f"from {reference}", fix)


def run(args) -> int:
    from pathlib import Path

    from rich.console import Console

    from .. import artifact
    from ..bench.suite import real_inputs
    from ..codegen import resolve_target
    from ..codegen.build import build
    from ..errors import CanaoError
    from ..runtime import LocalModel

    console = Console(stderr=True)
    verbose = getattr(args, "verbose", False)
    set_threads(args.threads)
    target = resolve_target(args.target, threads=args.threads)
    from ..codegen.targets import check_cross_compiler

    check_cross_compiler(target)
    if Path(args.out).exists() and not args.force:
        raise CanaoError(f"output folder {args.out} already exists", "pass --force to replace it, or choose another -o")
    with console.status(f"importing {args.model}"):
        try:
            imported = load(args)
        except CanaoError:
            raise
        except Exception as exc:
            raise _internal(f"importing {args.model}", exc, verbose) from exc
    options = build_options(args)
    done = []

    def on_stage(name):
        done.append(name)
        status.update(f"building for {target.name}: {name} done")

    with console.status(f"building for {target.name} ({args.pipeline} pipeline)") as status:
        try:
            compiled = build(imported, target, args.pipeline, options=options, on_stage=on_stage)
        except CanaoError:
            raise
        except Exception as exc:
            where = (f"the build stage after '{done[-1]}'" if done
                     else "the build's graph rewrite / weight lifting / first stage")
            raise _internal(f"{where} ({args.pipeline} pipeline, {target.name})", exc, verbose) from exc
    reference = "onnxruntime" if imported.source.get("kind") == "onnx" else "pytorch"
    try:
        inputs, desc = real_inputs(imported, args.batch)
        ref = imported.reference_outputs(inputs)
    except CanaoError:
        raise
    except Exception as exc:
        raise _internal(f"running the {reference} reference", exc, verbose) from exc
    if target.runs_locally:
        try:
            got = LocalModel.from_compiled(compiled, imported.inputs, list(ref)).run_all(inputs)
        except CanaoError:
            raise
        except Exception as exc:
            raise _internal("running the compiled model for the check", exc, verbose) from exc
        check = {"reference": reference, "input": desc}
        check.update(check_outputs(got, ref, reference, args.atol, args.quantize))
        if check["status"] == "failed":
            raise _failure(check, reference)
    else:
        check = {"reference": reference, "input": desc, "status": "unverified", "note": UNVERIFIED_NOTE,
                 "reference_checksum": artifact.output_checksum(next(iter(ref.values()))),
                 "outputs": {n: {"shape": list(np.shape(r)), "reference_checksum": artifact.output_checksum(r),
                                 "status": "unverified"} for n, r in ref.items()}}
    artifact.write(args.out, compiled, imported, check,
                   {"inputs": inputs, "outputs": ref, "output": next(iter(ref.values()))}, force=args.force)
    if check["status"] == "unverified":
        verdict = f"check unverified until `canao deploy {args.out} --rpc HOST:PORT`"
    else:
        verdict = f"check {check['status']} on {len(ref)} output(s)" + \
            (f" (max abs err {check['max_abs_err']:.2e})" if "max_abs_err" in check else "") + \
            (f", cosine {check['cosine']:.4f} to fp32" if "cosine" in check else "")
    console.print(f"[green]compiled[/] {imported.name} for {target.name}: {compiled.kernels} kernels, {verdict} -> {args.out}",
                  soft_wrap=True)  # one line, whatever the terminal width
    print_build_report(console, compiled.report)
    return 0
