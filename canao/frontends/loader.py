"""One entry point for every model source a user can name on the command line."""
from typing import Dict

import numpy as np

from .. import zoo
from ..errors import CanaoError
from .imported import ImportedModel
from .onnx_import import from_onnx
from .torch_import import from_torch


class _LastHidden:
    """Wrap a transformers encoder so it returns one tensor: last_hidden_state."""

    def __new__(cls, model):
        import torch

        class LastHidden(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, **inputs):
                return self.inner(**inputs).last_hidden_state

        return LastHidden(model).eval()


def _hf_inputs(model, seq_len: int, batch: int) -> Dict[str, np.ndarray]:
    """The inputs this architecture's forward takes, as int64 arrays of (batch, seq_len)."""
    import inspect

    accepted = inspect.signature(model.forward).parameters
    shape = (batch, seq_len)
    rng = np.random.default_rng(0)
    vocab = getattr(model.config, "vocab_size", 30522)
    inputs = {"input_ids": rng.integers(1000, min(vocab, 30000), size=shape).astype("int64"),
              "attention_mask": np.ones(shape, dtype="int64")}
    if "token_type_ids" in accepted:
        inputs["token_type_ids"] = np.zeros(shape, dtype="int64")
    return inputs


def _is_subtransformer(source: str) -> bool:
    import os

    return os.path.isfile(os.path.join(source, "subtransformer.json"))


def load_model(source: str, seq_len: int = 128, batch: int = 1) -> ImportedModel:
    """Zoo name, Hugging Face folder or .onnx file -> ImportedModel (Relax + weights + reference)."""
    if seq_len < 1 or batch < 1:
        raise CanaoError(f"--seq-len {seq_len} / --batch {batch} must be positive", "pass positive integers")
    if _is_subtransformer(source):  # a folder written by canao finetune / save_subtransformer (logits out)
        from canao.nas.training.folder import import_subtransformer

        return import_subtransformer(source, seq_len=seq_len, batch=batch)
    kind, where = zoo.resolve(source)
    if kind == "onnx":
        return from_onnx(where, seq_len=seq_len, batch=batch)
    if kind == "zoo":
        model = zoo.ZOO[where].make()
        tokenizer_dir = zoo.tokenizer_dir_for(where)
    else:
        from transformers import AutoModel

        try:
            model = AutoModel.from_pretrained(where).eval()
        except Exception as exc:
            raise CanaoError(f"transformers cannot load {where}: {str(exc).splitlines()[0][:200]}",
                             "check the folder was written by save_pretrained()") from exc
        tokenizer_dir = where
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos and seq_len > max_pos:
        raise CanaoError(f"--seq-len {seq_len} exceeds the model's {max_pos} position embeddings",
                         f"use --seq-len {max_pos} or less")
    inputs = _hf_inputs(model, seq_len, batch)
    return from_torch(_LastHidden(model), inputs, name=source if kind == "zoo" else where,
                      tokenizer_dir=tokenizer_dir, source={"kind": kind, "name": where})
