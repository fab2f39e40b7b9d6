"""The kernel graph of a legalized Relax function: one node per call_tir, edges from its inputs.

Grouping only ever puts kernels (call_tir bindings) together, but a group must be convex on the
*real* dependency graph, which also runs through bindings that are not kernels: Relax operators
that legalization left alone (``relax.cumsum`` is dispatched later by the stock pipeline), tuples,
packed calls, aliases of tuple fields. Every binding of the dataflow block is therefore a vertex
of the reachability masks: kernels are vertices ``0 .. n-1`` (``nodes``), the other bindings follow
as vertices ``n ..`` (``others``). Aliases of a kernel's output (``y = x`` or ``y = x[i]``) are
folded into that kernel's vertex, because the outliner moves them together with it.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import tvm
from tvm import relax, tirx

from .mapping import Mapping, classify

_CALL_TIR = ("relax.call_tir", "relax.call_tir_inplace")


@dataclass
class Node:
    index: int
    var: relax.Var
    value: relax.Call
    func_name: str
    mapping: Mapping
    inputs: List[int] = field(default_factory=list)  # producer node indices (deduplicated, ordered)
    consumers: List[int] = field(default_factory=list)
    output_bytes: int = 0
    costly: bool = False  # an element-wise kernel whose body calls transcendental functions (GELU's erf)


@dataclass
class Other:
    """A binding that is not a kernel (never grouped, but paths through it count)."""

    index: int  # vertex index (>= number of kernels)
    var: relax.Var
    what: str  # short description for the plan ("relax.cumsum", "Tuple", ...)


def _bytes(ty) -> int:
    if isinstance(ty, relax.TensorType) and ty.shape is not None:
        n = 1
        try:
            for d in ty.shape:
                n *= int(d)
        except TypeError:
            return 0
        return n * tvm.DataType(ty.dtype).bits // 8
    if isinstance(ty, relax.TupleType):
        return sum(_bytes(f) for f in ty.fields)
    return 0


def _describe(value) -> str:
    if isinstance(value, relax.Call):
        if isinstance(value.op, tvm.ir.Op):
            return value.op.name
        if isinstance(value.op, tvm.ir.GlobalVar):
            return f"call {value.op.name_hint}"
        return "call"
    return type(value).__name__


def _is_kernel(value) -> bool:
    return isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) and value.op.name in _CALL_TIR


class KernelGraph:
    """Kernels in binding order (a topological order), with reachability for convexity checks.

    ``desc[v]`` / ``anc[v]`` are bitmasks over *all* vertices (kernels and other bindings) that
    ``v`` reaches / is reached from, so a path through a non-kernel binding is never missed.
    """

    def __init__(self, mod: tvm.IRModule, func: relax.Function):
        self.mod = mod
        self.func = func
        self.nodes: List[Node] = []
        self.others: List[Other] = []
        self.block: Optional[relax.DataflowBlock] = None
        self.node_of_var: Dict[relax.Var, int] = {}
        self.alias: Dict[relax.Var, int] = {}  # TupleGetItem / Var aliases -> the node producing the value
        self.vertex_of_var: Dict[relax.Var, int] = {}
        self.desc: List[int] = []
        self.anc: List[int] = []
        self.succ: List[int] = []
        self.block_outputs: set = set()
        self.skipped: Optional[str] = None  # why this function is left to stock fusion
        blocks = [b for b in func.body.blocks if isinstance(b, relax.DataflowBlock)]
        if len(blocks) != 1:
            self.skipped = f"{len(blocks)} dataflow blocks (LP-Fusion plans functions with exactly one)"
            return
        self.block = blocks[0]
        bindings = list(self.block.bindings)
        # pass 1: kernels get vertices 0..n-1, in binding order
        kinds: Dict[str, Mapping] = {}  # a PrimFunc called by many layers is classified once
        costly: Dict[str, bool] = {}
        for binding in bindings:
            value = binding.value
            if _is_kernel(value):
                gv = value.args[0]
                if gv.name_hint not in kinds:
                    callee = mod[gv]
                    kinds[gv.name_hint] = (classify(callee, gv.name_hint) if isinstance(callee, tirx.PrimFunc)
                                           else Mapping.OPAQUE)
                mapping = kinds[gv.name_hint]
                if gv.name_hint not in costly:
                    costly[gv.name_hint] = mapping == Mapping.ONE_TO_ONE and _computes_costly(mod[gv])
                node = Node(len(self.nodes), binding.var, value, gv.name_hint, mapping,
                            output_bytes=_bytes(binding.var.ty), costly=costly[gv.name_hint])
                self.node_of_var[binding.var] = node.index
                self.vertex_of_var[binding.var] = node.index
                self.nodes.append(node)
        n = len(self.nodes)
        # pass 2: aliases of kernel outputs join their kernel; anything else is its own vertex
        reads: Dict[int, List[int]] = {}
        for binding in bindings:
            value = binding.value
            if binding.var in self.node_of_var:
                continue
            source = None
            if isinstance(value, relax.TupleGetItem) and isinstance(value.tuple_value, relax.Var):
                source = value.tuple_value
            elif isinstance(value, relax.Var):
                source = value
            if source is not None and source in self.alias:
                self.alias[binding.var] = self.alias[source]
            elif source is not None and source in self.node_of_var:
                self.alias[binding.var] = self.node_of_var[source]
            if binding.var in self.alias:
                self.vertex_of_var[binding.var] = self.alias[binding.var]
                continue
            other = Other(n + len(self.others), binding.var, _describe(value))
            self.others.append(other)
            self.vertex_of_var[binding.var] = other.index
        # edges between vertices, from every variable a binding reads (any expression kind)
        total = n + len(self.others)
        preds: List[set] = [set() for _ in range(total)]
        for binding in bindings:
            v = self.vertex_of_var[binding.var]
            for var in relax.analysis.free_vars(binding.value):
                u = self.vertex_of_var.get(var)
                if u is not None and u != v:
                    preds[v].add(u)
        for node in self.nodes:
            # kernel -> kernel edges (fusion candidates): direct reads, through aliases
            for arg in _args(node.value):
                producer = self._producer(arg)
                if producer is not None and producer != node.index and producer not in node.inputs:
                    node.inputs.append(producer)
            for p in node.inputs:
                self.nodes[p].consumers.append(node.index)
        self.vertex_inputs = [sorted(p) for p in preds]
        # reachability in binding order: every read comes after its definition in a dataflow block
        seen, topo = set(), []
        for binding in bindings:
            v = self.vertex_of_var[binding.var]
            if v not in seen:
                seen.add(v)
                topo.append(v)
        self.anc = [0] * total
        for v in topo:
            mask = 0
            for u in preds[v]:
                mask |= (1 << u) | self.anc[u]
            self.anc[v] = mask
        succs: List[List[int]] = [[] for _ in range(total)]
        for v in range(total):
            for u in preds[v]:
                succs[u].append(v)
        self.succ = [sum(1 << c for c in set(cs)) for cs in succs]  # direct readers, as bitmasks
        # vertices whose value leaves the dataflow block (the function's results)
        self.block_outputs = {self.vertex_of_var[b.var] for b in bindings if not isinstance(b.var, relax.DataflowVar)}
        self.desc = [0] * total
        for v in reversed(topo):
            mask = 0
            for c in succs[v]:
                mask |= (1 << c) | self.desc[c]
            self.desc[v] = mask

    @property
    def num_vertices(self) -> int:
        return len(self.nodes) + len(self.others)

    def is_block_output(self, v: int) -> bool:
        return v in self.block_outputs

    def _producer(self, expr) -> Optional[int]:
        if isinstance(expr, relax.Var):
            if expr in self.node_of_var:
                return self.node_of_var[expr]
            return self.alias.get(expr)
        return None

    def edges(self):
        """Kernel -> kernel edges (the fusion candidates), consumers in binding order."""
        for node in self.nodes:
            for p in node.inputs:
                yield p, node.index

    def describe_vertex(self, v: int) -> str:
        if v < len(self.nodes):
            return f"{self.nodes[v].func_name} ({self.nodes[v].var.name})"
        other = self.others[v - len(self.nodes)]
        return f"{other.what} ({other.var.name})"


def _computes_costly(func) -> bool:
    """Whether a PrimFunc has a block the schedules would not recompute freely (calls, long
    polynomials: ``codegen.schedules.rules.common.is_costly``)."""
    from tvm import s_tir

    from canao.codegen.schedules.rules.common import is_costly, root_blocks

    try:
        sch = s_tir.Schedule(func)
        return any(is_costly(sch.get(b)) for b in root_blocks(sch))
    except Exception:  # noqa: BLE001 - a function the schedule cannot read counts as cheap
        return False


def _args(call: relax.Call):
    """The tensor arguments of a call_tir (a Tuple, or a single var)."""
    args = call.args[1]
    return list(args.fields) if isinstance(args, relax.Tuple) else [args]
