"""Fitness and latency callables for the search: dev accuracy of the inherited SubTransformer, and
predicted latency from a trained predictor."""
from typing import Optional

import numpy as np


class DevAccuracy:
    """Accuracy on (a seeded subset of) the RT dev split, supernet weights inherited (no training)."""

    def __init__(self, space, seq_len: int = 64, limit: Optional[int] = None, batch: int = 64, supernet=None):
        import torch

        from canao.nas.data_split import split_rows
        from canao.text import tokenize
        from canao.zoo import minilm_dir

        texts, labels = split_rows("dev", limit=limit)
        enc = tokenize(str(minilm_dir()), texts, seq_len, ["input_ids", "attention_mask"])
        self.ids, self.mask = torch.tensor(enc["input_ids"]), torch.tensor(enc["attention_mask"])
        self.labels = torch.tensor(labels)
        self.net = (supernet or space.supernet()).eval()
        self.batch = batch

    def __call__(self, genes) -> float:
        import torch

        correct = 0
        with torch.no_grad():
            for i in range(0, len(self.labels), self.batch):
                logits = self.net(genes, input_ids=self.ids[i:i + self.batch], attention_mask=self.mask[i:i + self.batch])
                correct += int((logits.argmax(-1) == self.labels[i:i + self.batch]).sum())
        return correct / len(self.labels)


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
