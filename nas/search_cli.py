"""``canao latency-dataset``, ``canao predictor train|eval``, ``canao search``: the compiler-aware NAS loop."""
import json
import sys

from canao.errors import CanaoError


def register(subparsers) -> None:
    ld = subparsers.add_parser("latency-dataset", help="measure sampled SubTransformers through the compile path",
                               description="Compile sampled SubTransformers (import -> LP-Fusion -> build), time them "
                                           "and their kernels; resumable (rerun skips measured genes).")
    ld.add_argument("--space", required=True, help="space config name or YAML path (e.g. bert_minilm)")
    ld.add_argument("--target", default="x86", help="target (default x86: this CPU)")
    ld.add_argument("-n", type=int, required=True, help="how many distinct architectures")
    ld.add_argument("--out", required=True, help="dataset file (JSON lines; appended)")
    ld.add_argument("--seq-len", type=int, default=None, help="sequence length (default: the space's)")
    ld.add_argument("--seed", type=int, default=0)
    ld.add_argument("--repeat", type=int, default=30, help="timed whole-model runs per architecture (default 30)")
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
    ev.add_argument("--out", help="write the report JSON here")
    ev.set_defaults(func=_predictor_eval)


def _space_and_target(args):
    from canao.codegen import resolve_target
    from canao.nas.spaces import load_space

    space = load_space(args.space)
    return space, resolve_target(args.target)


def _latency_dataset(args) -> int:
    from canao.nas.latency_dataset import build_dataset
    from canao.nas.measure import LocalMeasurer

    space, target = _space_and_target(args)
    seq_len = args.seq_len or space.config.get("model", {}).get("seq_len", 128)
    rows = build_dataset(space, target, args.n, args.out, seq_len=seq_len, seed=args.seed,
                         measurer=LocalMeasurer(repeat=args.repeat))
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

    report = evaluate(_rows(args.data), args.heldout, args.seed)
    text = json.dumps(report, indent=2, sort_keys=True)
    if args.out:
        from canao.atomic import write_text

        write_text(args.out, text + "\n")
    print(text)
    return 0
