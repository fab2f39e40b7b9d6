"""`canao profile`: per-kernel times of a compiled model, against the FMA roofline (see canao/profile.py)."""

COMPARE = {"stock-fusion": {"fusion": False}}


def register(sub) -> None:
    p = sub.add_parser("profile", help="per-kernel table: calls, ms, share, GFLOP/s, % of roofline, fused ops",
                       description="Compile MODEL with the CANAO pipeline for this CPU and time every kernel "
                       "(VM instrument hook, median of runs) beside the whole model (un-instrumented). Prints a "
                       "table, longest kernel first, and writes profile.json, profile.md and profile.png to --out. "
                       "--compare stock-fusion profiles the same schedules with TVM's FuseOps instead of "
                       "LP-Fusion, side by side by mapping type.")
    from .common import add_fusion_args, add_model_args

    add_model_args(p)
    add_fusion_args(p)
    p.add_argument("--compare", choices=sorted(COMPARE), help="also profile this build and compare by mapping type")
    p.add_argument("--runs", type=int, default=30, help="whole-model timed runs (default 30)")
    p.add_argument("--kernel-runs", type=int, default=7, help="instrumented runs the per-kernel median is over (default 7)")
    p.add_argument("--top", type=int, default=20, help="kernels shown in the terminal table (all are in the JSON)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--no-roofline", action="store_true", help="skip measuring the FMA roofline (no %% column)")
    p.add_argument("--allow-busy", action="store_true",
                   help="measure even when the load average says another heavy job is running (figures will be noisy)")
    p.add_argument("-o", "--out", help="folder for profile.json / profile.md / profile.png (default: print only)")
    p.set_defaults(func=run)


def run(args) -> int:
    import os
    from pathlib import Path

    from ..errors import CanaoError
    from ..profile import compare_markdown, markdown, plot, profile_compiled
    from .common import build_options, load, set_threads

    if args.runs < 3 or args.kernel_runs < 1:
        raise CanaoError(f"--runs {args.runs} / --kernel-runs {args.kernel_runs} is too few",
                         "use --runs >= 3 and --kernel-runs >= 1")
    threads = args.threads or os.cpu_count() or 1
    set_threads(threads)
    from ..bench.suite import real_inputs
    from ..codegen import resolve_target
    from ..codegen.build import build

    target = resolve_target("x86")
    imported = load(args)
    inputs, _ = real_inputs(imported, args.batch)
    builds = [("canao", build_options(args))]
    if args.compare:
        builds.append((args.compare, build_options(args).replace(**COMPARE[args.compare])))
    roofline = None
    if not args.no_roofline:
        from ..bench.peak import PeakUnavailable, measure_fma_gflops

        try:
            roofline = measure_fma_gflops(threads)["gflops"]
        except PeakUnavailable as exc:
            import warnings

            warnings.warn(f"no roofline: {exc}; the % of roofline column stays empty", stacklevel=1)
    profiles = []
    for label, options in builds:
        compiled = build(imported, target, "canao", options=options)
        prof = profile_compiled(compiled, imported, inputs, repeat=args.runs, kernel_repeat=args.kernel_runs,
                                roofline_gflops=roofline, allow_busy=args.allow_busy)
        prof.pipeline = "canao (LP-Fusion)" if label == "canao" else f"canao-{label}"
        profiles.append(prof)
    text = "\n".join(markdown(p, top=args.top) for p in profiles)
    if len(profiles) > 1:
        text += "\n" + compare_markdown(profiles)
    print(text)
    if args.out:
        from ..atomic import write_json, write_text

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "profile.json", {"profiles": [p.to_json() for p in profiles]})
        write_text(out / "profile.md", "\n".join(markdown(p) for p in profiles)
                   + ("\n" + compare_markdown(profiles) if len(profiles) > 1 else ""))
        plot(profiles, out / "profile.png", top=min(args.top, 15))
        print(f"wrote {out / 'profile.json'}, {out / 'profile.md'}, {out / 'profile.png'}")
    return 0
