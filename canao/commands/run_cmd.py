"""`canao run`: run a compiled artifact on text (its own tokenizer) or on .npy inputs."""
import numpy as np


def register(sub) -> None:
    p = sub.add_parser("run", help="run a compiled artifact on text or .npy inputs",
                       description="Run OUT (written by `canao compile`) on this machine. --text is tokenized with the "
                       "model's own tokenizer; --input NAME=FILE.npy passes arrays directly.")
    p.add_argument("out", metavar="OUT", help="artifact folder")
    p.add_argument("--text", action="append", help="input sentence (repeat for a batch)")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy", help="an input array")
    p.add_argument("--save", metavar="FILE.npz|FILE.npy",
                   help="FILE.npz: every output under its output name; FILE.npy: the first output only")
    p.set_defaults(func=run)


def _read_inputs(args, manifest, out_dir):
    from pathlib import Path

    from ..errors import CanaoError

    specs = manifest["inputs"]
    if args.text:
        from ..text import tokenize

        tok = Path(out_dir) / "tokenizer"
        if not tok.is_dir():
            raise CanaoError(f"{out_dir} has no tokenizer", "pass token ids with --input NAME=FILE.npy")
        batch, seq = specs[0]["shape"][0], specs[0]["shape"][1]
        if len(args.text) != batch:
            raise CanaoError(f"{len(args.text)} --text given, the model was compiled for batch {batch}",
                             f"pass {batch} --text, or recompile with --batch {len(args.text)}")
        return tokenize(str(tok), args.text, seq, [s["name"] for s in specs], {s["name"]: s["dtype"] for s in specs})
    arrays = {}
    for item in args.input:
        if "=" not in item:
            raise CanaoError(f"--input {item} is not NAME=FILE.npy", "write it as e.g. input_ids=ids.npy")
        name, path = item.split("=", 1)
        try:
            arrays[name] = np.load(path)
        except (OSError, ValueError) as exc:
            raise CanaoError(f"cannot read {path} as a .npy array", "save it with numpy.save") from exc
    if not arrays:
        raise CanaoError("no input given", "pass --text \"...\" or --input NAME=FILE.npy")
    return arrays


def _save(path: str, outputs) -> None:
    """FILE.npz: every output under its name; anything else: the first output with numpy.save."""
    from ..atomic import write_with
    from ..errors import CanaoError

    arrays = dict(outputs)
    try:
        if path.lower().endswith(".npz"):
            write_with(path, lambda f: np.savez(f, **arrays), binary=True)
        else:
            target = path if path.lower().endswith(".npy") else path + ".npy"  # numpy.save's own rule
            write_with(target, lambda f: np.save(f, next(iter(arrays.values()))), binary=True)
    except OSError as exc:
        raise CanaoError(f"cannot write --save {path}: {exc.strerror or exc}", "choose a writable path") from exc


def run(args) -> int:
    from .. import artifact
    from ..runtime import LocalModel

    manifest = artifact.read_manifest(args.out)
    inputs = _read_inputs(args, manifest, args.out)
    model = LocalModel.from_dir(args.out)
    outputs = model.run_all(inputs)
    if args.save:
        _save(args.save, outputs)
    for i, (name, out) in enumerate(outputs.items()):
        label = f"output {manifest['model']}" if i == 0 else f"output '{name}'"
        if len(outputs) > 1 and i == 0:
            label += f" '{name}'"
        print(f"{label}: shape {tuple(out.shape)} dtype {out.dtype}")
        if out.ndim == 3 and out.dtype.kind == "f" and "attention_mask" in inputs:  # embeddings: mean over real tokens
            mask = inputs["attention_mask"][..., None].astype(out.dtype)
            pooled = (out * mask).sum(1) / np.maximum(mask.sum(1), 1)
            for j, row in enumerate(pooled):
                print(f"[{j}] mean-pooled embedding (first 8 of {row.size}): "
                      + " ".join(f"{v:+.4f}" for v in row[:8]) + f"  |norm| {np.linalg.norm(row):.4f}")
        else:
            flat = out.reshape(-1)
            print("first values: " + " ".join(f"{v:+.4f}" for v in flat[:8]))
    return 0
