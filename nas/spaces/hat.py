"""HAT's SuperTransformer: an encoder-decoder whose every SubTransformer shares its weights.

Elastic: embed size per side, FFN size and heads per layer, decoder depth, encoder-decoder heads
per layer, and *arbitrary encoder-decoder attention*: decoder layer i attends to the outputs of
the last 1, 2 or 3 encoder layers, concatenated along time (HAT's ``decoder_arbitrary_ende_attn``,
written here as the number of layers instead of -1/1/2). The q/k/v width stays ``qkv_dim``
while the head count varies (HAT's MultiheadAttentionSuper). Post-norm layers and a vocabulary
projection tied to the decoder embedding, as in fairseq's transformer_wmt_en_de.
"""
import math
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import counting
from .config import ConfigReader, read_lsra, require
from .genes import StackSchema
from .layers import Attention, FeedForward, causal_mask, padding_mask, sinusoids
from .lsra import LSRA
from .space import SearchSpace
from .supernet import Supernet


class HatEncoderLayer(nn.Module):
    def __init__(self, embed, qkv, ffn, heads, kind, kinds, lsra, kernel):
        super().__init__()
        self.kind = kind
        if "attention" in kinds:
            self.self_attn = Attention(embed, embed, qkv, heads)
        if "lsra" in kinds:
            self.lsra = LSRA(embed, qkv, heads, kernel, lsra["conv_heads"], lsra["conv"], causal=False)
        self.attn_norm = nn.LayerNorm(embed)
        self.ffn = FeedForward(embed, ffn)
        self.ffn_norm = nn.LayerNorm(embed)

    def forward(self, x, mask=None, keep=None):
        mixed = self.self_attn(x, mask=mask) if self.kind == "attention" else self.lsra(x, mask, keep)
        x = self.attn_norm(x + mixed)
        return self.ffn_norm(x + self.ffn(x))


class HatDecoderLayer(nn.Module):
    def __init__(self, embed, enc_embed, qkv, ffn, heads, ende_heads, ende_attn, kind, kinds, lsra, kernel):
        super().__init__()
        self.kind = kind
        self.ende_attn = ende_attn
        if "attention" in kinds:
            self.self_attn = Attention(embed, embed, qkv, heads)
        if "lsra" in kinds:
            self.lsra = LSRA(embed, qkv, heads, kernel, lsra["conv_heads"], lsra["conv"], causal=True)
        self.attn_norm = nn.LayerNorm(embed)
        self.cross_attn = Attention(embed, enc_embed, qkv, ende_heads)
        self.cross_norm = nn.LayerNorm(embed)
        self.ffn = FeedForward(embed, ffn)
        self.ffn_norm = nn.LayerNorm(embed)

    def memory(self, encoder_states):
        """The keys/values source: the last ``ende_attn`` encoder outputs, newest first, along time."""
        picked = [encoder_states[-1 - i] for i in range(self.ende_attn)]
        return picked[0] if len(picked) == 1 else torch.cat(picked, dim=1)

    def forward(self, x, encoder_states, self_mask, cross_mask=None):
        mixed = self.self_attn(x, mask=self_mask) if self.kind == "attention" else self.lsra(x, self_mask)
        x = self.attn_norm(x + mixed)
        if cross_mask is not None and self.ende_attn > 1:
            cross_mask = cross_mask.repeat(1, 1, 1, self.ende_attn)
        x = self.cross_norm(x + self.cross_attn(x, kv=self.memory(encoder_states), mask=cross_mask))
        return self.ffn_norm(x + self.ffn(x))


class HatEncoder(nn.Module):
    def __init__(self, model, genes, kinds, lsra):
        super().__init__()
        d = genes["embed"]
        self.embed_scale = math.sqrt(d)
        self.embed_tokens = nn.Embedding(model["vocab_size"], d)
        self.register_buffer("positions", sinusoids(model["max_positions"], d))
        self.layers = nn.ModuleList(
            HatEncoderLayer(d, model["qkv_dim"], genes["ffn"][i], genes["heads"][i], genes["type"][i],
                            kinds or {genes["type"][i]}, lsra, lsra["kernel_sizes"][i])
            for i in range(genes["layers"]))

    def forward(self, src_tokens, src_keep=None):
        """-> the output of every encoder layer (the decoder picks the last 1-3)."""
        x = self.embed_tokens(src_tokens) * self.embed_scale + self.positions[: src_tokens.shape[1]]
        mask = keep = None
        if src_keep is not None:
            mask, keep = padding_mask(src_keep), src_keep.to(x.dtype)[:, :, None]
        states = []
        for layer in self.layers:
            x = layer(x, mask, keep)
            states.append(x)
        return states


