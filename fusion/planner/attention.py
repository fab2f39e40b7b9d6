"""Attention groups: the scores GEMM + softmax kernel merged with the P·V GEMM that reads it.

The mapping-type table keeps one GEMM per kernel, and for good reason in general: two GEMMs in one
loop nest cannot both be register-tiled. Attention is the exception fused attention kernels
(FlashAttention, ONNX Runtime's Attention contrib op) make: per head and row block the score tile
is consumed by P·V at once, so the [heads, S, S] probabilities are never written to memory and read
back. The merge is proposed as a yellow edge after the table's plan is settled and decided like any
other (measured on the target by default); ``canao.codegen.schedules.rules.attention`` is the
schedule that makes the merged kernel fast.

Preconditions (anything else stays as planned):
- group B holds one GEMM and no reduction, and its GEMM reads the output of group S;
- S holds exactly one reduction (the softmax) and either the scores GEMM upstream of it, or no GEMM
  and reads the output of group A, which holds one GEMM and no reduction (the planner may have
  measured scores and softmax faster apart: the attention kernel is then a 3-group merge);
- every group but B has one output, read only inside the merged set;
- the merged set is convex on the quotient graph (checked as for every merge).
"""
from typing import Callable, List, Optional, Tuple

from .grouping import EdgeDecision, Grouping, _bits, group_outputs
from .mapping import Mapping
from .table import YELLOW

REASON = "attention: scores + softmax and P·V in one kernel (the probabilities stay in cache)"


def _members(g: Grouping, root: int, mapping: Mapping) -> List[int]:
    return [i for i in _bits(g.members[root]) if g.graph.nodes[i].mapping == mapping]


def _single_reader_group(g: Grouping, root: int) -> Optional[int]:
    """The one group that reads ``root``'s one output (None if several, or the block's output)."""
    graph = g.graph
    outputs = group_outputs(graph, g.members[root])
    if len(outputs) != 1 or graph.is_block_output(outputs[0]):
        return None
    readers = list(_bits(graph.succ[outputs[0]]))
    if not readers or any(r >= len(graph.nodes) for r in readers):
        return None
    groups = {g.find(r) for r in readers}
    return groups.pop() if len(groups) == 1 and root not in groups else None


def attention_chains(g: Grouping) -> List[List[int]]:
    """[A, S, B] or [S, B] (group roots, upstream first) for every chain meeting the preconditions."""
    graph = g.graph
    chains = []
    for s in list(g.members):
        gemms, reduces = _members(g, s, Mapping.GEMM), _members(g, s, Mapping.REDUCE)
        if len(reduces) != 1 or len(gemms) > 1:
            continue
        b = _single_reader_group(g, s)
        if b is None or len(_members(g, b, Mapping.GEMM)) != 1 or _members(g, b, Mapping.REDUCE):
            continue
        pv = _members(g, b, Mapping.GEMM)[0]
        if not any(g.find(p) == s for p in graph.nodes[pv].inputs):
            continue
        if gemms:
            if (graph.desc[gemms[0]] >> reduces[0]) & 1:
                chains.append([s, b])
            continue
        producers = {g.find(p) for n in _bits(g.members[s]) for p in graph.nodes[n].inputs} - {s}
        scores = [a for a in producers if len(_members(g, a, Mapping.GEMM)) == 1 and not _members(g, a, Mapping.REDUCE)
                  and _single_reader_group(g, a) == s]
        if len(scores) == 1:
            chains.append([scores[0], s, b])
    return chains


def _convex(g: Grouping, roots: List[int]) -> bool:
    union = 0
    for r in roots:
        union |= g.members[r]
    return all(not (g.down[x] & g.up[y] & ~union) for x in roots for y in roots if x != y)


def merge_attention(g: Grouping, decisions: List[EdgeDecision], decide_yellow: Callable) -> int:
    """Propose every attention chain as one yellow decision; merge those ``decide_yellow`` accepts
    (called as ``decide_yellow(g, first, last, edge, split_roots)``). The decision of the edge into
    the P·V GEMM (already recorded, refused by the table) is updated in place. Returns the number
    of merges."""
    merged = 0
    for chain in attention_chains(g):
        chain = [g.find(r) for r in chain]
        pv = _members(g, chain[-1], Mapping.GEMM)[0]
        producer = next(p for p in g.graph.nodes[pv].inputs if g.find(p) == chain[-2])
        edge = _edge(decisions, producer, pv)
        edge.colour, edge.reason, edge.measured = YELLOW, REASON, None
        union = 0
        for r in chain:
            union |= g.members[r]
        if not _convex(g, chain) or len(group_outputs(g.graph, union)) > 1:
            edge.reason += "; not fused: the merged kernel would not be convex or would have two outputs"
            continue
        if not decide_yellow(g, chain[0], chain[-1], edge, chain):
            edge.reason += "; kept apart" + (" (measured faster apart)" if edge.measured else "")
            continue
        for r in chain[1:]:
            g.merge(chain[0], r)
        edge.fused = True
        merged += 1
    return merged


def _edge(decisions: List[EdgeDecision], producer: int, consumer: int) -> EdgeDecision:
    found: Optional[EdgeDecision] = next((d for d in decisions if (d.producer, d.consumer) == (producer, consumer)), None)
    if found is None:
        found = EdgeDecision(producer, consumer, YELLOW, REASON)
        decisions.append(found)
    return found
