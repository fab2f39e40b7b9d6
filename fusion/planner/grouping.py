"""Grow fusion groups over the kernel graph with the mapping-type table.

Green edges merge first (in topological order), then yellow edges are settled one by one by a
``decide_yellow`` callback (measurement on the target, or a stated default). Every merge keeps
groups convex (no path leaves a group and re-enters it) and keeps at most one GEMM and one
reduction per group, the GEMM upstream of the reduction.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from .graph import KernelGraph
from .mapping import Mapping
from .table import GREEN, YELLOW, decide


@dataclass
class EdgeDecision:
    producer: int
    consumer: int
    colour: str
    reason: str
    fused: bool = False
    measured: Optional[dict] = None


@dataclass
class Grouping:
    graph: KernelGraph
    parent: List[int] = field(default_factory=list)
    members: Dict[int, int] = field(default_factory=dict)  # root -> bitmask

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def kind(self, root: int) -> Mapping:
        return max(self.graph.nodes[i].mapping for i in _bits(self.members[root]))

    def count(self, root: int, mapping: Mapping) -> int:
        return sum(1 for i in _bits(self.members[root]) if self.graph.nodes[i].mapping == mapping)

    def groups(self) -> List[List[int]]:
        return [sorted(_bits(mask)) for root, mask in sorted(self.members.items(), key=lambda kv: _low(kv[1]))]


def _bits(mask: int):
    i = 0
    while mask:
        if mask & 1:
            yield i
        mask >>= 1
        i += 1


def _low(mask: int) -> int:
    return (mask & -mask).bit_length() - 1


def _union_mask(graph: KernelGraph, mask: int, table) -> int:
    out = 0
    for i in _bits(mask):
        out |= table[i]
    return out


def can_merge(g: Grouping, a: int, b: int) -> Optional[str]:
    """None if groups a (upstream) and b can merge, else why not."""
    graph = g.graph
    ma, mb = g.members[a], g.members[b]
    both = ma | mb
    gemms = g.count(a, Mapping.GEMM) + g.count(b, Mapping.GEMM)
    reduces = g.count(a, Mapping.REDUCE) + g.count(b, Mapping.REDUCE)
    if gemms > 1:
        return "would put two GEMMs in one kernel"
    if reduces > 1:
        return "would put two reductions in one kernel"
    if gemms and reduces:
        gemm = next(i for i in _bits(both) if graph.nodes[i].mapping == Mapping.GEMM)
        red = next(i for i in _bits(both) if graph.nodes[i].mapping == Mapping.REDUCE)
        if not (graph.desc[gemm] >> red) & 1:
            return "a reduction would precede the GEMM"
    # convexity: nothing outside both groups lies on a path between them
    down_a, up_b = _union_mask(graph, ma, graph.desc), _union_mask(graph, mb, graph.anc)
    down_b, up_a = _union_mask(graph, mb, graph.desc), _union_mask(graph, ma, graph.anc)
    if (down_a & up_b & ~both) or (down_b & up_a & ~both):
        return "not convex: a path leaves the group and re-enters it"
    return None


def plan_groups(graph: KernelGraph, decide_yellow: Callable[[Grouping, int, int, EdgeDecision], bool]):
    """Return (Grouping, [EdgeDecision]) for ``graph``."""
    n = len(graph.nodes)
    g = Grouping(graph, list(range(n)), {i: 1 << i for i in range(n)})
    decisions: Dict[tuple, EdgeDecision] = {}

    def attempt(colour_wanted: str) -> bool:
        changed = False
        for p, c in graph.edges():
            a, b = g.find(p), g.find(c)
            if a == b:
                continue
            colour, reason = decide(g.kind(a), g.kind(b))
            edge = decisions.setdefault((p, c), EdgeDecision(p, c, colour, reason))
            edge.colour, edge.reason = colour, reason
            if colour != colour_wanted:
                continue
            blocked = can_merge(g, a, b)
            if blocked:
                edge.reason = f"{reason}; not fused: {blocked}"
                continue
            if colour == YELLOW and not decide_yellow(g, a, b, edge):
                edge.reason += "; kept apart" + (" (measured faster apart)" if edge.measured else "")
                continue
            g.parent[b] = a
            g.members[a] |= g.members.pop(b)
            changed = True
        return changed

    for _ in range(8):  # green to a fixed point, then settle yellows; repeat while anything merges
        while attempt(GREEN):
            pass
        if not attempt(YELLOW):
            break
    for (p, c), edge in decisions.items():
        edge.fused = g.find(p) == g.find(c)
    for p, c in graph.edges():
        if (p, c) not in decisions:
            colour, reason = decide(graph.nodes[p].mapping, graph.nodes[c].mapping)
            decisions[(p, c)] = EdgeDecision(p, c, colour, reason, fused=g.find(p) == g.find(c))
    return g, [decisions[k] for k in sorted(decisions, key=lambda k: (k[1], k[0]))]