class HatDecoder(nn.Module):
    def __init__(self, model, genes, enc_embed, kinds, lsra):
        super().__init__()
        d = genes["embed"]
        self.embed_scale = math.sqrt(d)
        self.embed_tokens = nn.Embedding(model["vocab_size"], d)
        self.register_buffer("positions", sinusoids(model["max_positions"], d))
        self.layers = nn.ModuleList(
            HatDecoderLayer(d, enc_embed, model["qkv_dim"], genes["ffn"][i], genes["heads"][i],
                            genes["ende_heads"][i], genes["ende_attn"][i], genes["type"][i],
                            kinds or {genes["type"][i]}, lsra, lsra["kernel_sizes"][i])
            for i in range(genes["layers"]))

    def embed(self, tokens, positions):
        return self.embed_tokens(tokens) * self.embed_scale + positions

    def logits(self, features):
        """The output layer: tied to the decoder's token embedding."""
        return F.linear(features, self.embed_tokens.weight)

    def forward(self, prev_tokens, encoder_states, src_keep=None):
        t = prev_tokens.shape[1]
        x = self.embed(prev_tokens, self.positions[:t])
        self_mask = causal_mask(t, x.device)
        cross_mask = padding_mask(src_keep) if src_keep is not None else None
        for layer in self.layers:
            x = layer(x, encoder_states, self_mask, cross_mask)
        return self.logits(x)


class HatTransformer(nn.Module):
    """(src_tokens (B, S), prev_tokens (B, T)[, src_keep (B, S)]) -> logits (B, T, vocab)."""

    def __init__(self, model, genes, lsra, kinds=None):
        super().__init__()
        self.encoder = HatEncoder(model, genes["encoder"], kinds, lsra)
        self.decoder = HatDecoder(model, genes["decoder"], genes["encoder"]["embed"], kinds, lsra)

    def forward(self, src_tokens, prev_tokens, src_keep=None):
        return self.decoder(prev_tokens, self.encoder(src_tokens, src_keep), src_keep)


