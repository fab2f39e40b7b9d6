"""``canao latency-dataset``, ``canao predictor train|eval``, ``canao search``: the compiler-aware NAS loop."""
import json
import sys

from canao.errors import CanaoError


def register(subparsers) -> None:
    ld = subparsers.add_parser("latency-dataset", help="measure sampled SubTransformers through the compile path",
                               description="Compile sampled SubTransformers (import -> LP-Fusion -> build), time them "
                                           "and their kernels on this CPU, or on a device over TVM RPC (--rpc, "
                                           "--tracker: whole-model times only); resumable (rerun skips measured "
                                           "genes).")
    ld.add_argument("--space", required=True, help="space config name or YAML path (e.g. bert_minilm)")
    ld.add_argument("--target", default="x86",
                    help="target (default x86: this CPU; one that does not run here, e.g. android-arm64, needs "
                    "--rpc or --tracker)")
    ld.add_argument("-n", type=int, required=True, help="how many distinct architectures")
    ld.add_argument("--out", required=True, help="dataset file (JSON lines; appended)")
    ld.add_argument("--seq-len", type=int, default=None, help="sequence length (default: the space's)")
    ld.add_argument("--seed", type=int, default=0)
    ld.add_argument("--repeat", type=int, default=30, help="timed whole-model runs per architecture (default 30)")
    ld.add_argument("--allow-busy", action="store_true",
                    help="measure even when the 1-minute load average says another heavy job is running: rows "
                    "timed beside other work are what made earlier predictors useless (docs/nas.md)")
    add_device_args(ld, "time every architecture")
    ld.set_defaults(func=_latency_dataset)

    pr = subparsers.add_parser("predictor", help="train / evaluate latency predictors on a latency dataset")
    sub = pr.add_subparsers(dest="predictor_command", metavar="ACTION")
    sub.required = True
    tr = sub.add_parser("train", help="fit a predictor on all rows of a dataset")
    tr.add_argument("--data", required=True)
    tr.add_argument("--kind", choices=["fusion", "mlp"], default="fusion")
    tr.add_argument("--out", required=True, help="predictor file (pickle)")
    tr.set_defaults(func=_predictor_train)
    ev = sub.add_parser("eval", help="train both predictors on a seeded split, report metrics on held-out architectures")
    ev.add_argument("--data", required=True)
    ev.add_argument("--heldout", type=float, default=0.2)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--label", choices=["ms", "reference"], default="ms",
                    help="ms: the measured trimmed means; reference: each row's ratio to the reference workload timed "
                         "in the same rounds, in ms at the training rows' median reference (removes what a shared "
                         "machine did between rows; docs/nas.md)")
    ev.add_argument("--out", help="write the report JSON here")
    ev.add_argument("--per-kind", action="store_true",
                    help="also break the fusion-aware predictor's held-out error down by kernel kind (kernels, "
                         "share of the predicted sum, per-kernel MAPE against each held-out row's own kernel "
                         "times from DATA.kernels.json, share of the whole-model error, the residual no kernel "
                         "explains, XGBoost on unseen kernels): printed as a table after the JSON and stored in "
                         "it as fusion.per_kind (nas/predictor_kinds.py)")
    ev.set_defaults(func=_predictor_eval)
    register_search(subparsers)


def add_device_args(parser, what: str) -> None:
    """--rpc / --tracker + --key / --retries / --call-timeout: measure on a device over TVM RPC."""
    g = parser.add_argument_group("measuring on a device over TVM RPC (a phone, or `canao device start-emulated`)")
    g.add_argument("--rpc", metavar="HOST:PORT", help=f"{what} on the device whose RPC server listens here; "
                   "needed for a target that does not run on this machine (e.g. android-arm64)")
    g.add_argument("--tracker", metavar="HOST:PORT", help=f"{what} on a free device of --key at this TVM RPC "
                   "tracker (a device farm; a device that drops is replaced by another); not with --rpc")
    g.add_argument("--key", help="device key at the tracker, e.g. android")
    g.add_argument("--retries", type=int, default=2, metavar="N",
                   help="reconnects (and re-measurements) of an architecture after the device drops (default 2)")
    g.add_argument("--call-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="seconds one remote step (upload, timing) may take before the device counts as frozen "
                   "(default 300: qemu-emulated devices are slow)")


