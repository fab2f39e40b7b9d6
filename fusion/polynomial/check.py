"""Numerical checks of a rewrite: build a module for the local CPU and compare against the original.

Used by the tests and handy when developing a rule: every rewrite must keep the numbers.
"""
from typing import Sequence

import numpy as np


def run_module(mod, args: Sequence[np.ndarray], func: str = "main") -> np.ndarray:
    """Compile ``mod`` for the local CPU with the default Relax pipeline and call ``func(*args)``."""
    import tvm
    from tvm import relax

    exe = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    vm = relax.VirtualMachine(exe, tvm.cpu())
    out = vm[func](*[tvm.runtime.tensor(np.ascontiguousarray(a), tvm.cpu()) for a in args])
    return out.numpy()


def relative_error(reference: np.ndarray, candidate: np.ndarray) -> float:
    """max |a - b| / max(1, max |a|): an error scaled to the magnitude of the values."""
    reference, candidate = np.asarray(reference, "float64"), np.asarray(candidate, "float64")
    if reference.shape != candidate.shape:
        return float("inf")
    both_nan = np.isnan(reference) & np.isnan(candidate)
    same_inf = np.isinf(reference) & (reference == candidate)
    ok = both_nan | same_inf
    if np.any(np.isnan(reference) != np.isnan(candidate)):
        return float("inf")
    diff = np.where(ok, 0.0, np.abs(reference - candidate))
    scale = max(1.0, float(np.max(np.where(ok, 0.0, np.abs(reference)), initial=0.0)))
    return float(np.max(diff, initial=0.0)) / scale


def relax_op_count(mod, func: str = "main") -> int:
    """Relax operator calls in ``func`` (what the rewrite tries to reduce)."""
    from canao import analysis

    return sum(analysis.op_counts(mod, func).values())
