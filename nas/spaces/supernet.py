"""Weight sharing by front slicing: one set of largest tensors, every SubTransformer a view of it.

A SubTransformer is described by a *skeleton*: the plain module its genes define, built on the
meta device (no memory). Every parameter and buffer of the skeleton takes the front slice
``tensor[:d0, :d1, ...]`` of the supernet's tensor with the same name, HAT's
``weight[:out, :in]`` rule. So

* ``supernet(genes, ...)`` runs the skeleton with those slices (views: gradients reach the shared
  weights, which is how a supernet trains), and
* ``supernet.materialize(genes)`` copies the slices into a standalone module with its own weights
  (what gets exported, compiled and shipped).
"""
from collections import OrderedDict
from typing import Callable, Dict

import torch
from torch import nn

from canao.errors import CanaoError

from . import genes as gene_ops


def front_slice(tensor: torch.Tensor, shape, name: str = "tensor") -> torch.Tensor:
    """``tensor[:shape[0], :shape[1], ...]``; a larger requested shape is a space/supernet mismatch."""
    if len(shape) != tensor.dim() or any(s > t for s, t in zip(shape, tensor.shape)):
        raise CanaoError(f"SubTransformer tensor {name} {tuple(shape)} does not fit in the supernet's "
                         f"{tuple(tensor.shape)}", "keep every choice within the supernet's largest size")
    return tensor[tuple(slice(0, s) for s in shape)]


def named_tensors(module: nn.Module, remove_duplicate: bool = True) -> Dict[str, torch.Tensor]:
    found = OrderedDict(module.named_parameters(remove_duplicate=remove_duplicate))
    found.update(module.named_buffers(remove_duplicate=remove_duplicate))
    return found


class Supernet(nn.Module):
    """The shared weights (``body``: the largest network, every layer type present) plus a
    ``build(genes, device)`` that returns a SubTransformer skeleton."""

    def __init__(self, body: nn.Module, build: Callable, cache_size: int = 32):
        super().__init__()
        self.body = body
        self._build = build
        self._skeletons: "OrderedDict[str, nn.Module]" = OrderedDict()
        self._cache_size = cache_size

    def skeleton(self, genes) -> nn.Module:
        """The SubTransformer's module on the meta device (cached: the search revisits genes)."""
        key = gene_ops.to_json(genes)
        if key not in self._skeletons:
            with torch.device("meta"):
                self._skeletons[key] = self._build(genes).eval()
            while len(self._skeletons) > self._cache_size:
                self._skeletons.popitem(last=False)
        self._skeletons.move_to_end(key)
        skel = self._skeletons[key]
        skel.train(self.training)
        return skel

    def sliced(self, skeleton: nn.Module) -> Dict[str, torch.Tensor]:
        """name -> front slice of the shared tensor, for every tensor of ``skeleton``."""
        shared = named_tensors(self.body, remove_duplicate=False)
        out = {}
        for name, t in named_tensors(skeleton, remove_duplicate=False).items():
            if name not in shared:
                raise CanaoError(f"SubTransformer tensor {name} has no counterpart in the supernet",
                                 "build the supernet body with every layer type of the space")
            out[name] = front_slice(shared[name], t.shape, name)
        return out

    def forward(self, genes, *args, **kwargs):
        """Run the SubTransformer ``genes`` on the inherited (shared) weights."""
        skel = self.skeleton(genes)
        return torch.func.functional_call(skel, self.sliced(skel), args, kwargs, strict=True)

    @torch.no_grad()
    def materialize(self, genes) -> nn.Module:
        """A standalone module with its own copies of the sliced weights (eval mode)."""
        with torch.device("meta"):
            module = self._build(genes)
        module = module.to_empty(device="cpu")
        own = named_tensors(module, remove_duplicate=False)
        for name, t in self.sliced(module).items():
            own[name].copy_(t)
        return module.eval()
