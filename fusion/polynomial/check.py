"""Deprecated: moved to tests/polynomial_check.py (only tests use these helpers).

Kept, unchanged, only because tests/test_polynomial_models.py still imports it from here; delete this
file once that test imports ``polynomial_check`` instead. New code must not use it.
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
    return out.numpy() if hasattr(out, "numpy") else [o.numpy() for o in out]


def relative_error(reference, candidate) -> float:
    """max |a - b| / max(1, max |a|): an error scaled to the magnitude of the values (lists: the worst)."""
    if isinstance(reference, (list, tuple)):
        if len(reference) != len(candidate):
            return float("inf")
        return max((relative_error(a, b) for a, b in zip(reference, candidate)), default=0.0)
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


def runtime_elementwise_flops(mod, func: str = "main") -> int:
    """FLOPs of the element-wise ops left in ``func`` after weight-only work is lifted out of it.

    Measured on the Relax module itself (op names and output shapes), independently of the engine's
    own cost bookkeeping, so a test can check that a rewrite never makes the hot path dearer.
    """
    import tvm
    from tvm import relax

    from .cost import OP_FLOPS, numel
    from .graph import BINARY, UNARY, static_shape

    names = dict(BINARY, **UNARY, **{"relax.power": "pow", "relax.where": "where"})
    lifted = relax.transform.LiftTransformParams()(mod)
    total = [0]

    def visit(e):
        if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op) and e.op.name in names:
            shape = static_shape(e.ty)
            if shape is not None:
                total[0] += numel(shape) * OP_FLOPS[names[e.op.name]]

    relax.analysis.post_order_visit(lifted[func].body, visit)
    return total[0]
