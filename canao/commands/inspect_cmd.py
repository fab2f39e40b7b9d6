"""`canao inspect`: Relax op counts and kernel launches after every pipeline stage, stock vs canao."""


def register(sub) -> None:
    p = sub.add_parser("inspect", help="op and kernel counts after each pipeline stage (stock vs canao)",
                       description="Import MODEL and run TVM's stock pipeline and CANAO's, printing after each stage "
                       "the Relax operator calls and the kernels (PrimFunc calls from main). Kernel counts are "
                       "the baseline LP-Fusion must beat.")
    from .common import add_model_args

    add_model_args(p)
    p.add_argument("--target", "-t", default="x86", help="target the pipelines are run for (default x86)")
    p.add_argument("--ops", action="store_true", help="also list Relax operator counts by operator")
    p.add_argument("--fusion", action="store_true",
                   help="show the LP-Fusion plan: groups, mapping types, edge decisions (green/yellow/red), rewrites")
    from .common import add_fusion_args

    add_fusion_args(p)
    p.add_argument("--json", help="write the counts as JSON (kernels: {stock: N, canao: M}, stages, ops)")
    p.set_defaults(func=run)


def collect(imported, target, pipelines=("stock", "canao"), options=None) -> dict:
    from ..codegen.build import lower, prepare
    from ..codegen.options import BuildOptions
    from ..codegen.pipeline import collecting_stage_reports

    report = {"model": imported.name, "target": target.name, "pipelines": {}, "kernels": {}}
    for name in pipelines:
        opts = BuildOptions.coerce(options)
        if name == "canao":  # as build() settles it
            opts = opts.for_weights(imported.params)
        with collecting_stage_reports() as stage_reports:
            mod, params, stats = prepare(imported, target, name, opts)
            _, lowered = lower(mod, target, name, options=opts)
        stats += lowered[1:]
        report["pipelines"][name] = [s.to_json() for s in stats]
        report["kernels"][name] = stats[-1].kernels
        if "fusion" in stage_reports.reports:
            report["fusion"] = stage_reports.reports["fusion"]
    return report


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..atomic import write_json
    from ..codegen import resolve_target
    from .common import load

    console = Console()
    target = resolve_target(args.target)
    with console.status(f"importing {args.model}"):
        imported = load(args)
    from .common import build_options

    with console.status("running the stock and canao pipelines"):
        report = collect(imported, target, options=build_options(args))
    for name, stages in report["pipelines"].items():
        table = Table(title=f"{imported.name} — {name} pipeline ({target.name})")
        table.add_column("stage")
        table.add_column("relax ops", justify="right")
        table.add_column("kernels", justify="right")
        table.add_column("distinct ops", justify="right")
        table.add_column("seconds", justify="right")
        for s in stages:
            table.add_row(s["stage"], str(s["relax_ops"]), str(s["kernels"]), str(len(s["ops"])), f"{s['seconds']:.2f}")
        console.print(table)
        if args.ops:
            first = stages[0]["ops"]
            console.print("  import ops: " + ", ".join(f"{k.replace('relax.', '')}={v}" for k, v in first.items()))
    if args.fusion and "fusion" in report:
        from ..fusion.plan import FusionPlan

        print(FusionPlan.from_json(report["fusion"], target.name).to_text())  # with what stayed unfused
    k = report["kernels"]
    console.print(f"kernels per inference: stock {k['stock']}, canao {k['canao']} "
                  f"(ratio {k['canao'] / max(1, k['stock']):.2f})")
    if args.json:
        write_json(args.json, report)
    return 0
