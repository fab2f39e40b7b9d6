"""One entry point for every model source a user can name on the command line.

``load_model(source, seq_len, batch)`` takes a zoo name, a Hugging Face folder, an ``.onnx`` file,
a transformers config (a ``PretrainedConfig`` object or a ``config.json`` file: seeded random
weights) or a SubTransformer folder. Encoders (BERT family) return ``last_hidden_state``; decoders
(GPT-2, OPT, GPT-Neo, Bloom, ... : causal LMs) are exported without a KV cache (``use_cache=False``,
see ``_Decoder``) and return every tensor of their output: ``logits`` for a causal-LM head,
``last_hidden_state`` for a bare decoder.
"""
import inspect
import os
from typing import Dict, Optional

import numpy as np

from .. import zoo
from ..errors import CanaoError
from .imported import ImportedModel
from .onnx_import import from_onnx
from .torch_import import from_torch

# model_type of decoder-only (causal) architectures: no token_type_ids, no KV cache in the export
DECODER_TYPES = frozenset({
    "gpt2", "gpt_neo", "gptj", "gpt_neox", "opt", "bloom", "llama", "mistral", "qwen2", "qwen3", "phi", "phi3",
    "falcon", "codegen", "gpt_bigcode", "biogpt", "xglm", "ctrl", "mpt", "gemma", "gemma2", "olmo", "stablelm",
    "starcoder2", "cohere", "granite",
})


def is_decoder(model_or_config) -> bool:
    """True for decoder-only (causal) models: a known decoder type, or a causal-LM head class."""
    config = getattr(model_or_config, "config", model_or_config)
    if getattr(config, "model_type", None) in DECODER_TYPES:
        return True
    name = type(model_or_config).__name__
    return name.endswith(("ForCausalLM", "LMHeadModel")) and not getattr(config, "is_encoder_decoder", False) \
        and getattr(config, "model_type", "") not in ("bert", "roberta", "xlm-roberta", "electra")


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


class _Decoder:
    """Wrap a transformers decoder for torch.export: no KV cache, every output tensor in a dict.

    Why: with transformers 5 the default forward builds a ``DynamicCache`` whose empty layers
    start as 1-D tensors and are concatenated with the 4-D keys/values; torch.export records that
    ``cat``, and TVM's exporter frontend refuses it ("Concat expects all input tensors to have same
    ndim"). A one-shot forward over the whole sequence needs no cache: ``use_cache=False`` removes
    it (and its ``past_key_values`` output). The causal mask is still built by transformers from
    ``attention_mask`` (sdpa path), which imports and compiles.
    """

    def __new__(cls, model):
        import torch

        class Decoder(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, **inputs):
                out = self.inner(**inputs, use_cache=False)
                return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}

        return Decoder(model).eval()


