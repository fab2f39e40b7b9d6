"""CANAO's BERT-encoder supernet, initialized from all-MiniLM-L6-v2's real weights.

Elastic: depth 1..6, hidden size (embeddings, every LayerNorm and residual path take the front
``hidden`` channels), heads per layer (head size fixed at 32, so q/k/v keep the first
``heads*32`` rows: whole heads), FFN size per layer, and attention vs LSRA per layer. A smaller
hidden size slices the embedding tables' columns and the LayerNorm weight/bias to their first
``hidden`` entries and normalizes over those channels only (as HAT's LayerNormSuper does).
The largest SubTransformer *is* MiniLM: its hidden states equal transformers' BertModel's.
"""
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn

from . import counting
from .config import ConfigReader, read_lsra, require
from .genes import StackSchema
from .layers import Attention, FeedForward, padding_mask
from .lsra import LSRA
from .space import SearchSpace
from .supernet import Supernet

# all-MiniLM-L6-v2, the supernet's (largest) shape.
MINILM = {"hidden": 384, "heads": 12, "ffn": 1536, "layers": 6, "vocab_size": 30522, "max_positions": 512,
          "head_dim": 32}
LN_EPS = 1e-12



# transformers' BertModel parameter names -> this supernet's (embeddings, and per encoder layer)
HF_EMBEDDING_NAMES = {"embeddings.word_embeddings": "embeddings.word",
                      "embeddings.position_embeddings": "embeddings.position",
                      "embeddings.token_type_embeddings": "embeddings.token_type",
                      "embeddings.LayerNorm": "embeddings.norm"}
HF_LAYER_NAMES = {"attention.self.query": "self_attn.q", "attention.self.key": "self_attn.k",
                  "attention.self.value": "self_attn.v", "attention.output.dense": "self_attn.out",
                  "attention.output.LayerNorm": "attn_norm", "intermediate.dense": "ffn.fc1",
                  "output.dense": "ffn.fc2", "output.LayerNorm": "ffn_norm"}

class BertEmbeddings(nn.Module):
    def __init__(self, vocab_size, max_positions, hidden):
        super().__init__()
        self.word = nn.Embedding(vocab_size, hidden)
        self.position = nn.Embedding(max_positions, hidden)
        self.token_type = nn.Embedding(2, hidden)
        self.norm = nn.LayerNorm(hidden, eps=LN_EPS)

    def forward(self, input_ids):
        t = input_ids.shape[1]
        x = self.word(input_ids) + self.position.weight[:t] + self.token_type.weight[0]
        return self.norm(x)


class BertLayer(nn.Module):
    def __init__(self, hidden, heads, head_dim, ffn, kind, kinds, lsra, kernel):
        super().__init__()
        self.kind = kind
        if "attention" in kinds:
            self.self_attn = Attention(hidden, hidden, heads * head_dim, heads)
        if "lsra" in kinds:
            self.lsra = LSRA(hidden, heads * head_dim, heads, kernel, lsra["conv_heads"], lsra["conv"])
        self.attn_norm = nn.LayerNorm(hidden, eps=LN_EPS)
        self.ffn = FeedForward(hidden, ffn, activation="gelu")
        self.ffn_norm = nn.LayerNorm(hidden, eps=LN_EPS)

    def forward(self, x, mask, keep):
        mixed = self.self_attn(x, mask=mask) if self.kind == "attention" else self.lsra(x, mask, keep)
        x = self.attn_norm(x + mixed)
        return self.ffn_norm(x + self.ffn(x))


