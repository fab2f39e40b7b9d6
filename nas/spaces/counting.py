"""Params and MACs of blocks, in closed form (the search counts thousands of genes; no module built).

Conventions, as HAT reports them: embeddings and the output (vocabulary / classifier) layer are
left out; a MAC is one multiply-add of a matmul, conv or attention product; softmax, norms and
activations count nothing. Tests check these formulas against ``numel`` of the built modules and
against ``torch.utils.flop_counter``.
"""
from dataclasses import dataclass


@dataclass
class Count:
    params: int = 0
    macs: int = 0

    def __add__(self, other: "Count") -> "Count":
        return Count(self.params + other.params, self.macs + other.macs)

    def to_json(self):
        return {"params": self.params, "macs": self.macs}


def linear(tokens: int, d_in: int, d_out: int, bias: bool = True) -> Count:
    return Count(d_in * d_out + (d_out if bias else 0), tokens * d_in * d_out)


def layer_norm(dim: int) -> Count:
    return Count(2 * dim, 0)


def attention(q_tokens: int, kv_tokens: int, q_dim: int, kv_dim: int, inner: int) -> Count:
    """q/k/v/out projections plus the two (Tq x Tk x inner) products QK^T and PV."""
    proj = (linear(q_tokens, q_dim, inner) + linear(kv_tokens, kv_dim, inner) * 2
            + linear(q_tokens, inner, q_dim))
    return proj + Count(0, 2 * q_tokens * kv_tokens * inner)


def feed_forward(tokens: int, dim: int, hidden: int) -> Count:
    return linear(tokens, dim, hidden) + linear(tokens, hidden, dim)


def lsra(tokens: int, dim: int, inner: int, kernel: int, conv_heads: int, conv: str) -> Count:
    half = dim // 2
    total = attention(tokens, tokens, half, half, inner // 2)
    total = total + linear(tokens, half, half) * 2 + linear(tokens, half, half)  # GLU value/gate, conv_out
    if conv == "dynamic":
        total = total + linear(tokens, half, conv_heads * kernel, bias=False) + Count(0, tokens * half * kernel)
    else:
        total = total + Count(conv_heads * kernel, tokens * half * kernel)
    return total


def _scale(count: Count, k: int) -> Count:
    return Count(count.params * k, count.macs * k)


Count.__mul__ = _scale  # linear(...) * 2
