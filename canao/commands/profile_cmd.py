"""`canao profile`: per-kernel times of a compiled model, against the FMA roofline (see canao/profile.py)."""

COMPARE = {"stock-fusion": {"fusion": False}}
HOST_TARGETS = ("x86", "llvm", "cpu", "local", "host")


def register(sub) -> None:
    p = sub.add_parser("profile", help="per-kernel table: calls, ms, share, GFLOP/s, %% of roofline, fused ops",
                       description="Compile MODEL with the CANAO pipeline for this CPU and time every kernel "
                       "(VM instrument hook, median of runs) beside the whole model (un-instrumented). Prints a "
                       "table, longest kernel first, and writes profile.json, profile.md and profile.png to --out. "
                       "--compare stock-fusion profiles the same schedules with TVM's FuseOps instead of "
                       "LP-Fusion, side by side by mapping type. With --rpc/--tracker the build is for --target "
                       "(default android-arm64) and runs on that device over TVM RPC: its outputs are checked "
                       "against the host reference, the whole model and each kernel are timed there with "
                       "time_evaluator, and there is no roofline (timings of an emulated device mean nothing).")
    from .common import add_fusion_args, add_model_args

    add_model_args(p)
    add_fusion_args(p)
    p.add_argument("--compare", choices=sorted(COMPARE), help="also profile this build and compare by mapping type")
    p.add_argument("--runs", type=int, default=30, help="whole-model timed runs (default 30)")
    p.add_argument("--kernel-runs", type=int, default=7,
                   help="instrumented runs (on a device: timed calls of each kernel) the per-kernel median is over "
                   "(default 7)")
    p.add_argument("--top", type=int, default=20, help="kernels shown in the terminal table (all are in the JSON)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--no-roofline", action="store_true", help="skip measuring the FMA roofline (no %% column)")
    p.add_argument("--allow-busy", action="store_true",
                   help="measure even when the load average says another heavy job is running (figures will be noisy)")
    p.add_argument("--rpc", metavar="HOST:PORT", help="profile on a device over TVM RPC (see `canao device`)")
    p.add_argument("--tracker", metavar="HOST:PORT", help="get a device from a TVM tracker (with --key)")
    p.add_argument("--key", help="device key registered with the tracker")
    p.add_argument("--target", help="target of the build: this CPU without --rpc/--tracker, else the device's "
                   "(default android-arm64)")
    p.add_argument("--atol", type=float, default=1e-3,
                   help="with --rpc/--tracker: output tolerance vs the host reference, scaled by max|reference| "
                   "(default 1e-3)")
    p.add_argument("-o", "--out", help="folder for profile.json / profile.md / profile.png (default: print only)")
    p.set_defaults(func=run)


def run(args) -> int:
    import os
    from pathlib import Path

    from ..errors import CanaoError
    from ..profile import check_line, compare_markdown, markdown, plot, profile_compiled, profile_remote
    from .common import build_options, load, set_threads

    if args.runs < 3 or args.kernel_runs < 1:
        raise CanaoError(f"--runs {args.runs} / --kernel-runs {args.kernel_runs} is too few",
                         "use --runs >= 3 and --kernel-runs >= 1")
    on_device = bool(args.rpc or args.tracker or args.key)
    if on_device:
        from ..nas.remote_measurer import check_device_args

        check_device_args(args.rpc, args.tracker, args.key)
    refuse_artifact(args.model)
    from ..codegen import resolve_target

    target = resolve_target(args.target or ("android-arm64" if on_device else "x86"))
    if not on_device and target.arch != resolve_target("x86").arch:
        raise CanaoError(f"--target {args.target} builds for {target.arch}, which this CPU cannot run",
                         "add --rpc HOST:PORT (or --tracker HOST:PORT --key KEY) to profile on the device, "
                         "or drop --target")
    threads = args.threads or os.cpu_count() or 1
    set_threads(threads)
    from ..bench.suite import real_inputs
    from ..codegen.build import build
    imported = load(args)
    inputs, _ = real_inputs(imported, args.batch)
    builds = [("canao", build_options(args))]
    if args.compare:
        builds.append((args.compare, build_options(args).replace(**COMPARE[args.compare])))
    roofline = None
    if not args.no_roofline and not on_device:
        from ..bench.peak import PeakUnavailable, measure_fma_gflops

        try:
            roofline = measure_fma_gflops(threads)["gflops"]
        except PeakUnavailable as exc:
            import warnings

            warnings.warn(f"no roofline: {exc}; the % of roofline column stays empty", stacklevel=1)
    compiled = [(label, build(imported, target, "canao", options=options)) for label, options in builds]
    profiles = []
    if on_device:  # every build first: the device's session has a time limit and serves one client
        from ..android_runner import connect

        with connect(rpc=args.rpc, tracker=args.tracker, key=args.key) as session:
            for label, build_ in compiled:
                profiles.append(profile_remote(build_, imported, inputs, session, repeat=args.runs,
                                               kernel_repeat=args.kernel_runs, atol=args.atol))
    else:
        for label, build_ in compiled:
            profiles.append(profile_compiled(build_, imported, inputs, repeat=args.runs,
                                             kernel_repeat=args.kernel_runs, roofline_gflops=roofline,
                                             allow_busy=args.allow_busy))
    if roofline is not None:  # a peak is a maximum: sampled again after the timing, the higher kept
        try:                   # (one half-second sample moved 196-233 GFLOP/s within an hour on Zen 4)
            roofline = max(roofline, measure_fma_gflops(threads)["gflops"])
        except PeakUnavailable:
            pass
        for prof in profiles:
            prof.roofline_gflops = roofline
    for (label, _), prof in zip(compiled, profiles):
        prof.pipeline = "canao (LP-Fusion)" if label == "canao" else f"canao-{label}"
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
    failed = [p for p in profiles if p.check is not None and not p.check.get("match")]
    for p in failed:
        print(f"failed: {p.pipeline} on {p.device}: {check_line(p.check)}")
    return 1 if failed else 0


def refuse_artifact(model: str) -> None:
    """A `canao compile` folder cannot be profiled per kernel: one line saying why and what to run instead.

    Why: the artifact ships the VM library, whose kernels time_evaluator cannot reach by name over RPC,
    and no kernel argument shapes; the per-kernel table needs the build itself (a second, kernels-only
    library and the Relax IR), so the model is profiled from its source."""
    import json
    import os

    from ..errors import CanaoError

    if not (os.path.isdir(model) and os.path.isfile(os.path.join(model, "manifest.json"))
            and os.path.isfile(os.path.join(model, "lib.so"))):
        return
    try:
        manifest = json.loads(open(os.path.join(model, "manifest.json")).read())
    except (OSError, ValueError):
        manifest = {}
    source = manifest.get("model") or "MODEL"
    shape = ((manifest.get("inputs") or [{}])[0].get("shape") or [1, 128]) if isinstance(manifest, dict) else [1, 128]
    target = ((manifest.get("target") or {}).get("name") if isinstance(manifest, dict) else None) or "TARGET"
    raise CanaoError(f"{model} is a compiled artifact: canao profile needs the model (the artifact has no "
                     "kernel library or kernel shapes to time kernels with)",
                     f"profile its model: canao profile {source} --seq-len {shape[-1]} --batch {shape[0]} "
                     f"--target {target} --rpc HOST:PORT; `canao deploy {model} --rpc HOST:PORT --repeat N` "
                     "times the artifact as a whole")
