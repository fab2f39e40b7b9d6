"""Lite Transformer's Long-Short Range Attention (LSRA) in standard operators.

Half of the channels go to multi-head attention (global context), the other half to
Linear -> GLU -> a lightweight or dynamic depthwise convolution -> Linear (local context).
Lite Transformer ships CUDA kernels for the convolutions; here they are written so that
torch.export + the Relax importer see only conv1d (groups = channels), slices, softmax, mul and
sum, which every TVM target compiles.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .layers import Attention, FeedForward, sinusoids


def _pad_time(x: torch.Tensor, kernel: int, causal: bool) -> torch.Tensor:
    """(B, T, C) padded along time: K-1 on the left (causal) or K//2 on both sides."""
    left = kernel - 1 if causal else kernel // 2
    return F.pad(x, (0, 0, left, kernel - 1 - left))


class LightweightConv(nn.Module):
    """Depthwise conv whose kernel (one per head, softmax-normalized over its taps) is shared by the
    channels of that head: channel c uses head c // (C / heads)."""

    def __init__(self, channels: int, kernel: int, heads: int, causal: bool = False):
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} conv channels are not divisible by {heads} conv heads")
        self.channels, self.kernel, self.heads, self.causal = channels, kernel, heads, causal
        self.weight = nn.Parameter(torch.randn(heads, kernel) * kernel ** -0.5)

    def taps(self) -> torch.Tensor:
        """(C, 1, K) per-channel kernels: weight-only work that the compiler lifts out of the model."""
        w = F.softmax(self.weight, dim=-1).repeat_interleave(self.channels // self.heads, dim=0)
        return w.unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv1d(_pad_time(x, self.kernel, self.causal).transpose(1, 2), self.taps(), groups=self.channels)
        return y.transpose(1, 2)


class DynamicConv(nn.Module):
    """Depthwise conv whose kernel is predicted per position from the input (Linear C -> heads*K),
    softmax-normalized over the taps. Windows are K shifted slices of the padded input, so the
    op stays static-shape and fusable (no unfold / as_strided)."""

    def __init__(self, channels: int, kernel: int, heads: int, causal: bool = False):
        super().__init__()
        if channels % heads:
            raise ValueError(f"{channels} conv channels are not divisible by {heads} conv heads")
        self.channels, self.kernel, self.heads, self.causal = channels, kernel, heads, causal
        self.weight_linear = nn.Linear(channels, heads * kernel, bias=False)

    def kernels(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return F.softmax(self.weight_linear(x).reshape(b, t, self.heads, self.kernel), dim=-1)

    def mix(self, windows: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        """windows (B, T, C, K) x kernels (B, T, heads, K) -> (B, T, C)."""
        b, t, c, k = windows.shape
        grouped = windows.reshape(b, t, self.heads, c // self.heads, k)
        return (grouped * kernels.unsqueeze(3)).sum(-1).reshape(b, t, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        padded = _pad_time(x, self.kernel, self.causal)
        windows = torch.stack([padded[:, i:i + t, :] for i in range(self.kernel)], dim=-1)
        return self.mix(windows, self.kernels(x))


class LSRA(nn.Module):
    """Long-Short Range Attention over ``dim`` channels.

    The attention branch gets dim/2 channels, inner/2 width and heads/2 heads (head size kept,
    as in Lite Transformer's branch configs); the conv branch gets the other dim/2 channels.
    """

    def __init__(self, dim: int, inner: int, heads: int, kernel: int, conv_heads: int,
                 conv: str = "dynamic", causal: bool = False):
        super().__init__()
        if dim % 2 or inner % 2 or heads % 2:
            raise ValueError(f"LSRA splits channels, inner width and heads in two: got {dim}, {inner}, {heads}")
        half = dim // 2
        self.half = half
        self.attn = Attention(half, half, inner // 2, heads // 2)
        self.glu_value = nn.Linear(half, half)
        self.glu_gate = nn.Linear(half, half)
        conv_cls = DynamicConv if conv == "dynamic" else LightweightConv
        self.conv = conv_cls(half, kernel, conv_heads, causal=causal)
        self.conv_out = nn.Linear(half, half)

    def glu(self, x: torch.Tensor) -> torch.Tensor:
        return self.glu_value(x) * torch.sigmoid(self.glu_gate(x))

    def forward(self, x: torch.Tensor, mask=None, keep=None) -> torch.Tensor:
        """``mask``: additive attention mask; ``keep``: (B, T, 1) zeroes padding before the conv."""
        local = self.glu(x[..., self.half:])
        if keep is not None:
            local = local * keep
        local = self.conv_out(self.conv(local))
        return torch.cat([self.attn(x[..., :self.half], mask=mask), local], dim=-1)


class LiteEncoderLayer(nn.Module):
    """LSRA + flattened FFN (hidden size = embed size), post-norm."""

    def __init__(self, dim, heads, kernel, conv_heads, conv="dynamic", ffn=None):
        super().__init__()
        self.lsra = LSRA(dim, dim, heads, kernel, conv_heads, conv)
        self.attn_norm = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ffn or dim)
        self.ffn_norm = nn.LayerNorm(dim)

    def forward(self, x, mask=None, keep=None):
        x = self.attn_norm(x + self.lsra(x, mask, keep))
        return self.ffn_norm(x + self.ffn(x))


class LiteTransformerEncoder(nn.Module):
    """A standalone Lite Transformer encoder: token ids (B, T) [+ mask] -> hidden states (B, T, dim).

    Defaults follow Lite Transformer's mobile setting (embed 496 would be WMT; kernels 3/7/15/31).
    """

    def __init__(self, vocab_size: int, dim: int = 256, layers: int = 6, heads: int = 8,
                 kernel_sizes=(3, 7, 15, 31, 31, 31), conv_heads: int = 4, conv: str = "dynamic",
                 max_positions: int = 512):
        super().__init__()
        if len(kernel_sizes) < layers:
            raise ValueError(f"need one kernel size per layer ({layers}), got {len(kernel_sizes)}")
        self.dim = dim
        self.embed_tokens = nn.Embedding(vocab_size, dim)
        self.register_buffer("positions", sinusoids(max_positions, dim))
        self.layers = nn.ModuleList(LiteEncoderLayer(dim, heads, kernel_sizes[i], conv_heads, conv)
                                    for i in range(layers))

    def forward(self, input_ids, attention_mask=None):
        t = input_ids.shape[1]
        x = self.embed_tokens(input_ids) * self.dim ** 0.5 + self.positions[:t]
        mask = keep = None
        if attention_mask is not None:
            keep = attention_mask.to(x.dtype)[:, :, None]
            mask = ((1.0 - keep[:, :, 0]) * -1e9)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, mask, keep)
        return x
