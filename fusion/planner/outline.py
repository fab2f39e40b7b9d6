"""Turn planned groups into Relax functions marked Primitive, which TVM's FuseTIR then merges into
one PrimFunc each: the same hand-off stock FuseOps makes, with CANAO's grouping instead."""
from typing import Dict, List

import tvm
from tvm import relax

from .kernel_graph import KernelGraph


def _substitute(expr, remap: Dict[relax.Var, relax.Expr]):
    if isinstance(expr, relax.Var):
        return remap.get(expr, expr)
    if isinstance(expr, relax.Tuple):
        return relax.Tuple([_substitute(f, remap) for f in expr.fields])
    if isinstance(expr, relax.TupleGetItem):
        return relax.TupleGetItem(_substitute(expr.tuple_value, remap), expr.index)
    if isinstance(expr, relax.Call):
        return relax.Call(expr.op, [_substitute(a, remap) for a in expr.args], expr.attrs, expr.ty_args)
    return expr


def _reads(expr) -> List[relax.Expr]:
    """Vars and constants an expression reads (in order, deduplicated)."""
    out = []

    def walk(e):
        if isinstance(e, (relax.Var, tvm.ir.Constant)):
            if not any(e.same_as(o) for o in out):
                out.append(e)
        elif isinstance(e, relax.Tuple):
            for f in e.fields:
                walk(f)
        elif isinstance(e, relax.TupleGetItem):
            walk(e.tuple_value)
        elif isinstance(e, relax.Call):
            for a in e.args:
                if not isinstance(a, tvm.ir.GlobalVar):
                    walk(a)

    walk(expr)
    return out


def outline_groups(mod: tvm.IRModule, graph: KernelGraph, groups: List[List[int]], names: List[str]) -> tvm.IRModule:
    """Replace each multi-node group of ``graph`` (in main) by a call of a new Primitive function."""
    block = graph.block
    bindings = list(block.bindings)
    index_of = {b.var: i for i, b in enumerate(bindings)}
    unit_of: Dict[int, int] = {}  # binding index -> unit id (a group id, or -1 - binding index)
    group_bindings: Dict[int, List[int]] = {}
    members_set = [set(g) for g in groups]
    for gid, group in enumerate(groups):
        if len(group) < 2:
            continue
        idxs = set()
        for n in group:
            idxs.add(index_of[graph.nodes[n].var])
        # aliases of grouped kernels' outputs (tuple fields of multi-output kernels, var copies)
        # travel with their group: the planner counted them as part of the kernel
        for var, producer in graph.alias.items():
            if producer in members_set[gid]:
                idxs.add(index_of[var])
        group_bindings[gid] = sorted(idxs)
        for i in idxs:
            unit_of[i] = gid
    if not group_bindings:
        return mod
    defined_in = {b.var: unit_of.get(i, -1 - i) for i, b in enumerate(bindings)}
    readers = _readers(bindings, block, graph.func)
    bb = relax.BlockBuilder(mod)
    new_units = {}  # unit id -> list of new bindings for main
    for gid, idxs in group_bindings.items():
        members = [bindings[i] for i in idxs]
        member_vars = {b.var for b in members}
        inputs = []
        for b in members:
            for r in _reads(b.value):
                if r in member_vars if isinstance(r, relax.Var) else False:
                    continue
                if not any(r.same_as(x) for x in inputs):
                    inputs.append(r)
        inside = set(idxs)
        used_outside = [b.var for b in members if any(r not in inside for r in readers.get(b.var, ()))]
        if not used_outside:  # pragma: no cover - a group whose results nobody reads
            used_outside = [members[-1].var]
        params = [relax.Var(f"p{i}", x.ty) for i, x in enumerate(inputs)]
        remap = {x: p for x, p in zip(inputs, params) if isinstance(x, relax.Var)}
        const_remap = [(x, p) for x, p in zip(inputs, params) if not isinstance(x, relax.Var)]
        with bb.function(names[gid], params, attrs={"Primitive": True}, private=True):
            with bb.dataflow():
                for b in members:
                    value = _substitute(b.value, remap)
                    value = _replace_constants(value, const_remap)
                    remap[b.var] = bb.emit(value, name_hint=b.var.name)
                outs = [remap[v] for v in used_outside]
                result = bb.emit_output(outs[0] if len(outs) == 1 else relax.Tuple(outs))
            gv = bb.emit_func_output(result)
        call = relax.Call(gv, inputs)
        if len(used_outside) == 1:
            new_units[gid] = [relax.VarBinding(used_outside[0], call)]
        else:
            tup = relax.DataflowVar(f"{names[gid]}_out", relax.TupleType([v.ty for v in used_outside]))
            new_units[gid] = [relax.VarBinding(tup, call)] + [
                relax.VarBinding(v, relax.TupleGetItem(tup, k)) for k, v in enumerate(used_outside)]
    new_mod = bb.get()
    ordered = _topological(bindings, unit_of, new_units, defined_in)
    new_block = relax.DataflowBlock(ordered)
    body = graph.func.body
    blocks = [new_block if b.same_as(block) else b for b in body.blocks]
    func = relax.Function(graph.func.params, relax.SeqExpr(blocks, body.body), graph.func.ret_ty, graph.func.is_pure,
                          graph.func.attrs)
    gv_main = new_mod.get_global_var("main")
    new_mod[gv_main] = func
    return new_mod


