"""The SubTransformer folder: what the NAS loop hands to ``canao compile`` / ``benchmark`` / ``load_model``.

    FOLDER/subtransformer.json   format, space (name + full config), genes, metrics, seq_len
    FOLDER/weights.pt            state_dict of the standalone SubTransformer (logits output)
    FOLDER/vocab.txt, tokenizer*.json, special_tokens_map.json   MiniLM's tokenizer

The space config is stored whole, so the folder rebuilds its module without the YAML it came from.
Written through ``canao.atomic.staged_dir``: a folder is complete or absent."""
import json
import shutil
from pathlib import Path
from typing import Optional, Tuple

from canao.errors import CanaoError

MARKER = "subtransformer.json"
FORMAT = "canao-subtransformer"
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def is_subtransformer(path) -> bool:
    return (Path(path) / MARKER).is_file()


def save_subtransformer(folder, space, genes, module, extra_meta: Optional[dict] = None, force: bool = True) -> Path:
    """Write ``module`` (the standalone SubTransformer of ``genes``) as a folder; returns its path."""
    import torch

    from canao.atomic import staged_dir, write_json
    from canao.zoo import minilm_dir

    genes = space.validate(genes)
    config = {k: v for k, v in space.config.items() if not k.startswith("_")}
    meta = {"format": FORMAT, "version": 1,
            "space": {"name": space.name, "source": space.config.get("_source"), "config": config},
            "genes": genes, "description": space.describe(genes), "count": space.count(genes)}
    meta.update(extra_meta or {})
    state = {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}
    with staged_dir(folder, force=force) as tmp:
        torch.save(state, tmp / "weights.pt")
        for name in TOKENIZER_FILES:
            src = minilm_dir() / name
            if src.is_file():
                shutil.copy2(src, tmp / name)
        write_json(tmp / MARKER, meta)
    return Path(folder)


def read_meta(folder) -> dict:
    path = Path(folder) / MARKER
    if not path.is_file():
        raise CanaoError(f"{folder} has no {MARKER}, so it is not a SubTransformer folder",
                         "pass a folder written by canao finetune or save_subtransformer()")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CanaoError(f"{path} is not valid JSON", "rewrite the folder with canao finetune") from exc
    if meta.get("format") != FORMAT:
        raise CanaoError(f"{path} has format {meta.get('format')!r}, not {FORMAT!r}",
                         "pass a folder written by save_subtransformer()")
    return meta


def load_subtransformer(folder) -> Tuple[object, dict, "object", dict]:
    """(space, genes, module in eval mode, meta) of a SubTransformer folder."""
    import torch

    from canao.nas.spaces import load_space

    meta = read_meta(folder)
    space = load_space(dict(meta["space"]["config"], _source=meta["space"].get("source") or MARKER))
    genes = space.validate(meta["genes"])
    module = space.build(genes)
    weights = Path(folder) / "weights.pt"
    if not weights.is_file():
        raise CanaoError(f"{folder} has no weights.pt", "rewrite the folder with canao finetune")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CanaoError(f"{weights} does not match the genes in {MARKER}: {str(exc).splitlines()[0][:200]}",
                         "rewrite the folder: weights and genes must come from the same SubTransformer") from exc
    return space, genes, module.eval(), meta


class _Logits:
    """The module with keyword inputs (what from_torch calls): ``(input_ids, attention_mask) -> logits``."""

    def __new__(cls, module):
        import torch

        class Logits(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, input_ids, attention_mask):
                return self.inner(input_ids=input_ids, attention_mask=attention_mask)

        return Logits(module).eval()


def import_subtransformer(folder, seq_len: int = 128, batch: int = 1):
    """``load_model``'s hook: the folder as an ImportedModel whose output is the class logits."""
    import numpy as np

    from canao.frontends import from_torch

    space, genes, module, meta = load_subtransformer(folder)
    limit = space.model.get("max_positions", 512) if hasattr(space, "model") else 512
    if seq_len > limit:
        raise CanaoError(f"--seq-len {seq_len} exceeds the SubTransformer's {limit} position embeddings",
                         f"use --seq-len {limit} or less")
    inputs = space.example_inputs(seq_len=seq_len, batch=batch)
    inputs = {k: np.ascontiguousarray(v) for k, v in inputs.items()}
    return from_torch(_Logits(module), inputs, name=str(folder), tokenizer_dir=str(folder),
                      source={"kind": "subtransformer", "name": str(folder), "genes": genes})
