"""The interface the search calls: genes in, genes / models / counts out.

``SearchSpace`` owns the gene schema (sample, mutate, crossover, validate, JSON) and the weight-
shared supernet; each concrete space (HAT, BERT) says how genes become a module and how to count it.
"""
import random
from typing import Dict, List, Optional, Union

import numpy as np

from . import genes as gene_ops
from .genes import Genes, StackSchema

Rng = Union[random.Random, int, None]


def as_rng(rng: Rng) -> random.Random:
    """A seed or a Random: sampling is deterministic for a given seed."""
    return rng if isinstance(rng, random.Random) else random.Random(rng)


class SearchSpace:
    """Base class. Subclasses set ``kind``, ``schemas`` and implement the model hooks."""

    kind = "base"

    def __init__(self, config: dict):
        self.config = config
        self.name = config.get("name", config.get("_source", self.kind))
        self.schemas: List[StackSchema] = []
        self._supernet = None

    # ---- genes -------------------------------------------------------------------------------
    def sample(self, rng: Rng = None) -> Genes:
        return gene_ops.sample(self.schemas, as_rng(rng))

    def mutate(self, genes: Genes, prob: float, rng: Rng = None) -> Genes:
        return gene_ops.mutate(self.schemas, self.validate(genes), prob, as_rng(rng))

    def crossover(self, a: Genes, b: Genes, rng: Rng = None) -> Genes:
        return gene_ops.crossover(self.schemas, self.validate(a), self.validate(b), as_rng(rng))

    def validate(self, genes: Genes) -> Genes:
        """A clean copy of ``genes``, or a one-line CanaoError naming the bad value."""
        return gene_ops.validate(self.schemas, genes)

    def largest(self) -> Genes:
        return gene_ops.extreme(self.schemas, max)

    def smallest(self) -> Genes:
        return gene_ops.extreme(self.schemas, min)

    def to_json(self, genes: Genes) -> str:
        return gene_ops.to_json(self.validate(genes))

    def from_json(self, text: str) -> Genes:
        return self.validate(gene_ops.from_json(text))

    def describe(self, genes: Genes) -> str:
        """A short human-readable line, e.g. ``enc 640x6 ffn 3072,... | dec 512x3 ...``."""
        parts = []
        for s in self.schemas:
            st = genes[s.name]
            width = "/".join(str(st[k]) for k in s.widths)
            layers = " ".join(f"{k}={','.join(_short(v) for v in st[k])}" for k in s.per_layer)
            parts.append(f"{s.name[:3]} {width}x{st['layers']} {layers}")
        return " | ".join(parts)

    # ---- models ------------------------------------------------------------------------------
    def build(self, genes: Genes, all_kinds: bool = False):
        """The plain module of ``genes`` (``all_kinds``: every layer holds every layer type)."""
        raise NotImplementedError

    def make_supernet(self):
        raise NotImplementedError

    def supernet(self):
        """The weight-shared supernet (built once per space object)."""
        if self._supernet is None:
            self._supernet = self.make_supernet().eval()
        return self._supernet

    def to_subnet(self, genes: Genes):
        """The SubTransformer as a standalone nn.Module with its own (sliced) weights."""
        return self.supernet().materialize(self.validate(genes))

    def example_inputs(self, seq_len: Optional[int] = None, seed: int = 0, batch: int = 1) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def export_module(self, subnet):
        """The module compiled by --check (its forward takes ``example_inputs`` by name)."""
        return subnet

    def count(self, genes: Genes) -> Dict[str, int]:
        """Params and MACs (embeddings and the output layer excluded, as HAT reports)."""
        raise NotImplementedError


def _short(v) -> str:
    return {"attention": "A", "lsra": "L"}.get(v, str(v))