def _replace_constants(value, pairs):
    if not pairs:
        return value
    if isinstance(value, tvm.ir.Constant):
        for c, p in pairs:
            if c.same_as(value):
                return p
        return value
    if isinstance(value, relax.Tuple):
        return relax.Tuple([_replace_constants(f, pairs) for f in value.fields])
    if isinstance(value, relax.Call):
        return relax.Call(value.op, [_replace_constants(a, pairs) for a in value.args], value.attrs, value.ty_args)
    return value


def _readers(bindings, block, func) -> Dict[relax.Var, set]:
    """var -> indices of the block's bindings reading it; -1 for any read outside the block (later
    blocks, non-dataflow bindings, the function's result)."""
    out: Dict[relax.Var, set] = {}
    for i, b in enumerate(bindings):
        for v in relax.analysis.free_vars(b.value):
            out.setdefault(v, set()).add(i)
    for other in func.body.blocks:
        if other.same_as(block):
            continue
        for b in other.bindings:
            for v in relax.analysis.free_vars(b.value):
                out.setdefault(v, set()).add(-1)
    for v in relax.analysis.free_vars(func.body.body):
        out.setdefault(v, set()).add(-1)
    return out


def _topological(bindings, unit_of, new_units, defined_in):
    """Emit units (kept bindings, or whole groups) so every read comes after its definition,
    keeping the original order wherever possible."""
    units = []  # (first original index, unit id)
    seen = set()
    for i in range(len(bindings)):
        u = unit_of.get(i, -1 - i)
        if u not in seen:
            seen.add(u)
            units.append(u)
    deps = {}
    for u in units:
        idxs = [i for i in range(len(bindings)) if unit_of.get(i, -1 - i) == u]
        need = set()
        for i in idxs:
            for r in relax.analysis.free_vars(bindings[i].value):
                if r in defined_in and defined_in[r] != u:
                    need.add(defined_in[r])
        deps[u] = need
    done, out, pending = set(), [], list(units)
    while pending:
        for k, u in enumerate(pending):
            if deps[u] <= done:
                break
        else:  # the planner never emits this (see grouping.cyclic_groups); LPFuse catches it anyway
            raise RuntimeError("fusion groups form a cycle")
        pending.pop(k)
        done.add(u)
        out.extend(new_units[u] if u in new_units else [bindings[-1 - u]])
    return out
