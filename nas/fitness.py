"""Fitness and latency callables for the search: dev accuracy of the inherited SubTransformer, and
predicted latency from a trained predictor."""
from typing import Optional

import numpy as np


class DevAccuracy:
    """Accuracy on (a seeded subset of) the RT dev split, supernet weights inherited (no training).

    ``supernet``: a Supernet, a path to a trained one (``train_supernet``'s file), or None for the
    space's untrained supernet (MiniLM's weights, an untrained classifier head). Batches are sorted by
    length and trimmed to their longest sentence: the same logits, about half the work."""

    def __init__(self, space, seq_len: int = 64, limit: Optional[int] = None, batch: int = 64, supernet=None):
        from canao.nas.training.data import encoded_split

        if supernet is None:
            supernet = space.supernet()
        elif not hasattr(supernet, "materialize"):
            from canao.nas.training.distill import load_supernet

            supernet = load_supernet(supernet, space)
        self.data = encoded_split("dev", seq_len, limit)
        self.net = supernet.eval()
        self.batch = batch

    def __call__(self, genes) -> float:
        from functools import partial

        from canao.nas.training.evaluate import torch_accuracy

        return torch_accuracy(partial(self.net, genes), self.data, self.batch)


def predicted_latency(predictor, space, target_spec=None, seq_len: Optional[int] = None):
    """genes -> predicted ms. The MLP needs only the genes; the fusion-aware predictor needs the
    compiled plan, so each new architecture is compiled once (the search caches the result)."""
    from .predictor import ArchMLP, arch_features

    if isinstance(predictor, ArchMLP):
        return lambda g: predictor.predict_features([arch_features(g, space.count(g))])[0]

    from canao.codegen import resolve_target

    from .kernels import kernel_table
    from .latency_dataset import _calls_guess
    from .measure import compile_subnet

    target_spec = target_spec or resolve_target("x86")

    def fusion(g):
        _, compiled, _ = compile_subnet(space, g, target_spec, seq_len or space.config["model"].get("seq_len", 128))
        kernels = [{**k, "calls": _calls_guess(compiled, n)} for n, k in kernel_table(compiled).items()]
        return predictor.predict_kernels(kernels)
    return fusion


def measure_genes(space, genes, target_spec, seq_len: int) -> float:
    """Re-measure one architecture on the target (trimmed mean, ms)."""
    from .measure import LocalMeasurer, compile_subnet

    imported, compiled, inputs = compile_subnet(space, genes, target_spec, seq_len)
    return LocalMeasurer().measure(compiled, imported, inputs, kernels=False).latency["mean_ms"]


def pareto_front(points):
    """Points (latency, accuracy) not dominated by a faster-and-at-least-as-accurate one."""
    front, best = [], -np.inf
    for lat, acc in sorted(points):
        if acc > best:
            front.append((lat, acc))
            best = acc
    return front
