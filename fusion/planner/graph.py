"""The kernel graph of a legalized Relax function: one node per call_tir, edges from its inputs."""
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


class KernelGraph:
    """Nodes in binding order (a topological order), with reachability for convexity checks."""

    def __init__(self, mod: tvm.IRModule, func: relax.Function):
        self.mod = mod
        self.func = func
        self.nodes: List[Node] = []
        self.block: Optional[relax.DataflowBlock] = None
        self.node_of_var: Dict[relax.Var, int] = {}
        self.alias: Dict[relax.Var, int] = {}  # TupleGetItem vars -> the node producing the tuple
        blocks = [b for b in func.body.blocks if isinstance(b, relax.DataflowBlock)]
        if len(blocks) != 1:
            return  # control flow or no dataflow: leave the function to stock fusion
        self.block = blocks[0]
        for binding in self.block.bindings:
            value = binding.value
            if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) and value.op.name in _CALL_TIR:
                gv = value.args[0]
                callee = mod[gv]
                mapping = classify(callee, gv.name_hint) if isinstance(callee, tirx.PrimFunc) else Mapping.OPAQUE
                node = Node(len(self.nodes), binding.var, value, gv.name_hint, mapping,
                            output_bytes=_bytes(binding.var.ty))
                for arg in value.args[1].fields:
                    producer = self._producer(arg)
                    if producer is not None and producer not in node.inputs:
                        node.inputs.append(producer)
                self.node_of_var[binding.var] = node.index
                self.nodes.append(node)
            elif isinstance(value, relax.TupleGetItem):
                producer = self._producer(value.tuple_value)
                if producer is not None:
                    self.alias[binding.var] = producer
            elif isinstance(value, relax.Var):
                producer = self._producer(value)
                if producer is not None:
                    self.alias[binding.var] = producer
        for node in self.nodes:
            for p in node.inputs:
                self.nodes[p].consumers.append(node.index)
        n = len(self.nodes)
        self.desc = [0] * n  # bitmask of nodes reachable from i (excluding i)
        for node in reversed(self.nodes):
            mask = 0
            for c in node.consumers:
                mask |= (1 << c) | self.desc[c]
            self.desc[node.index] = mask
        self.anc = [0] * n
        for node in self.nodes:
            mask = 0
            for p in node.inputs:
                mask |= (1 << p) | self.anc[p]
            self.anc[node.index] = mask

    def _producer(self, expr) -> Optional[int]:
        if isinstance(expr, relax.Var):
            if expr in self.node_of_var:
                return self.node_of_var[expr]
            return self.alias.get(expr)
        return None

    def edges(self):
        for node in self.nodes:
            for p in node.inputs:
                yield p, node.index