def _device_measurer(args, repeat: int = 30):
    """A RemoteMeasurer for --rpc/--tracker (arguments checked now, before anything compiles), else None.
    Per-kernel times are not measured over RPC (docs/nas.md)."""
    if not (args.rpc or args.tracker or args.key):
        return None
    from canao.nas.remote_measurer import RemoteMeasurer

    return RemoteMeasurer(rpc=args.rpc, tracker=args.tracker, key=args.key, repeat=repeat, retries=args.retries,
                          call_timeout=args.call_timeout)


def _space_and_target(args):
    from canao.codegen import resolve_target
    from canao.nas.spaces import load_space

    space = load_space(args.space)
    return space, resolve_target(args.target)


def _latency_dataset(args) -> int:
    from canao.nas.latency_dataset import build_dataset
    from canao.nas.measurer import LocalMeasurer

    measurer = _device_measurer(args, args.repeat) or LocalMeasurer(repeat=args.repeat, allow_busy=args.allow_busy)
    space, target = _space_and_target(args)
    seq_len = args.seq_len or space.config.get("model", {}).get("seq_len", 128)
    rows = build_dataset(space, target, args.n, args.out, seq_len=seq_len, seed=args.seed, measurer=measurer)
    print(f"{len(rows)} rows in {args.out}")
    return 0


def _rows(path):
    from canao.nas.latency_dataset import read_rows

    rows = read_rows(path)
    if not rows:
        raise CanaoError(f"no measured rows in {path}", "run canao latency-dataset --out FILE first")
    return rows


def _predictor_train(args) -> int:
    from canao.nas.predictor import PREDICTORS, save

    p = PREDICTORS[args.kind]().fit(_rows(args.data))
    save(p, args.out)
    print(f"{p.name} -> {args.out}")
    return 0


def _predictor_eval(args) -> int:
    from canao.nas.predictor import evaluate

    rows = _rows(args.data)
    report = evaluate(rows, args.heldout, args.seed, args.label)
    if args.per_kind:
        report["fusion"]["per_kind"] = _per_kind(rows, args)
    text = json.dumps(report, indent=2, sort_keys=True)
    if args.out:
        from canao.atomic import write_text

        write_text(args.out, text + "\n")
    print(text)
    if args.per_kind:
        from canao.nas.predictor_kinds import format_table

        print()
        print(format_table(report["fusion"]["per_kind"]))
    return 0


def _per_kind(rows, args) -> dict:
    """The per-kind breakdown of ``eval --per-kind``; it needs the dataset's kernel cache (the held-out
    rows' own kernel times are only there)."""
    from canao.nas.latency_dataset import kernel_cache_path, load_kernel_cache
    from canao.nas.predictor_kinds import per_kind

    cache = load_kernel_cache(args.data)
    if not cache:
        raise CanaoError(f"--per-kind needs the kernel cache {kernel_cache_path(args.data)}, which is missing or "
                         "empty", "keep the .kernels.json written beside the dataset, or drop --per-kind")
    return per_kind(rows, cache, args.heldout, args.seed, args.label)


