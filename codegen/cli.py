"""`canao targets` (what can be compiled for, and what this machine can run) and `canao tune`
(resumable MetaSchedule tuning into a database folder that `canao compile --tuning-db` uses)."""
import json
import os


def register(sub) -> None:
    p = sub.add_parser("targets", help="list the named compilation targets",
                       description="Named targets with their TVM target, the compiler that links them (and "
                       "whether it is installed), and whether this machine can run the result.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run_targets)

    p = sub.add_parser("tune", help="auto-tune a model's kernels for a target (resumable)",
                       description="Tune the fused kernels of MODEL with MetaSchedule (XGBoost cost model) into "
                       "the database folder --db. Every batch of measurements is on disk as soon as it ends: "
                       "interrupt (even kill -9) and rerun the same command to continue. A finished database "
                       "is used by `canao compile --tuning-db DIR` (tuned kernels; default schedules for the rest).")
    p.add_argument("model", metavar="MODEL",
                   help="zoo name (minilm-l6, bert-base, distilbert, mobilebert), a Hugging Face model folder, or an .onnx file")
    p.add_argument("--seq-len", type=int, default=128, help="sequence length the model is compiled for (default 128)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--target", "-t", default="x86", help="named target (see `canao targets`) or a TVM target")
    p.add_argument("--pipeline", choices=("canao", "stock"), default="canao",
                   help="whose fused kernels to tune: canao (LP-Fusion) or stock (TVM's FuseOps)")
    p.add_argument("--trials", type=int, required=True,
                   help="total trials for the database (a rerun continues up to this number)")
    p.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="stop starting new batches after this many seconds (the batch in flight finishes)")
    p.add_argument("--db", required=True, metavar="DIR", help="tuning database folder (created or resumed)")
    p.add_argument("--batch-trials", type=int, default=None, metavar="N",
                   help="trials per builder/runner batch (default 32): at most one batch is lost to an interrupt")
    p.add_argument("--tracker", metavar="HOST:PORT", help="measure on devices behind this TVM RPC tracker")
    p.add_argument("--key", help="device key on the tracker (with --tracker)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads of the host target")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_tune)


def target_rows():
    """One dict per named target: what `canao targets` shows."""
    from .gpu import can_run
    from .targets import cross_compiler_installed, list_targets

    rows = []
    for spec in list_targets():
        installed = cross_compiler_installed(spec)
        runs, why = can_run(spec)
        rows.append({"name": spec.name, "aliases": list(spec.aliases), "description": spec.description,
                     "tvm_target": spec.target_dict, "device": spec.device, "arch": spec.arch,
                     "cross_compiler": spec.cross_compiler, "cross_compiler_installed": installed,
                     "runs_here": runs, "why_not": why})
    return rows


def target_string(target) -> str:
    """A target dict in TVM's classic command-line form, shorter than JSON for a table."""
    if not isinstance(target, dict):
        return str(target)
    parts = [str(target.get("kind"))]
    for key, value in target.items():
        if key in ("kind", "host"):
            continue
        value = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        parts.append(f"-{key}={value}")
    text = " ".join(parts)
    if isinstance(target.get("host"), dict):
        text += f" (host: {target_string(target['host'])})"
    return text


def _short_reason(row) -> str:
    if row["runs_here"]:
        return "yes"
    if row["device"] == "cpu":
        return f"no: {row['arch']} (phone, over RPC)"
    return f"no: this TVM has no {row['device']} runtime (*)"


def run_targets(args) -> int:
    rows = target_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="canao targets", show_lines=True)
    for column in ("name", "description", "TVM target", "links with", "runs here"):
        table.add_column(column, overflow="fold")
    for row in rows:
        name = row["name"] + (f" ({', '.join(row['aliases'][:2])})" if row["aliases"] else "")
        if row["cross_compiler"] is None:
            linker = "host C++ compiler"
        else:
            state = "installed" if row["cross_compiler_installed"] else "MISSING"
            linker = f"{os.path.basename(row['cross_compiler'])} ({state})"
        table.add_row(name, row["description"], target_string(row["tvm_target"]), linker, _short_reason(row))
    console = Console()
    console.print(table)
    for reason in sorted({row["why_not"] for row in rows if not row["runs_here"] and row["device"] != "cpu"}):
        console.print(f"(*) {reason}")
    console.print("A plain TVM target works too: --target 'llvm -mcpu=skylake-avx512' or a JSON dict.")
    return 0


def run_tune(args) -> int:
    from canao.errors import CanaoError
    from canao.frontends import load_model

    from .targets import check_cross_compiler, resolve_target
    from .tuning import tune
    from .tuning.tuner import DEFAULT_SLICE

    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    target = resolve_target(args.target, threads=args.threads)
    check_cross_compiler(target)
    runner = None
    if args.tracker or args.key:
        if not (args.tracker and args.key):
            raise CanaoError("--tracker and --key go together", "pass both, e.g. --tracker 127.0.0.1:9190 --key android")
        from canao.android_runner.tuning import metaschedule_runner

        runner = metaschedule_runner(args.tracker, args.key)
    elif not target.runs_locally:
        raise CanaoError(f"this machine cannot run {target.name} code, so it cannot measure candidates",
                         "measure on the device: --tracker HOST:PORT --key KEY (see `canao device --help`)")
    imported = load_model(args.model, seq_len=args.seq_len, batch=args.batch)
    report = tune(imported, target, args.db, args.trials, args.time_budget, runner, pipeline=args.pipeline,
                  slice_trials=args.batch_trials or DEFAULT_SLICE, progress=not args.no_progress)
    from canao.atomic import write_json

    write_json(os.path.join(args.db, "canao_tuning_report.json"), report.to_json())
    print(report.summary())
    print(f"tuning time: {report.seconds_this_run:.0f} s this run, {report.seconds_total:.0f} s in all; "
          f"use it: canao compile {args.model} --target {args.target} --tuning-db {args.db} -o OUT")
    return 0
