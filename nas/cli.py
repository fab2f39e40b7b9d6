"""``canao space sample CONFIG -n N [--check --target T]``: look at a search space from the shell."""
import json
import sys

from canao.errors import CanaoError


def register(subparsers) -> None:
    space = subparsers.add_parser("space", help="sample SubTransformers of a search space (HAT, BERT/MiniLM, LSRA)")
    sub = space.add_subparsers(dest="space_command", metavar="ACTION")
    sub.required = True
    sample = sub.add_parser("sample", help="print N sampled SubTransformers (genes, params, MACs)",
                            description="Sample SubTransformers from a space config; with --check, compile each "
                                        "through the canao pipeline and compare with PyTorch.")
    sample.add_argument("config", help="a YAML path or a bundled config name (e.g. hat_wmt14_en_de, bert_minilm)")
    sample.add_argument("-n", type=int, default=5, help="how many SubTransformers (default 5)")
    sample.add_argument("--seed", type=int, default=0, help="sampling seed (same seed, same genes)")
    sample.add_argument("--check", action="store_true", help="compile each for --target and compare with PyTorch")
    sample.add_argument("--target", default="x86", help="target for --check (default: this CPU)")
    sample.add_argument("--seq-len", type=int, default=16, help="sequence length for --check (default 16)")
    sample.add_argument("--pipeline", choices=["canao", "stock"], default="canao",
                        help="compile pipeline for --check (default canao: LP-Fusion and the toolkit's stages)")
    sample.add_argument("--json", action="store_true", help="print one JSON object per line instead of a table")
    sample.set_defaults(func=_sample)


def _sample(args) -> int:
    from canao.nas.spaces import load_space

    if args.n < 1:
        raise CanaoError(f"-n {args.n} asks for no SubTransformers", "give -n 1 or more")
    space = load_space(args.config)
    target = None
    if args.check:
        from canao.codegen import resolve_target

        target = resolve_target(args.target)
    rows = []
    for i in range(args.n):
        genes = space.sample(args.seed * 1_000_003 + i)
        row = {"index": i, "genes": json.loads(space.to_json(genes)), **space.count(genes)}
        if target is not None:
            from canao.nas.spaces.check import check_subnet

            row["check"] = check_subnet(space, genes, target, seq_len=args.seq_len, seed=i,
                                        pipeline=args.pipeline).to_json()
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            _print_row(space, genes, row, header=(i == 0), checked=target is not None)
    failed = [r for r in rows if "check" in r and not r["check"]["ok"]]
    if failed:
        print(f"canao: {len(failed)} of {len(rows)} SubTransformers differ from PyTorch", file=sys.stderr)
        return 1
    return 0


def _print_row(space, genes, row, header: bool, checked: bool) -> None:
    if header:
        cols = f"{'#':>3}  {'params(M)':>9}  {'MACs(M)':>9}"
        if checked:
            cols += f"  {'build(s)':>8}  {'kernels':>7}  {'max|err|':>9}  ok"
        print(cols + "  genes")
    line = f"{row['index']:>3}  {row['params'] / 1e6:>9.2f}  {row['macs'] / 1e6:>9.1f}"
    if checked:
        c = row["check"]
        err = f"{c['max_abs_err']:.1e}" if c["max_abs_err"] is not None else "built"
        line += f"  {c['build_seconds']:>8.1f}  {c['kernels']:>7}  {err:>9}  {'yes' if c['ok'] else 'NO'}"
    print(line + "  " + space.describe(genes), flush=True)
