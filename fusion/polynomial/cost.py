"""The cost model: FLOPs plus bytes of materialised intermediates, broadcast-aware.

Every op costs per element of its *broadcast output*, so a constant of shape [384] is ~128x cheaper
to touch than a [1, 128, 384] activation. Ops whose inputs are all compile-time (weights and
constants) cost almost nothing: ``LiftTransformParams`` / ``FoldConstant`` run them once off the hot
path; a tiny per-op charge still prefers fewer of them.
"""
from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Tuple

from .term import Term, walk

# Relative per-element cost of one op (an add = 1). Division, roots and transcendental functions
# take several multiply-adds (or a long-latency unit) on CPUs and GPUs alike.
OP_FLOPS = {"add": 1, "sub": 1, "mul": 1, "neg": 1, "where": 1,
            "div": 4, "recip": 4, "sqrt": 4, "rsqrt": 4, "exp": 8, "erf": 16, "tanh": 16, "pow": 16}
BYTE_WEIGHT = 0.25  # one float32 written (4 bytes) costs as much as one add
STATIC_OP_COST = 1e-3  # a compile-time op: negligible, but fewer is still better
BROADCAST_FLOPS = 0  # broadcast_to copies: bytes only


@dataclass(frozen=True)
class LeafInfo:
    """What the engine knows about a leaf: its shape, dtype, whether it is compile-time, a name."""
    shape: Tuple[int, ...]
    dtype: str
    static: bool
    name: str


def broadcast(*shapes: Tuple[int, ...]) -> Tuple[int, ...]:
    """numpy broadcasting of static shapes."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(ndim):
        dims = {s[len(s) - ndim + i] for s in shapes if len(s) - ndim + i >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise ValueError(f"shapes {shapes} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def numel(shape: Tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def op_cost(op: str, shape: Tuple[int, ...], itemsize: int, static: bool) -> float:
    """Cost of one op producing ``shape``: FLOPs + weighted bytes written (or the compile-time charge)."""
    if static:
        return STATIC_OP_COST
    n = numel(shape)
    return n * OP_FLOPS[op] + BYTE_WEIGHT * n * itemsize


@dataclass
class Cost:
    """Runtime work of an expression DAG: what the rewrite records report before and after."""
    flops: int = 0
    bytes: int = 0  # bytes of runtime intermediates written, if every op were its own kernel
    ops: int = 0  # runtime element-wise ops
    static_ops: int = 0  # compile-time ops (hoisted out of the hot path)

    @property
    def score(self) -> float:
        return self.flops + BYTE_WEIGHT * self.bytes + STATIC_OP_COST * self.static_ops

    def to_json(self):
        return {"flops": self.flops, "bytes": self.bytes, "ops": self.ops, "static_ops": self.static_ops,
                "score": round(self.score, 3)}


class Shapes:
    """Shape and compile-time-ness of terms, memoised, given the leaves' info."""

    def __init__(self, leaves: Dict[str, LeafInfo]):
        self.leaves = leaves
        self._memo: Dict[Term, Tuple[Tuple[int, ...], bool]] = {}

    def of(self, t: Term) -> Tuple[Tuple[int, ...], bool]:
        hit = self._memo.get(t)
        if hit is not None:
            return hit
        if t.op == "leaf":
            info = self.leaves[t.value]
            res = (tuple(info.shape), info.static)
        elif t.op == "num":
            res = ((), True)
        else:
            kids = [self.of(a) for a in t.args]
            res = (broadcast(*(k[0] for k in kids)), all(k[1] for k in kids))
        self._memo[t] = res
        return res


def dag_cost(roots: Iterable[Tuple[Term, Tuple[int, ...]]], shapes: Shapes, itemsize: int,
             free: Optional[set] = None) -> Cost:
    """Cost of computing every (term, required output shape) in ``roots``, sharing common nodes.

    Nodes in ``free`` are already computed elsewhere (shared with an earlier chain) and cost nothing.
    A root whose natural broadcast shape is smaller than required pays for a broadcast_to copy.
    """
    roots = list(roots)
    free = free or set()
    cost = Cost()
    for t in walk([r for r, _ in roots]):
        if t.op in ("leaf", "num") or t in free:
            continue
        shape, static = shapes.of(t)
        if static:
            cost.static_ops += 1
            continue
        n = numel(shape)
        cost.flops += n * OP_FLOPS[t.op]
        cost.bytes += n * itemsize
        cost.ops += 1
    for t, required in roots:
        shape, static = shapes.of(t)
        if tuple(shape) != tuple(required) and not static:
            cost.bytes += numel(required) * itemsize
            cost.ops += 1
    return cost
