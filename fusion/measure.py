"""Settle a yellow edge the CANAO way: build both versions of the two groups for the target, time
them, keep the faster. Measurements are cached on disk by structural hash, so identical layers
(and later builds) pay once."""
import json
import os
from pathlib import Path
from typing import List

import numpy as np
import tvm
import tvm_ffi
from tvm import relax

from canao.atomic import write_json

from .planner.graph import KernelGraph
from .planner.outline import _reads, _substitute, outline_groups


def cache_path() -> Path:
    root = Path(os.environ.get("CANAO_CACHE", Path.home() / ".cache" / "canao"))
    return root / "fusion-measurements.json"


def _load_cache() -> dict:
    try:
        return json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _submodule(graph: KernelGraph, nodes: List[int]) -> tvm.IRModule:
    """A module whose main computes just ``nodes`` (in order) from their external inputs."""
    bindings = [b for b in graph.block.bindings]
    index_of = {b.var: i for i, b in enumerate(bindings)}
    wanted = set(index_of[graph.nodes[n].var] for n in nodes)
    for var, producer in graph.alias.items():
        if producer in nodes and isinstance(bindings[index_of[var]].value, relax.TupleGetItem):
            wanted.add(index_of[var])
    members = [bindings[i] for i in sorted(wanted)]
    member_vars = {b.var for b in members}
    inputs = []
    for b in members:
        for r in _reads(b.value):
            if isinstance(r, relax.Var) and r not in member_vars and not any(r.same_as(x) for x in inputs):
                inputs.append(r)
    outputs = [b.var for b in members if not any(b.var.same_as(r) for m in members for r in _reads(m.value))]
    # start from the kernels only: the model's own main must not come along
    kernels = tvm.IRModule({gv: f for gv, f in graph.mod.functions.items() if not isinstance(f, relax.Function)})
    bb = relax.BlockBuilder(kernels)
    params = [relax.Var(f"in{i}", x.ty) for i, x in enumerate(inputs)]
    remap = dict(zip(inputs, params))
    with bb.function("main", params):
        with bb.dataflow():
            for b in members:
                remap[b.var] = bb.emit(_substitute(b.value, remap), name_hint=b.var.name)
            out = bb.emit_output(relax.Tuple([remap[v] for v in outputs]))
        bb.emit_func_output(out)
    mod = bb.get()
    return relax.transform.DeadCodeElimination(["main"])(mod)


def _time_module(mod: tvm.IRModule, target, schedule_pass) -> float:
    mod = relax.transform.FuseTIR()(mod)
    if schedule_pass is not None:
        with target:
            mod = schedule_pass(mod)
    exe = tvm.compile(mod, target=target)
    dev = tvm.cpu()
    vm = relax.VirtualMachine(exe, dev)
    rng = np.random.default_rng(0)
    args = []
    for p in mod["main"].params:
        shape = [int(d) for d in p.ty.shape]
        dtype = str(p.ty.dtype)
        data = rng.standard_normal(shape).astype(dtype) if "float" in dtype else np.zeros(shape, dtype=dtype)
        args.append(tvm.runtime.tensor(data, dev))
    timer = vm.time_evaluator("main", dev, number=5, repeat=5, min_repeat_ms=20)
    return float(np.min(timer(*args).results) * 1e3)


def measure_fusion(graph: KernelGraph, group_a: List[int], group_b: List[int], target, schedule_pass=None) -> dict:
    """{"fused_ms", "split_ms"} for the two groups built fused vs as two kernels (cached)."""
    nodes = sorted(group_a + group_b)
    sub = _submodule(graph, nodes)
    sub_graph = KernelGraph(sub, sub["main"])
    # the submodule binds exactly these kernels, in the same order, so node k there is nodes[k]
    assert len(sub_graph.nodes) == len(nodes), (len(sub_graph.nodes), len(nodes), sub["main"].script()[:3000])
    local = {n: k for k, n in enumerate(nodes)}
    a_local = sorted(local[n] for n in group_a)
    b_local = sorted(local[n] for n in group_b)
    key = f"{tvm_ffi.structural_hash(sub)}|{len(a_local)}|{target}"
    cache = _load_cache()
    if key in cache:
        return dict(cache[key], cached=True)
    fused = outline_groups(sub, sub_graph, [sorted(a_local + b_local)], ["fused_candidate"])
    split = outline_groups(sub, sub_graph, [a_local, b_local], ["split_a", "split_b"])
    result = {"fused_ms": _time_module(fused, target, schedule_pass),
              "split_ms": _time_module(split, target, schedule_pass)}
    cache = _load_cache()
    cache[key] = result
    write_json(cache_path(), cache)
    return dict(result, cached=False)
