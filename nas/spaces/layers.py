"""Plain PyTorch building blocks of every SubTransformer (no elastic state, export-friendly).

Weight sharing never happens here: a supernet holds the largest tensors and hands each block the
front slices it needs (see ``supernet.py``), so these modules stay ordinary ``nn.Module``s that
torch.export and the Relax importer read like any model.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

# Additive mask value: large enough to zero a softmax term, small enough to never overflow fp32.
MASKED = -1e9


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v projections and its own inner width.

    ``inner`` is HAT's qkv_dim (fixed while heads vary) or BERT's heads x head_dim; ``kv_dim``
    differs from ``q_dim`` for encoder-decoder attention across embed sizes.
    """

    def __init__(self, q_dim: int, kv_dim: int, inner: int, heads: int):
        super().__init__()
        if inner % heads:
            raise ValueError(f"attention inner width {inner} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = inner // heads
        self.q = nn.Linear(q_dim, inner)
        self.k = nn.Linear(kv_dim, inner)
        self.v = nn.Linear(kv_dim, inner)
        self.out = nn.Linear(inner, q_dim)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, inner) -> (B, heads, T, head_dim)."""
        b, t, _ = x.shape
        return x.reshape(b, t, self.heads, self.head_dim).transpose(1, 2)

    def project_kv(self, kv: torch.Tensor):
        return self.split(self.k(kv)), self.split(self.v(kv))

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask=None) -> torch.Tensor:
        """Queries from ``x`` against already projected keys/values (used by cached decoding)."""
        q = self.split(self.q(x)) * (self.head_dim ** -0.5)
        scores = q @ k.transpose(-1, -2)
        if mask is not None:
            scores = scores + mask
        ctx = F.softmax(scores, dim=-1) @ v
        b, _, t, _ = ctx.shape
        return self.out(ctx.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))

    def forward(self, x: torch.Tensor, kv=None, mask=None) -> torch.Tensor:
        k, v = self.project_kv(x if kv is None else kv)
        return self.attend(x, k, v, mask)


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, activation: str = "relu"):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.activation = activation

    def forward(self, x):
        h = self.fc1(x)
        h = F.gelu(h) if self.activation == "gelu" else F.relu(h)
        return self.fc2(h)


def sinusoids(positions: int, dim: int) -> torch.Tensor:
    """fairseq's sinusoidal table (sin half, then cos half), shape (positions, dim)."""
    half = dim // 2
    scale = math.log(10000) / max(half - 1, 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -scale)
    angles = torch.arange(positions, dtype=torch.float32)[:, None] * freqs[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    return F.pad(table, (0, dim - 2 * half))


def causal_mask(length: int, device=None) -> torch.Tensor:
    """(T, T) additive mask: position t sees positions <= t."""
    idx = torch.arange(length, device=device)
    return torch.where(idx[None, :] > idx[:, None], MASKED, 0.0)


def padding_mask(keep: torch.Tensor) -> torch.Tensor:
    """(B, S) 1 = token, 0 = padding -> (B, 1, 1, S) additive mask for attention scores."""
    return ((1.0 - keep.to(torch.float32)) * MASKED)[:, None, None, :]