class BertSubnet(nn.Module):
    """(input_ids, attention_mask) -> class logits; ``encode`` gives the hidden states."""

    def __init__(self, model, genes, lsra, kinds=None):
        super().__init__()
        g = genes["encoder"]
        h = g["hidden"]
        self.embeddings = BertEmbeddings(model["vocab_size"], model["max_positions"], h)
        self.layers = nn.ModuleList(
            BertLayer(h, g["heads"][i], model["head_dim"], g["ffn"][i], g["type"][i], kinds or {g["type"][i]},
                      lsra, lsra["kernel_sizes"][i])
            for i in range(g["layers"]))
        self.classifier = nn.Linear(h, model["num_labels"])

    def encode(self, input_ids, attention_mask):
        keep = attention_mask.to(torch.float32)[:, :, None]
        mask = padding_mask(attention_mask)
        x = self.embeddings(input_ids)
        for layer in self.layers:
            x = layer(x, mask, keep)
        return x

    def forward(self, input_ids, attention_mask):
        """Mean of the real tokens' states (all-MiniLM's sentence pooling), then the classifier."""
        x = self.encode(input_ids, attention_mask)
        keep = attention_mask.to(x.dtype)[:, :, None]
        pooled = (x * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        return self.classifier(pooled)


class HiddenStates(nn.Module):
    """Exports ``encode`` (the richest output to compare a compiled build against)."""

    def __init__(self, subnet: BertSubnet):
        super().__init__()
        self.subnet = subnet

    def forward(self, input_ids, attention_mask):
        return self.subnet.encode(input_ids, attention_mask)


def minilm_state() -> Dict[str, torch.Tensor]:
    """MiniLM's safetensors, renamed to this module's parameter names."""
    from safetensors.torch import load_file

    from canao.zoo import minilm_dir

    raw = load_file(str(minilm_dir() / "model.safetensors"))
    raw = {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in raw.items()}
    names, per_layer = HF_EMBEDDING_NAMES, HF_LAYER_NAMES
    out = {}
    for key, value in raw.items():
        stem, _, leaf = key.rpartition(".")
        if stem in names:
            out[f"{names[stem]}.{leaf}"] = value
        elif stem.startswith("encoder.layer."):
            index, _, rest = stem[len("encoder.layer."):].partition(".")
            if rest in per_layer:
                out[f"layers.{index}.{per_layer[rest]}.{leaf}"] = value
    return out


class BertSpace(SearchSpace):
    kind = "bert"

    def __init__(self, config: dict):
        super().__init__(config)
        top = ConfigReader(config)
        top.only(["space", "name", "description", "model", "encoder", "lsra", "count"])
        m = ConfigReader(config, "model")
        m.only(["init", "num_labels", "seed", "seq_len"])
        m.choice("init", ["minilm-l6"], "minilm-l6")
        self.model = dict(MINILM, num_labels=m.int("num_labels", 2, minimum=2), seed=m.int("seed", 0, minimum=0))
        self.seq_len = m.int("seq_len", 128)
        e = ConfigReader(config, "encoder")
        e.only(["hidden", "layers", "ffn", "heads", "type"])
        enc = StackSchema("encoder", e.int_list("layers"), {"hidden": e.int_list("hidden")},
                          {"ffn": e.int_list("ffn"), "heads": e.int_list("heads"), "type": e.types()})
        self.schemas = [enc]
        with_lsra = "lsra" in enc.per_layer["type"]
        self.lsra = read_lsra(config, max(enc.depth), with_lsra)
        src = config["_source"]
        for key, limit in (("hidden", MINILM["hidden"]), ("layers", MINILM["layers"]), ("ffn", MINILM["ffn"]),
                           ("heads", MINILM["heads"])):
            values = enc.depth if key == "layers" else enc.widths.get(key, enc.per_layer.get(key))
            require(max(values) <= limit, src, f"encoder.{key} allows {max(values)}, more than MiniLM's {limit}",
                    f"keep encoder.{key} <= {limit}: the supernet is all-MiniLM-L6-v2")
        if with_lsra:
            for h in enc.per_layer["heads"]:
                require(h % 2 == 0, src, f"encoder.heads has {h}; LSRA gives half the heads to its attention branch",
                        "use even head counts")
            for w in enc.widths["hidden"]:
                require(w % 2 == 0 and (w // 2) % self.lsra["conv_heads"] == 0, src,
                        f"encoder.hidden {w}: half of it must split into lsra.conv_heads {self.lsra['conv_heads']}",
                        "change conv_heads or the hidden choices")
        self.count_seq_len = self.seq_len
        if "count" in config:
            c = ConfigReader(config, "count")
            c.only(["seq_len"])
            self.count_seq_len = c.int("seq_len", self.seq_len)

    def build(self, genes, all_kinds=False):
        kinds = set(self.schemas[0].per_layer["type"]) if all_kinds else None
        return BertSubnet(self.model, genes, self.lsra, kinds)

    def supernet_genes(self):
        """MiniLM's widths (the supernet body) for as many layers as the space can use."""
        depth = max(self.schemas[0].depth)
        return {"encoder": {"hidden": MINILM["hidden"], "layers": depth, "ffn": [MINILM["ffn"]] * depth,
                            "heads": [MINILM["heads"]] * depth, "type": ["attention"] * depth}}

    def make_supernet(self) -> Supernet:
        torch.manual_seed(self.model["seed"])
        body = self.build(self.supernet_genes(), all_kinds=True)
        for name, p in body.named_parameters():  # BERT's init for what MiniLM does not have
            if p.dim() == 2:
                nn.init.normal_(p, 0.0, 0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        state = minilm_state()
        own = dict(body.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                if name in own:
                    own[name].copy_(value)
        missing = [n for n in own if n.startswith(("embeddings.", "layers.")) and ".lsra." not in n and n not in state]
        if missing:
            raise RuntimeError(f"MiniLM weights lack {missing[:3]}")
        return Supernet(body, self.build)

    def example_inputs(self, seq_len: Optional[int] = None, seed: int = 0, batch: int = 1) -> Dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        t = seq_len or self.seq_len
        ids = rng.integers(1000, 30000, size=(batch, t)).astype("int64")
        ids[:, 0] = 101  # [CLS]
        return {"input_ids": ids, "attention_mask": np.ones((batch, t), dtype="int64")}

    def export_module(self, subnet):
        return HiddenStates(subnet)

    def count(self, genes) -> Dict[str, int]:
        g = self.validate(genes)["encoder"]
        t, h = self.count_seq_len, g["hidden"]
        total = counting.Count()
        for i in range(g["layers"]):
            inner = g["heads"][i] * self.model["head_dim"]
            if g["type"][i] == "attention":
                total = total + counting.attention(t, t, h, h, inner)
            else:
                total = total + counting.lsra(t, h, inner, self.lsra["kernel_sizes"][i], self.lsra["conv_heads"],
                                              self.lsra["conv"])
            total = total + counting.feed_forward(t, h, g["ffn"][i]) + counting.layer_norm(h) * 2
        return total.to_json()