class HatSpace(SearchSpace):
    """HAT's design space over the SuperTransformer above."""

    kind = "hat"

    def __init__(self, config: dict):
        super().__init__(config)
        top = ConfigReader(config)
        top.only(["space", "name", "description", "model", "encoder", "decoder", "lsra", "count", "latency"])
        m = ConfigReader(config, "model")
        m.only(["vocab_size", "max_positions", "qkv_dim", "share_embeddings", "seed"])
        self.model = {"vocab_size": m.int("vocab_size"), "max_positions": m.int("max_positions", 256),
                      "qkv_dim": m.int("qkv_dim"), "share_embeddings": bool(m.get("share_embeddings", True)),
                      "seed": m.int("seed", 0, minimum=0)}
        e = ConfigReader(config, "encoder")
        e.only(["embed", "layers", "ffn", "heads", "type"])
        d = ConfigReader(config, "decoder")
        d.only(["embed", "layers", "ffn", "heads", "ende_heads", "ende_attn", "type"])
        enc = StackSchema("encoder", e.int_list("layers"), {"embed": e.int_list("embed")},
                          {"ffn": e.int_list("ffn"), "heads": e.int_list("heads"), "type": e.types()})
        dec = StackSchema("decoder", d.int_list("layers"), {"embed": d.int_list("embed")},
                          {"ffn": d.int_list("ffn"), "heads": d.int_list("heads"),
                           "ende_heads": d.int_list("ende_heads"), "ende_attn": d.int_list("ende_attn"),
                           "type": d.types()})
        self.schemas = [enc, dec]
        types = set(enc.per_layer["type"]) | set(dec.per_layer["type"])
        self.lsra = read_lsra(config, max(max(enc.depth), max(dec.depth)), "lsra" in types)
        self._check(enc, dec, "lsra" in types)
        self.count_lengths = self._lengths(config, "count", {"src_len": 30, "tgt_len": 30})
        self.latency = self._lengths(config, "latency", {"src_len": 30, "tgt_len": 30, "beam": 5})

    def _lengths(self, config, section, defaults):
        if section not in config:
            return dict(defaults)
        r = ConfigReader(config, section)
        r.only(defaults)
        return {k: r.int(k, v) for k, v in defaults.items()}

    def _check(self, enc, dec, with_lsra):
        src, qkv = self.config["_source"], self.model["qkv_dim"]
        for stack, key in ((enc, "heads"), (dec, "heads"), (dec, "ende_heads")):
            for h in stack.per_layer[key]:
                require(qkv % h == 0, src, f"{stack.name}.{key} has {h}, which does not divide model.qkv_dim {qkv}",
                        "use head counts that divide qkv_dim (HAT: qkv_dim 512, heads 8 or 4)")
        require(max(dec.per_layer["ende_attn"]) <= min(enc.depth), src,
                f"decoder.ende_attn allows {max(dec.per_layer['ende_attn'])} encoder layers but the encoder "
                f"may have only {min(enc.depth)}", "keep ende_attn choices <= the smallest encoder depth")
        if self.model["share_embeddings"]:
            require(max(enc.widths["embed"]) == max(dec.widths["embed"]), src,
                    "model.share_embeddings needs the same largest embed on both sides",
                    "give encoder.embed and decoder.embed the same largest value, or share_embeddings: false")
        if with_lsra:
            for stack in (enc, dec):
                for h in stack.per_layer["heads"]:
                    require(h % 2 == 0 and (qkv // 2) % (h // 2) == 0, src,
                            f"{stack.name}.heads has {h}; LSRA gives half the heads to its attention branch",
                            "use even head counts")
                for w in stack.widths["embed"]:
                    require(w % 2 == 0 and (w // 2) % self.lsra["conv_heads"] == 0, src,
                            f"{stack.name}.embed {w}: half of it must split into lsra.conv_heads "
                            f"{self.lsra['conv_heads']}", "change conv_heads or the embed choices")

    # ---- models ------------------------------------------------------------------------------
    def build(self, genes, all_kinds=False):
        kinds = {t for s in self.schemas for t in s.per_layer["type"]} if all_kinds else None
        return HatTransformer(self.model, genes, self.lsra, kinds)

    def make_supernet(self) -> Supernet:
        torch.manual_seed(self.model["seed"])
        body = self.build(self.largest(), all_kinds=True)
        _init_like_fairseq(body)
        if self.model["share_embeddings"]:
            body.decoder.embed_tokens = body.encoder.embed_tokens
        return Supernet(body, self.build)

    def example_inputs(self, seq_len: Optional[int] = None, seed: int = 0, batch: int = 1) -> Dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        src = seq_len or self.count_lengths["src_len"]
        tgt = seq_len or self.count_lengths["tgt_len"]
        vocab = self.model["vocab_size"]
        return {"src_tokens": rng.integers(4, vocab, size=(batch, src)).astype("int64"),
                "prev_tokens": rng.integers(4, vocab, size=(batch, tgt)).astype("int64")}

    def count(self, genes) -> Dict[str, int]:
        genes = self.validate(genes)
        enc, dec = genes["encoder"], genes["decoder"]
        s, t, qkv = self.count_lengths["src_len"], self.count_lengths["tgt_len"], self.model["qkv_dim"]
        total = counting.Count()
        for i in range(enc["layers"]):
            total = total + self._mixer(enc, i, s) + counting.feed_forward(s, enc["embed"], enc["ffn"][i])
            total = total + counting.layer_norm(enc["embed"]) * 2
        for i in range(dec["layers"]):
            total = total + self._mixer(dec, i, t) + counting.feed_forward(t, dec["embed"], dec["ffn"][i])
            total = total + counting.attention(t, s * dec["ende_attn"][i], dec["embed"], enc["embed"], qkv)
            total = total + counting.layer_norm(dec["embed"]) * 3
        return total.to_json()

    def _mixer(self, stack, i, tokens):
        d, qkv = stack["embed"], self.model["qkv_dim"]
        if stack["type"][i] == "attention":
            return counting.attention(tokens, tokens, d, d, qkv)
        return counting.lsra(tokens, d, qkv, self.lsra["kernel_sizes"][i], self.lsra["conv_heads"], self.lsra["conv"])


def _init_like_fairseq(module: nn.Module) -> None:
    """Xavier-uniform matrices, zero biases, N(0, d^-1/2) embeddings (fairseq's transformer init)."""
    for name, p in module.named_parameters():
        if p.dim() == 2 and "embed_tokens" in name:
            nn.init.normal_(p, 0.0, p.shape[1] ** -0.5)
        elif p.dim() == 2:
            nn.init.xavier_uniform_(p)
        elif name.endswith("bias"):
            nn.init.zeros_(p)