def register_search(subparsers) -> None:
    se = subparsers.add_parser("search", help="evolutionary search under a latency constraint (HAT settings)",
                               description="Evolutionary search (HAT defaults) with the predicted latency as a hard "
                                           "filter and the inherited SubTransformer's dev accuracy as fitness; "
                                           "resumable from --state; random search as the baseline.")
    se.add_argument("--space", required=True)
    se.add_argument("--target", default="x86")
    se.add_argument("--latency-ms", type=float, required=True)
    se.add_argument("--predictor", required=True, help="file from canao predictor train")
    se.add_argument("--out", required=True, help="output folder (genes JSON, Pareto PNG, report.md, state)")
    se.add_argument("--seq-len", type=int, default=None, help="latency sequence length (default: the space's)")
    se.add_argument("--dev-seq-len", type=int, default=64)
    se.add_argument("--dev-limit", type=int, default=None, help="dev sentences for fitness (default: all)")
    se.add_argument("--supernet", default=None, help="KD-trained supernet file (default: the untrained MiniLM supernet)")
    se.add_argument("--random-budget", type=int, default=None, help="random-search samples (default: population)")
    for name, default in (("population", 125), ("parents", 25), ("mutations", 50), ("crossovers", 50),
                          ("iterations", 30), ("seed", 0)):
        se.add_argument(f"--{name}", type=int, default=default)
    se.add_argument("--mutation-prob", type=float, default=0.3)
    se.add_argument("--no-remeasure", action="store_true", help="skip re-measuring the candidates on the target")
    se.add_argument("--remeasure", type=int, default=8,
                    help="fittest candidates re-measured on the target, in order, until one is within the limit on "
                    "the measured figure (default 8)")
    se.add_argument("--allow-busy", action="store_true",
                    help="re-measure even when the load average says another heavy job is running (noisy)")
    add_device_args(se, "re-measure the final candidates")
    se.set_defaults(func=_search)


def _search(args) -> int:
    from pathlib import Path

    from canao.atomic import write_json, write_text
    from canao.nas.evolution import Search, SearchSettings, random_search
    from canao.nas.fitness import DevAccuracy, predicted_latency
    from canao.nas.predictor import load

    device = _device_measurer(args)
    space, target = _space_and_target(args)
    seq_len = args.seq_len or space.config.get("model", {}).get("seq_len", 128)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    latency = predicted_latency(load(args.predictor), space, target, seq_len)
    if args.supernet and not Path(args.supernet).is_file():
        raise CanaoError(f"supernet file {args.supernet} does not exist", "train one first, or omit --supernet")
    fitness = DevAccuracy(space, args.dev_seq_len, args.dev_limit, supernet=args.supernet)
    settings = SearchSettings(args.population, args.parents, args.mutations, args.crossovers, args.mutation_prob,
                              args.iterations, args.seed)
    search = Search(space, latency, fitness, args.latency_ms, settings, out / "state.json")
    evo = search.run()
    rnd = random_search(space, search.latency, search.fitness, args.latency_ms, args.random_budget or args.population,
                        args.seed)
    search._save()
    baselines = {"teacher (largest)": space.largest()}
    three = json.loads(space.to_json(space.largest()))
    enc = three["encoder"]
    if 3 < enc["layers"]:
        enc["layers"] = 3
        for k in ("ffn", "heads", "type"):
            enc[k] = enc[k][:3]
        baselines["first 3 layers"] = three
    base_rows = {n: {"genes": g, "latency_ms": search.latency(g), "fitness": search.fitness(g)} for n, g in baselines.items()}
    check = None
    if not args.no_remeasure and (device is not None or target.runs_locally):
        check = _remeasure(args, space, target, seq_len, evo, device)
        if check["winner"] is not None:
            w = check["winner"]
            evo = {**evo, "best": w["genes"], "fitness": w["fitness"], "latency_ms": w["latency_ms"]}
    measured = check["winner"]["measured"]["mean_ms"] if check and check["winner"] else None
    result = {"evolution": {k: evo[k] for k in ("best", "fitness", "latency_ms")}, "winner_measured_ms": measured,
              "remeasured": None if check is None else [
                  {"genes": c["genes"], "fitness": c["fitness"], "predicted_ms": c["latency_ms"],
                   "measured": c["measured"]} for c in check["checked"]],
              "random": {k: rnd[k] for k in ("best", "fitness", "latency_ms")}, "baselines": base_rows,
              "latency_limit_ms": args.latency_ms, "history": search.state["history"]}
    write_json(out / "best_genes.json", evo["best"])
    write_json(out / "result.json", result)
    _plot(out / "pareto.png", evo["candidates"], rnd["candidates"], base_rows, args.latency_ms)
    write_text(out / "report.md", _report(space, result))
    print(json.dumps({k: result[k] for k in ("evolution", "winner_measured_ms", "random")}, sort_keys=True))
    return 0


