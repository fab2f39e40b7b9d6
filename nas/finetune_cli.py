"""``canao finetune``: fine-tune a found SubTransformer (inherited weights + KD) into a folder that
``canao compile`` / ``canao benchmark`` accept."""
import json
from pathlib import Path

from canao.errors import CanaoError


def register(subparsers) -> None:
    p = subparsers.add_parser("finetune", help="fine-tune a found SubTransformer (inherited weights + KD from the teacher)",
                              description="Take GENES (best_genes.json of canao search, or a JSON string), inherit "
                                          "the weights from --supernet, fine-tune on the RT train split with KD from "
                                          "the teacher, pick the epoch by dev accuracy, report test accuracy and "
                                          "write a SubTransformer folder to OUT (resumable per epoch).")
    p.add_argument("genes", help="genes JSON file (e.g. OUT/best_genes.json of canao search) or a JSON string")
    p.add_argument("--space", required=True, help="space config name or YAML path (e.g. bert_minilm)")
    p.add_argument("-o", "--out", required=True, help="output SubTransformer folder")
    p.add_argument("--supernet", help="trained supernet file (default: the untrained MiniLM supernet)")
    p.add_argument("--teacher", help="teacher folder (default: $CANAO_CACHE/nas/teacher, trained if missing)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=8e-5)
    p.add_argument("--kd-weight", type=float, default=0.5, help="0 = labels only; 1 = teacher only")
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--limit", type=int, default=None, help="train sentences (default: all 6,826)")
    p.add_argument("--dev-limit", type=int, default=None)
    p.add_argument("--test-limit", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace an existing OUT")
    p.set_defaults(func=run)


def read_genes(text: str):
    path = Path(text)
    if path.is_file():
        text = path.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CanaoError(f"genes {text[:60]!r} are neither a JSON file nor a JSON string",
                         "pass best_genes.json from canao search") from exc


def run(args) -> int:
    from canao.nas.spaces import load_space
    from canao.nas.training.finetune import finetune_settings, finetune_subtransformer

    if Path(args.out).exists() and not args.force:
        raise CanaoError(f"output folder {args.out} already exists", "pass --force to replace it, or choose another -o")
    if not 0 <= args.kd_weight <= 1:
        raise CanaoError(f"--kd-weight {args.kd_weight} is outside [0, 1]", "pass a weight between 0 and 1")
    for name in ("epochs", "batch", "seq_len"):
        if getattr(args, name) < 1:
            raise CanaoError(f"--{name.replace('_', '-')} {getattr(args, name)} must be positive", "pass a positive integer")
    if args.supernet and not Path(args.supernet).is_file():
        raise CanaoError(f"supernet file {args.supernet} does not exist", "train one (benchmarks/run_nas_pipeline.py) or omit --supernet")
    space = load_space(args.space)
    genes = space.validate(read_genes(args.genes))
    settings = finetune_settings(epochs=args.epochs, batch=args.batch, lr=args.lr, kd_weight=args.kd_weight,
                                 temperature=args.temperature, seq_len=args.seq_len, limit=args.limit,
                                 dev_limit=args.dev_limit, seed=args.seed)
    metrics = finetune_subtransformer(space, genes, args.out, args.supernet, settings, args.teacher,
                                      test_limit=args.test_limit)
    print(json.dumps({"out": args.out, "genes": space.describe(genes), **metrics}, sort_keys=True))
    return 0
