"""`canao benchmark`: this toolkit vs stock TVM, PyTorch, ONNX Runtime and LiteRT, side by side."""
import os


def register(sub) -> None:
    from ..bench.engines import engine_names_help
    from .common import add_model_args

    p = sub.add_parser("benchmark", help="time every engine side by side on the same model and input",
                       description="Build MODEL with this toolkit and TVM's stock pipeline, convert it for PyTorch, "
                       "ONNX Runtime (plain and BERT-optimized) and LiteRT/XNNPACK, check every output against "
                       "PyTorch on a real sentence, then time all engines interleaved in rounds. Writes "
                       "benchmark.json/.md/.png and canao.log (other libraries' output; -v shows it instead) to "
                       "--out, and prints the table and where the time went. '%% peak' is against the FMA "
                       "roofline measured in the same run.")
    add_model_args(p)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every engine (default: all cores)")
    p.add_argument("--runs", type=int, default=20, help="timed rounds (each engine runs once per round; default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per engine before the rounds (default 3)")
    p.add_argument("--max-seconds", type=float, default=30.0,
                   help="an engine leaves the rounds after this much timed work (>= 3 runs kept; default 30)")
    p.add_argument("--engines", metavar="LIST",
                   help="comma-separated engines to run, in table order (default: all but canao-stock-fusion and "
                   f"canao-unpacked). Names: {engine_names_help()}. canao-stock-fusion = canao's default schedules "
                   "on TVM's FuseOps+FuseTIR instead of LP-Fusion; canao-unpacked = canao without weight "
                   "prepacking, e.g. --engines canao,canao-stock-fusion,canao-unpacked")
    p.add_argument("--tuned", metavar="DB", help="add a 'canao-tuned' engine built with this tuning database")
    p.add_argument("--rpc", metavar="HOST:PORT", help="time on a device over TVM RPC (see `canao device`)")
    p.add_argument("--tracker", metavar="HOST:PORT", help="get a device from a TVM tracker (with --key)")
    p.add_argument("--key", help="device key registered with the tracker")
    p.add_argument("--target", default="android-arm64", help="target of the device builds (default android-arm64)")
    p.add_argument("--atol", type=float, default=1e-3, help="output tolerance vs PyTorch, scaled by max|output|")
    p.add_argument("--quantize", choices=("int8", "w4"),
                   help="add quantized rows: CANAO int8/w4, LiteRT dynamic-range int8, ONNX Runtime dynamic int8 "
                   "(each with max error and cosine vs the fp32 output, and model size)")
    p.add_argument("--quant-atol", type=float, default=0.3,
                   help="with --quantize: output tolerance of the quantized rows only, scaled by max|output| "
                   "(they differ from fp32 by design, see the cosine column; default 0.3)")
    p.add_argument("--out", help="report folder (default canao-results/benchmark-MODEL-seqL)")
    p.add_argument("--json", help="also write the JSON report to this file")
    p.set_defaults(func=run)


def run(args) -> int:
    import shutil
    import sys
    import time
    from pathlib import Path

    from rich.console import Console

    from .. import logs
    from ..bench import report, suite
    from ..bench.engines import default_engines
    from ..errors import CanaoError
    from .common import load, set_threads

    started = time.perf_counter()
    if args.runs < 1 or args.threads < 1:
        raise CanaoError("--runs and --threads must be at least 1", "pass positive integers")
    set_threads(args.threads)
    console = Console()
    if args.rpc or args.tracker:
        from ..bench.engines import device_engines

        engines = device_engines(args.target, {"rpc": args.rpc, "tracker": args.tracker, "key": args.key})
    else:
        engines = default_engines(tuned_db=args.tuned, include=args.engines.split(",") if args.engines else None,
                                  quantize=args.quantize, quant_atol=args.quant_atol)
    name = Path(args.model).stem if os.path.sep in args.model else args.model
    out = args.out or os.path.join("canao-results", f"benchmark-{name}-seq{args.seq_len}")
    clock = time.perf_counter()
    with console.status(f"importing {args.model}"):
        imported = load(args)
    time_s = {"import": time.perf_counter() - clock}
    log = logs.move_into(out)  # from here on, other libraries' output lands next to the report
    result = suite.run(imported, engines, args.threads, args.runs, args.warmup, args.max_seconds, atol=args.atol,
                       time_s=time_s)
    if args.quantize:
        add_quantization_columns(result, imported, engines)
    result["meta"]["time_s"]["total"] = time.perf_counter() - started
    files = report.write_all(result, out, args.json)
    # a pipe or CI log gets every column, unwrapped; a terminal the columns that fit its width
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    print(report.markdown(result, width=width), end="")
    if args.quantize:
        print(quantization_table(result), end="")
    print("wrote " + ", ".join(str(f) for f in files) + (f"; other libraries' output: {log}" if log else ""))
    failed = [e["name"] for e in result["engines"] if e["status"] == "failed"]
    if failed:
        console.print(f"[red]failed: {', '.join(failed)}[/] (output mismatch or build error; no time reported)")
        return 1
    return 0


def add_quantization_columns(result: dict, imported, engines) -> None:
    """Cosine and max error of every engine's output vs the fp32 (PyTorch) output, and model size."""
    from ..bench.suite import real_inputs
    from .common import cosine

    inputs, _ = real_inputs(imported, imported.inputs[0].shape[0])
    reference = imported.reference(inputs)
    by_name = {e.name: e for e in engines}
    for row in result["engines"]:
        engine = by_name.get(row["name"])
        if engine is None or row.get("status") != "ok":
            continue
        out = engine.output(inputs)
        row["cosine_vs_fp32"] = cosine(out, reference)
        if getattr(engine, "size_mb", None) is not None:
            row["size_mb"] = engine.size_mb
    result["meta"]["quantized_tolerance_note"] = "quantized rows checked with --quant-atol; fp32 rows with --atol"


def quantization_table(result: dict) -> str:
    """Markdown: p50, size and cosine vs fp32 per engine (report.py's table has no such columns)."""
    lines = ["| engine | p50 ms | size MB | cosine vs fp32 | max abs err |", "|---|---|---|---|---|"]
    for row in result["engines"]:
        if row.get("status") != "ok":
            continue
        cells = [row["name"], f"{row['p50_ms']:.2f}" if row.get("p50_ms") else "-",
                 f"{row['size_mb']:.1f}" if row.get("size_mb") is not None else "-",
                 f"{row['cosine_vs_fp32']:.5f}" if row.get("cosine_vs_fp32") is not None else "-",
                 f"{row['max_abs_err']:.3g}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