def _remeasure(args, space, target, seq_len, evo, device):
    """The fittest candidates re-measured on the target (this CPU, or the --rpc/--tracker device,
    whose session is closed afterwards) until one is within the limit on the measured figure."""
    from canao.nas.fitness import measure_genes, measured_winner

    if device is None:  # a device over RPC does not share this machine's cores: no load check
        from canao.measure import assert_quiet_machine

        assert_quiet_machine(args.allow_busy, what="re-measuring the search's candidates")
    candidates = evo["candidates"] + [{"genes": evo["best"], "fitness": evo["fitness"], "latency_ms": evo["latency_ms"]}]
    try:
        return measured_winner(candidates, args.latency_ms,
                               lambda g: measure_genes(space, g, target, seq_len, allow_busy=True, measurer=device),
                               max_checks=args.remeasure)
    finally:
        if device is not None:
            device.close()


def _plot(path, evo, rnd, baselines, limit):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from canao.nas.fitness import pareto_front

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([c["latency_ms"] for c in rnd], [c["fitness"] for c in rnd], s=10, alpha=.5, label="random search")
    ax.scatter([c["latency_ms"] for c in evo], [c["fitness"] for c in evo], s=10, alpha=.7, label="evolution")
    front = pareto_front([(c["latency_ms"], c["fitness"]) for c in evo + rnd])
    ax.plot([p[0] for p in front], [p[1] for p in front], "k-", lw=1, label="Pareto front")
    for name, b in baselines.items():
        ax.scatter([b["latency_ms"]], [b["fitness"]], marker="*", s=120, label=name)
    ax.axvline(limit, color="r", ls="--", lw=1, label="latency limit")
    ax.set_xlabel("predicted latency (ms)")
    ax.set_ylabel("dev accuracy (inherited weights)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = str(path) + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    import os

    os.replace(tmp, path)


def _report(space, r) -> str:
    lines = [f"# Search report: {space.name}", "", f"Latency limit: {r['latency_limit_ms']} ms.", "",
             "| who | genes | predicted ms | dev accuracy |", "|---|---|---|---|"]
    for name, row in [("evolution", r["evolution"]), ("random search", r["random"])]:
        lines.append(f"| {name} | `{space.to_json(row['best'])}` | {row['latency_ms']:.3f} | {row['fitness']:.4f} |")
    for name, row in r["baselines"].items():
        lines.append(f"| {name} | `{space.to_json(row['genes'])}` | {row['latency_ms']:.3f} | {row['fitness']:.4f} |")
    m, checked = r["winner_measured_ms"], r.get("remeasured")
    if checked:
        lines += ["", "Re-measured on the target (fittest first, until one is within the limit):", "",
                  "| genes | dev accuracy | predicted ms | measured ms | within limit |", "|---|---|---|---|---|"]
        for c in checked:
            ms = c["measured"]["mean_ms"]
            lines.append(f"| `{space.to_json(c['genes'])}` | {c['fitness']:.4f} | {c['predicted_ms']:.3f} | {ms:.3f} | "
                         f"{'yes' if ms <= r['latency_limit_ms'] else 'no'} |")
    if m is not None:
        lines += ["", f"Winner: measured {m:.3f} ms on the target, within the {r['latency_limit_ms']} ms limit."]
    elif checked:
        lines += ["", f"No winner: none of the {len(checked)} re-measured candidates is within the limit on the "
                  "target; retrain the predictor on more (quieter) rows or raise --remeasure."]
    else:
        lines += ["", "Candidates not re-measured (--no-remeasure, or a target that does not run here and no "
                  "--rpc/--tracker device): the winner is the predictor's."]
    lines += ["", "![Pareto](pareto.png)", ""]
    return "\n".join(lines)
