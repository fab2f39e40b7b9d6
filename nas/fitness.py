"""Fitness and latency callables for the search: dev accuracy of the inherited SubTransformer, and
predicted latency from a trained predictor."""
import json
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
    from .measurer import compile_subnet

    target_spec = target_spec or resolve_target("x86")

    def fusion(g):
        _, compiled, _ = compile_subnet(space, g, target_spec, seq_len or space.config["model"].get("seq_len", 128))
        return predictor.predict_kernels(list(kernel_table(compiled).values()))
    return fusion


def measure_genes(space, genes, target_spec, seq_len: int, allow_busy: bool = False, measurer=None) -> dict:
    """Re-measure one architecture on the target through the measurement core: the latency row
    (``mean_ms`` = trimmed mean, plus reference time, load, tries, flagged). ``measurer``: the
    search's device measurer (``--rpc/--tracker``), else this CPU's."""
    from .measurer import LocalMeasurer, compile_subnet

    imported, compiled, inputs = compile_subnet(space, genes, target_spec, seq_len)
    measurer = measurer or LocalMeasurer(allow_busy=allow_busy)
    return measurer.measure(compiled, imported, inputs, kernels=False).latency


def measured_winner(candidates, limit_ms: float, measure, max_checks: int = 8) -> dict:
    """The fittest candidate whose *measured* latency is within ``limit_ms``.

    ``candidates``: dicts with ``genes``, ``fitness`` and the predicted ``latency_ms``; ``measure(genes)``
    returns a latency row (``mean_ms``). Candidates are tried in decreasing fitness (distinct genes,
    predicted within the limit first), each measured once, until one measures within the limit or
    ``max_checks`` were measured. The predictor only guides: the limit holds on the measured figure.
    Returns {"winner": candidate + "measured" row, or None when none of the checked ones fits,
    "checked": every measured candidate with its row}."""
    seen, ordered = set(), []
    for c in sorted(candidates, key=lambda c: (c["latency_ms"] > limit_ms, -c["fitness"])):
        key = json.dumps(c["genes"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            ordered.append(c)
    checked = []
    for c in ordered[:max_checks]:
        row = measure(c["genes"])
        checked.append({**c, "measured": row})
        if row["mean_ms"] <= limit_ms:
            return {"winner": checked[-1], "checked": checked}
    return {"winner": None, "checked": checked}


def pareto_front(points):
    """Points (latency, accuracy) not dominated by a faster-and-at-least-as-accurate one."""
    front, best = [], -np.inf
    for lat, acc in sorted(points):
        if acc > best:
            front.append((lat, acc))
            best = acc
    return front