def _hf_inputs(model, seq_len: int, batch: int, decoder: bool) -> Dict[str, np.ndarray]:
    """The inputs this architecture's forward takes, as int64 arrays of (batch, seq_len)."""
    accepted = inspect.signature(model.forward).parameters
    shape = (batch, seq_len)
    rng = np.random.default_rng(0)
    vocab = int(getattr(model.config, "vocab_size", 30522) or 30522)
    high = min(vocab, 30000)
    inputs = {"input_ids": rng.integers(min(1000, high // 2), high, size=shape).astype("int64"),
              "attention_mask": np.ones(shape, dtype="int64")}
    if "token_type_ids" in accepted and not decoder:  # GPT-2 takes them too, but adds an embedding for them
        inputs["token_type_ids"] = np.zeros(shape, dtype="int64")
    return inputs


def _is_subtransformer(source: str) -> bool:
    return os.path.isfile(os.path.join(source, "subtransformer.json"))


def _tokenizer_fits(tokenizer_dir: Optional[str], vocab: Optional[int]) -> bool:
    """A tokenizer is usable only when every id it produces is inside the model's vocabulary."""
    if not tokenizer_dir or not vocab:
        return bool(tokenizer_dir)
    vocab_txt = os.path.join(tokenizer_dir, "vocab.txt")
    if os.path.isfile(vocab_txt):
        with open(vocab_txt, encoding="utf-8") as f:
            return sum(1 for _ in f) <= vocab
    try:
        from transformers import AutoTokenizer

        return len(AutoTokenizer.from_pretrained(tokenizer_dir)) <= vocab
    except Exception:  # noqa: BLE001 - an unreadable tokenizer is as good as none
        return False


def model_from_config(config):
    """A transformers model with seeded random weights from a config (right for latency and
    numerics, not accuracy): a causal LM (``logits``) for decoder types, else the bare encoder."""
    import torch
    import transformers

    torch.manual_seed(0)
    try:
        if is_decoder(config):
            model = transformers.AutoModelForCausalLM.from_config(config)
        else:
            model = transformers.AutoModel.from_config(config)
    except Exception as exc:
        raise CanaoError(f"transformers cannot build a model from the {getattr(config, 'model_type', '?')} config: "
                         f"{str(exc).splitlines()[0][:200]}", "check the config's fields") from exc
    return model.eval()


def _config_from_file(path: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path)
    except Exception as exc:
        raise CanaoError(f"{path} is not a transformers config ({str(exc).splitlines()[0][:200]})",
                         "write it with config.save_pretrained(folder), or pass a model folder / zoo name") from exc


def _hf_model(where: str):
    """A Hugging Face folder: a causal LM head when the folder's architecture is one, else AutoModel."""
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(where)
        auto = transformers.AutoModel
        if is_decoder(config) and any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in (config.architectures or [])):
            auto = transformers.AutoModelForCausalLM
        return auto.from_pretrained(where).eval()
    except Exception as exc:
        raise CanaoError(f"transformers cannot load {where}: {str(exc).splitlines()[0][:200]}",
                         "check the folder was written by save_pretrained()") from exc


def load_model(source, seq_len: int = 128, batch: int = 1) -> ImportedModel:
    """Zoo name, Hugging Face folder, .onnx file or transformers config -> ImportedModel.

    ``source`` may also be a ``transformers.PretrainedConfig`` (or the path of a config .json):
    the model is built from it with seeded weights, e.g.
    ``load_model(GPT2Config(n_layer=2, n_embd=128, n_head=4), seq_len=32)``.
    """
    if seq_len < 1 or batch < 1:
        raise CanaoError(f"--seq-len {seq_len} / --batch {batch} must be positive", "pass positive integers")
    tokenizer_dir = None
    if not isinstance(source, (str, os.PathLike)):  # a transformers config object
        if not hasattr(source, "model_type") or not hasattr(source, "to_dict"):
            raise CanaoError(f"cannot load a {type(source).__name__}",
                             "pass a zoo name, a model folder, an .onnx file or a transformers config")
        model, kind, name, where = model_from_config(source), "config", f"{source.model_type}-config", source.model_type
    elif str(source).lower().endswith(".json") and os.path.isfile(source):
        config = _config_from_file(str(source))
        model, kind, name, where = model_from_config(config), "config", str(source), str(source)
    else:
        source = str(source)
        if _is_subtransformer(source):  # a folder written by canao finetune / save_subtransformer (logits out)
            from canao.nas.training.folder import import_subtransformer

            return import_subtransformer(source, seq_len=seq_len, batch=batch)
        kind, where = zoo.resolve(source)
        if kind == "onnx":
            return from_onnx(where, seq_len=seq_len, batch=batch)
        if kind == "zoo":
            model = zoo.ZOO[where].make()
            tokenizer_dir = zoo.tokenizer_dir_for(where)
            name = source
        else:
            model = _hf_model(where)
            tokenizer_dir = where if os.path.isfile(os.path.join(where, "tokenizer_config.json")) or \
                os.path.isfile(os.path.join(where, "vocab.txt")) or os.path.isfile(os.path.join(where, "tokenizer.json")) \
                else None
            name = where
    config = model.config
    max_pos = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if max_pos and seq_len > max_pos:
        raise CanaoError(f"--seq-len {seq_len} exceeds the model's {max_pos} position embeddings",
                         f"use --seq-len {max_pos} or less")
    decoder = is_decoder(model)
    vocab = getattr(config, "vocab_size", None)
    if not _tokenizer_fits(tokenizer_dir, vocab):
        tokenizer_dir = None  # its ids would index past the embedding table: use synthetic ids in the vocab
    inputs = _hf_inputs(model, seq_len, batch, decoder)
    wrapper = _Decoder(model) if decoder else _LastHidden(model)
    source_info = {"kind": kind, "name": where}
    if decoder:
        source_info["decoder"] = True
    return from_torch(wrapper, inputs, name=name, tokenizer_dir=tokenizer_dir, source=source_info, vocab_size=vocab)
