"""Grow fusion groups over the kernel graph with the mapping-type table.

Green edges merge first (in topological order), then yellow edges are settled one by one by a
``decide_yellow`` callback (measurement on the target, or a stated default). Every merge keeps
groups convex (no path leaves a group and re-enters it) and keeps at most one GEMM and one
reduction per group, the GEMM upstream of the reduction.

Convexity is checked on the *current* quotient graph (groups contracted), over every binding of
the block, kernel or not: two groups that are each convex in the original graph can still reach
each other in both directions once contracted (a1 -> b1 and b2 -> a2), so reachability is kept per
group and updated on every merge. A merge that would create a cycle is never made, so the plan is
acyclic by construction; ``cyclic_groups`` re-checks a finished plan independently.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from .kernel_graph import KernelGraph
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
    # root -> bitmask of the vertices the group reaches / is reached from in the quotient graph
    down: Dict[int, int] = field(default_factory=dict)
    up: Dict[int, int] = field(default_factory=dict)

    def __post_init__(self):
        if not self.parent:
            n = len(self.graph.nodes)
            self.parent = list(range(n))
            self.members = {i: 1 << i for i in range(n)}
        if not self.down or not self.up:
            self.down, self.up = _quotient_reach(self.graph, self.members)

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

    def merge(self, a: int, b: int) -> None:
        """Merge group b into group a, keeping the quotient reachability exact (call can_merge first)."""
        m = self.members[a] | self.members[b]
        down = (self.down.pop(b) | self.down[a]) & ~m
        up = (self.up.pop(b) | self.up[a]) & ~m
        self.parent[b] = a
        self.members[a] = m
        del self.members[b]
        self.down[a], self.up[a] = down, up
        # a group that reached a or b now reaches everything the merged group reaches (and back)
        for r in self.members:
            if r == a:
                continue
            if self.down[r] & m:
                self.down[r] |= m | down
            if self.up[r] & m:
                self.up[r] |= m | up


def _quotient_reach(graph: KernelGraph, members: Dict[int, int]):
    """Reachability between groups (and the vertices outside any group) of an arbitrary grouping."""
    down = {r: _union_mask(graph, m, graph.desc) & ~m for r, m in members.items()}
    up = {r: _union_mask(graph, m, graph.anc) & ~m for r, m in members.items()}
    changed = any(m & (m - 1) for m in members.values())  # all singletons: the graph's own reachability
    while changed:  # close over jumps inside groups: reaching one member reaches the whole group
        changed = False
        for r in members:
            for s, ms in members.items():
                if s != r and down[r] & ms and (down[r] | ms | down[s]) != down[r]:
                    down[r] |= ms | down[s]
                    changed = True
                if s != r and up[r] & ms and (up[r] | ms | up[s]) != up[r]:
                    up[r] |= ms | up[s]
                    changed = True
    return down, up


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
    # convexity on the quotient graph: no vertex outside both groups (a kernel, a group, or a
    # binding that is not a kernel) lies on a path from one to the other
    if (g.down[a] & g.up[b] & ~both) or (g.down[b] & g.up[a] & ~both):
        return "not convex: a path leaves the group and re-enters it"
    if len(group_outputs(graph, both)) > 1:
        return "would make a multi-output kernel: a member's result is also read outside the group"
    return None


def group_outputs(graph: KernelGraph, mask: int) -> List[int]:
    """Members of the vertex set ``mask`` whose value is read outside it (or leaves the block).

    Groups keep to one such member, as TVM's FuseOps does: when a producer's result is read
    elsewhere too it is written to memory anyway, so fusing a consumer saves no traffic, and the
    kernel then writes two results (a reshape fused that way turns a free view into a copy) and
    no longer has the single anchor our schedule rules tile (measured on MiniLM: LayerNorm with
    its reshape fused ran single-threaded, 4x slower than alone).
    """
    outputs = []
    for v in _bits(mask):
        if v < len(graph.nodes) and graph.is_block_output(v):
            outputs.append(v)
        elif graph.succ[v] & ~mask:
            outputs.append(v)
    return outputs


def cyclic_groups(graph: KernelGraph, groups: List[List[int]]) -> List[int]:
    """Indices of the groups that lie on a cycle of the quotient graph (empty for a valid plan).

    Independent of the incremental bookkeeping above: contracts every group and looks for
    strongly connected components over all vertices of the block (kernels and other bindings).
    """
    unit = list(range(graph.num_vertices))
    for gid, group in enumerate(groups):
        for i in group:
            unit[i] = -1 - gid
    succ: Dict[int, set] = {u: set() for u in set(unit)}
    for v, preds in enumerate(graph.vertex_inputs):
        for p in preds:
            if unit[p] != unit[v]:
                succ[unit[p]].add(unit[v])
    on_cycle = set()
    for component in _sccs(succ):
        if len(component) > 1:
            on_cycle.update(component)
    return sorted(-1 - u for u in on_cycle if u < 0)


def _sccs(succ: Dict[int, set]):
    """Tarjan's strongly connected components, iteratively (graphs have thousands of vertices)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in succ:
        if root in index:
            continue
        work = [(root, iter(succ[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(succ[w])))
                    advanced = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                out.append(component)
    return out


def plan_groups(graph: KernelGraph, decide_yellow: Callable[[Grouping, int, int, EdgeDecision], bool]):
    """Return (Grouping, [EdgeDecision]) for ``graph``."""
    g = Grouping(graph)
    decisions: Dict[tuple, EdgeDecision] = {}

    def attempt(colour_wanted: str) -> bool:
        changed = False
        for p, c in graph.edges():
            a, b = g.find(p), g.find(c)
            if a == b:
                continue
            colour, reason = decide(g.kind(a), g.kind(b))
            if colour == GREEN and g.kind(a) == Mapping.GEMM and any(graph.nodes[i].costly for i in _bits(g.members[b])):
                # measured on MiniLM (Zen 3, same schedules): FFN-up with GELU in the GEMM's tile
                # epilogue ran slower than the GEMM + bias and a separate GELU kernel
                colour, reason = YELLOW, "costly element-wise epilogue of a GEMM (e.g. GELU's erf), computed per register tile"
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
            g.merge(a, b)
            changed = True
        return changed

    for _ in range(8):  # green to a fixed point, then settle yellows; repeat while anything merges
        while attempt(GREEN):
            pass
        if not attempt(YELLOW):
            break
    for (p, c), edge in decisions.items():
        edge.fused = g.find(p) == g.find(c)
        if edge.fused and "not fused" in edge.reason:  # refused once, joined later through other edges
            edge.reason = decide(graph.nodes[p].mapping, graph.nodes[c].mapping)[1] + "; fused through the group"
    for p, c in graph.edges():
        if (p, c) not in decisions:
            colour, reason = decide(graph.nodes[p].mapping, graph.nodes[c].mapping)
            decisions[(p, c)] = EdgeDecision(p, c, colour, reason, fused=g.find(p) == g.find(c))
    return g, [decisions[k] for k in sorted(decisions, key=lambda k: (k[1], k[0]))]
