"""HAT's latency measurement, compiled: the encoder once, then the decoder one token at a time.

Both halves are fixed-shape functions so each compiles once:

* ``CachedEncoder``: ``src_tokens (1, S)`` -> the encoder-decoder keys/values of every decoder layer
  (projected once per sentence, as fairseq's ``static_kv``), repeated for the beam.
* ``DecoderStep``: ``(tokens (beam, 1), step (1,), cross K/V..., cache...) -> (logits (beam, vocab),
  cache...)``. The self-attention cache holds ``max_len`` slots; step t writes slot t with
  ``where(slot == t, new, cache)`` and masks slots > t, so shapes never change and the outputs feed
  the next call as they are. An LSRA layer also carries its convolution window (the last K-1 GLU
  outputs, zeros at the start like the causal padding).

Step t's logits equal the full (teacher-forced) SubTransformer's logits at position t; tests check it.
"""
from typing import Dict, List, Tuple

import numpy as np
import torch
from torch import nn

from .layers import MASKED
from .lsra import DynamicConv


class CachedEncoder(nn.Module):
    def __init__(self, model, beam: int):
        super().__init__()
        self.model, self.beam = model, beam

    def forward(self, src_tokens):
        states = self.model.encoder(src_tokens)
        out = []
        for layer in self.model.decoder.layers:
            k, v = layer.cross_attn.project_kv(layer.memory(states))
            out += [k.repeat(self.beam, 1, 1, 1), v.repeat(self.beam, 1, 1, 1)]
        return tuple(out)


class DecoderStep(nn.Module):
    def __init__(self, model, beam: int, max_len: int):
        super().__init__()
        self.model, self.beam, self.max_len = model, beam, max_len
        self.layers = model.decoder.layers

    # ---- the state's names and shapes (the benchmark allocates the first step's zeros) ---------
    def cross_specs(self, src_len: int) -> List[Tuple[str, tuple]]:
        specs = []
        for i, layer in enumerate(self.layers):
            a = layer.cross_attn
            shape = (self.beam, a.heads, src_len * layer.ende_attn, a.head_dim)
            specs += [(f"cross_k{i}", shape), (f"cross_v{i}", shape)]
        return specs

    def cache_specs(self) -> List[Tuple[str, tuple]]:
        specs = []
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn if layer.kind == "attention" else layer.lsra.attn
            shape = (self.beam, attn.heads, self.max_len, attn.head_dim)
            specs += [(f"self_k{i}", shape), (f"self_v{i}", shape)]
            if layer.kind == "lsra":
                specs.append((f"conv{i}", (self.beam, layer.lsra.conv.kernel - 1, layer.lsra.half)))
        return specs

    def zero_cache(self) -> Dict[str, np.ndarray]:
        return {name: np.zeros(shape, dtype="float32") for name, shape in self.cache_specs()}

    # ---- one step ------------------------------------------------------------------------------
    def forward(self, tokens, step, **state):
        decoder = self.model.decoder
        x = decoder.embed(tokens, decoder.positions.index_select(0, step))
        slots = torch.arange(self.max_len)
        write = (slots == step).reshape(1, 1, self.max_len, 1)
        mask = torch.where(slots <= step, 0.0, MASKED).reshape(1, 1, 1, self.max_len)
        new_cache = []
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn if layer.kind == "attention" else layer.lsra.attn
            source = x if layer.kind == "attention" else x[..., : layer.lsra.half]
            k_new, v_new = attn.project_kv(source)
            k = torch.where(write, k_new, state[f"self_k{i}"])
            v = torch.where(write, v_new, state[f"self_v{i}"])
            new_cache += [k, v]
            mixed = attn.attend(source, k, v, mask)
            if layer.kind == "lsra":
                local, window = self._conv_step(layer.lsra, x[..., layer.lsra.half:], state[f"conv{i}"])
                new_cache.append(window[:, 1:])
                mixed = torch.cat([mixed, local], dim=-1)
            x = layer.attn_norm(x + mixed)
            cross = layer.cross_attn.attend(x, state[f"cross_k{i}"], state[f"cross_v{i}"])
            x = layer.cross_norm(x + cross)
            x = layer.ffn_norm(x + layer.ffn(x))
        return (decoder.logits(x)[:, 0], *new_cache)

    @staticmethod
    def _conv_step(lsra, x_local, past):
        """The causal conv's output at the newest position from the window [past K-1, new]."""
        value = lsra.glu(x_local)  # (beam, 1, C)
        window = torch.cat([past, value], dim=1)  # (beam, K, C), oldest first
        taps = window.transpose(1, 2).unsqueeze(1)  # (beam, 1, C, K)
        conv = lsra.conv
        if isinstance(conv, DynamicConv):
            out = conv.mix(taps, conv.kernels(value))
        else:
            out = (taps * conv.taps()[:, 0, :]).sum(-1)
        return lsra.conv_out(out), window


def step_inputs(step_module: DecoderStep, token: np.ndarray, step: int, cross: Dict[str, np.ndarray],
                cache: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The named inputs of one step, in the order the exported function takes them."""
    inputs = {"tokens": token.astype("int64"), "step": np.array([step], dtype="int64")}
    inputs.update(cross)
    inputs.update(cache)
    return inputs


def torch_decode(encoder: CachedEncoder, step_module: DecoderStep, src: np.ndarray, prev: np.ndarray):
    """Reference loop in PyTorch: returns the logits of every step, (T, beam, vocab)."""
    with torch.no_grad():
        cross_t = encoder(torch.from_numpy(src))
        names = [n for n, _ in step_module.cross_specs(src.shape[1])]
        cross = dict(zip(names, cross_t))
        cache = {k: torch.from_numpy(v) for k, v in step_module.zero_cache().items()}
        cache_names = list(cache)
        out = []
        for t in range(prev.shape[1]):
            res = step_module(torch.from_numpy(prev[:, t:t + 1]), torch.tensor([t]), **cross, **cache)
            out.append(res[0].numpy())
            cache = dict(zip(cache_names, res[1:]))
    return np.stack(out)
