"""Settle a yellow edge the CANAO way: build both versions of the two groups for the target, time
them through the measurement core (``canao.measure``), keep the faster. Measurements are cached
on disk under a key of everything that changes the measured code (``cache_key``), so identical
layers (and later builds with the same schedules) pay once."""
import json
import os
from pathlib import Path
from typing import List, Optional

import numpy as np
import tvm
import tvm_ffi
from tvm import relax

from canao.atomic import write_json

from .planner.kernel_graph import KernelGraph
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


def _executable(mod: tvm.IRModule, target, schedule_pass):
    """(VM function, its arguments) for a candidate module, scheduled as the build would."""
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
    return vm, args


def _timer(vm, args):
    """One sample per call: the mean ms of a few runs (TVM's time evaluator, >= 20 ms per sample)."""
    evaluator = vm.time_evaluator("main", tvm.cpu(), number=5, repeat=1, min_repeat_ms=20)

    def run():
        return float(np.mean(evaluator(*args).results) * 1e3)

    run.reports_ms = True
    return run


def cache_key(sub: tvm.IRModule, n_first, target, schedule_pass) -> Optional[str]:
    """Everything that changes the code measured: the submodule, the split point, the target, the
    schedules it was measured with (``codegen.pipeline.pass_identity``: stage sources, options,
    the tuning database's content), TVM's and CANAO's versions and the measurement method.
    None for a schedule pass of unknown provenance: such a measurement is not cached."""
    import canao
    from canao.codegen.pipeline import pass_identity
    from canao.measure import MEASURE_VERSION

    schedules = pass_identity(schedule_pass)
    if schedules is None:
        return None
    return "|".join([str(tvm_ffi.structural_hash(sub)), str(n_first), str(target), f"schedules={schedules}",
                     f"tvm={tvm.__version__}", f"canao={canao.__version__}", f"measure={MEASURE_VERSION}"])


def _describe(graph: KernelGraph, group_a: List[int], group_b: List[int]) -> str:
    def names(group):
        return "+".join(graph.nodes[n].func_name for n in group)

    return f"{names(group_a)} | {names(group_b)}"


def measure_fusion(graph: KernelGraph, group_a: List[int], group_b: List[int], target, schedule_pass=None,
                   rounds: int = 5, split_parts: Optional[List[List[int]]] = None) -> dict:
    """{"fused_ms", "split_ms"} (best of ``rounds`` interleaved rounds, through the measurement
    core), their medians and ratios to the reference, and the noise record, for the two groups
    built fused vs as two kernels (cached, see :func:`cache_key`). ``split_parts``: the kernels the
    split side really is when that is more than two (an attention chain planned as three groups).

    A candidate that fails to build or run is recorded (``canao.measure.report``: a
    CanaoWarning and the build report) and the error re-raised for the planner to decide without
    it; a failed planner assertion is recorded as such and re-raised unchanged."""
    from canao.measure import measure
    from canao.measure.report import FUSION_MEASUREMENT, PLANNER_ASSERTION, context, record

    edge = _describe(graph, group_a, group_b)
    try:
        nodes = sorted(group_a + group_b)
        sub = _submodule(graph, nodes)
        sub_graph = KernelGraph(sub, sub["main"])
        # the submodule binds exactly these kernels, in the same order, so node k there is nodes[k]
        assert len(sub_graph.nodes) == len(nodes), (len(sub_graph.nodes), len(nodes), sub["main"].script()[:3000])
        local = {n: k for k, n in enumerate(nodes)}
        a_local = sorted(local[n] for n in group_a)
        b_local = sorted(local[n] for n in group_b)
        parts = [sorted(local[n] for n in part) for part in (split_parts or [group_a, group_b])]
        assert sorted(n for part in parts for n in part) == sorted(a_local + b_local), "split parts must cover the groups"
        key = cache_key(sub, len(a_local) if split_parts is None else tuple(len(p) for p in parts), target,
                        schedule_pass)
        cache = _load_cache()
        if key is not None and key in cache:
            return dict(cache[key], cached=True)
        fused = outline_groups(sub, sub_graph, [sorted(a_local + b_local)], ["fused_candidate"])
        split = outline_groups(sub, sub_graph, parts, [f"split_{i}" for i in range(len(parts))])
    except AssertionError as exc:
        record(PLANNER_ASSERTION, edge, exc)
        raise
    try:
        with context(f"fusion measurement of {edge}"):
            fused_fn = _timer(*_executable(fused, target, schedule_pass))
            split_fn = _timer(*_executable(split, target, schedule_pass))
            row = measure({"fused": fused_fn, "split": split_fn}, rounds, warmup=1)
    except AssertionError as exc:
        record(PLANNER_ASSERTION, edge, exc)
        raise
    except Exception as exc:
        record(FUSION_MEASUREMENT, edge, exc)
        raise
    result = {"fused_ms": row.best_ms("fused"), "split_ms": row.best_ms("split"),
              "fused_median_ms": row.median_ms("fused"), "split_median_ms": row.median_ms("split"),
              "fused_ratio": row.ratio("fused"), "split_ratio": row.ratio("split"), "noise": row.noise()}
    if key is not None and not row.flagged:  # a noisy decision is taken, but measured again next build
        cache = _load_cache()
        cache[key] = result
        write_json(cache_path(), cache)
    return dict(result, cached=False)
