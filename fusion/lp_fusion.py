"""LP-Fusion as TVM passes: ``LPRewrite`` (algebra on Relax operators) and ``LPFuse`` (the
mapping-type fusion plan in place of FuseOps + FuseTIR). Both take and return an IRModule, so
they drop into any ``tvm.transform.Sequential``."""
import platform
from typing import List, Optional

import tvm
from tvm import relax

from canao import analysis

from .plan import FusionPlan
from .planner import KernelGraph, Mapping, plan_groups
from .planner.attention import merge_attention
from .planner.grouping import _bits, cyclic_groups
from .planner.outline import outline_groups
from .rewrites import ALGEBRA_RULES, RewriteRecord, rule_pass

YELLOW_MODES = ("measure", "default", "fuse", "split")


def _cleanup():
    return [relax.transform.CanonicalizeBindings(), relax.transform.EliminateCommonSubexpr(),
            relax.transform.DeadCodeElimination(["main"])]


def LPRewrite(records: Optional[List[RewriteRecord]] = None, merge_parallel: bool = True,
              finite_weights: bool = True) -> tvm.transform.Pass:
    """The algebraic half of LP-Fusion, on Relax operators (run it before legalization).

    Canonicalize (CSE so parallel branches share inputs, matmul first in bias adds), fold scalar
    scales into weights, drop identity broadcasts and redundant reshapes, hoist the safe-softmax
    mask test out of the layers, then merge parallel matmuls (Q/K/V) into one. Weight-only
    results are left for LiftTransformParams to compute once at compile time.

    ``finite_weights``: the weights (params after ``num_input``) hold no +-inf or NaN, which the
    polynomial simplifier's guarded rules may then rely on. The build checks the real weights and
    passes False when one is not finite; a caller without weights at hand vouches for them.
    """
    records = records if records is not None else []
    passes = [relax.transform.CanonicalizeBindings(), relax.transform.EliminateCommonSubexpr()]
    for rule in ALGEBRA_RULES:
        passes += [rule_pass(rule(), records), relax.transform.CanonicalizeBindings()]
    passes += [_polynomial_pass(records, finite_weights), relax.transform.CanonicalizeBindings(), relax.transform.RemoveRedundantReshape()]
    if merge_parallel:
        passes.append(_combine_parallel_matmul(records))
    passes += _cleanup()
    return tvm.transform.Sequential(passes, name="LPRewrite")


def _combine_parallel_matmul(records):
    @tvm.transform.module_pass(opt_level=0, name="LPFusion.merge-parallel-matmul")
    def _pass(mod, _ctx):
        before = analysis.op_counts(mod).get("relax.matmul", 0)
        out = relax.transform.CombineParallelMatmul()(mod)
        after = analysis.op_counts(out).get("relax.matmul", 0)
        if after < before:
            records.append(RewriteRecord("merge-parallel-matmul", "x@Wq + bq, x@Wk + bk, x@Wv + bv",
                                         "split(x@[Wq|Wk|Wv] + [bq|bk|bv])", before - after))
        return out

    return _pass


def _polynomial_pass(records, finite_weights: bool = True):
    """The element-wise polynomial simplifier (canao.fusion.polynomial: an e-graph over each
    element-wise DAG), its rewrites added to the fusion plan's records."""
    from .polynomial import PolynomialSimplify, RewriteLog

    @tvm.transform.module_pass(opt_level=0, name="LPFusion.polynomial")
    def _pass(mod, _ctx):
        log = RewriteLog()
        out = PolynomialSimplify(log=log, finite_weights=finite_weights)(mod)
        for r in log.records:
            records.append(RewriteRecord("polynomial", "; ".join(r.before), "; ".join(r.after), 1,
                                         {"cost_before": r.cost_before.to_json(), "cost_after": r.cost_after.to_json()}))
        return out

    return _pass


def _runs_here(target) -> bool:
    if target is None or target.kind.name != "llvm":
        return False
    triple = str(target.attrs.get("mtriple", "")) if hasattr(target, "attrs") else ""
    return not triple or triple.startswith(platform.machine())


def _default_yellow(producer: Mapping, consumer: Mapping) -> bool:
    """Unmeasured policy: fuse element-wise prologues into reductions (residual add + LayerNorm:
    one read instead of write + read); keep layout changes and reductions out of GEMMs."""
    return consumer == Mapping.REDUCE and producer in (Mapping.ONE_TO_ONE, Mapping.ONE_TO_MANY)


class LPFuse:
    """The fusion half: plan groups with DNNFusion's table on the legalized module, outline them,
    FuseTIR. ``yellow`` settles legal-but-uncertain fusions: "measure" (build both versions on
    the target, keep the faster; needs the target to run here), "default" (the stated policy),
    "fuse" or "split" (all yellow edges one way)."""

    def __init__(self, target=None, yellow: str = "measure", plan: Optional[FusionPlan] = None, schedule_pass=None,
                 attention: bool = True):
        if yellow not in YELLOW_MODES:
            raise ValueError(f"yellow must be one of {YELLOW_MODES}")
        self.target, self.yellow, self.schedule_pass = target, yellow, schedule_pass
        self.attention = attention
        self.plan = plan if plan is not None else FusionPlan()

    def __call__(self, mod: tvm.IRModule) -> tvm.IRModule:
        return self.as_pass()(mod)

    def as_pass(self) -> tvm.transform.Pass:
        @tvm.transform.module_pass(opt_level=0, name="LPFuse")
        def _pass(mod, _ctx):
            return self._run(mod)

        return _pass

    def _decide_yellow(self, graph):
        from .yellow_edges import measure_fusion

        def decide(grouping, a, b, edge, split_roots=None):
            """``split_roots``: the groups the split side is, when a merge joins more than two
            (an attention chain: the roots of a, then b); a is then their union but b's."""
            pa, pb = grouping.kind(a), grouping.kind(b)
            mode = self.yellow
            if mode == "measure" and not _runs_here(self.target):
                mode = "default"
                edge.reason += " (not measured: the target does not run here)"
            if mode == "fuse":
                return True
            if mode == "split":
                return False
            if mode == "default":
                return _default_yellow(pa, pb)
            roots = split_roots or [a, b]
            parts = [sorted(_bits(grouping.members[r])) for r in roots]
            group_a, group_b = sorted(n for part in parts[:-1] for n in part), parts[-1]
            try:
                edge.measured = measure_fusion(graph, group_a, group_b, self.target, self.schedule_pass,
                                               split_parts=parts if len(parts) > 2 else None)
            except Exception as exc:  # noqa: BLE001 - a candidate that fails to build is not chosen
                edge.reason += f" (fused candidate failed to build: {str(exc).splitlines()[0][:120]})"
                return False
            return edge.measured["fused_ms"] <= edge.measured["split_ms"]

        return decide

    def _run(self, mod: tvm.IRModule) -> tvm.IRModule:
        func = mod["main"]
        graph = KernelGraph(mod, func)
        if graph.block is None or not graph.nodes:
            self.plan.unfused = [{"members": [], "reason": graph.skipped or "no kernels to plan",
                                  "fallback": "stock FuseOps + FuseTIR"}]
            return tvm.transform.Sequential([relax.transform.FuseOps(), relax.transform.FuseTIR()])(mod)
        decide = self._decide_yellow(graph)
        grouping, decisions = plan_groups(graph, decide)
        if self.attention:
            merge_attention(grouping, decisions, decide)
        groups = grouping.groups()
        unfused: List[dict] = []
        # independent check of the plan (the planner keeps groups convex on the quotient graph,
        # so this never fires; if it did, the groups on a cycle stay unfused rather than crash)
        cyclic = set(cyclic_groups(graph, groups))
        if cyclic:
            unfused += [{"members": [graph.nodes[i].var.name for i in groups[k]],
                         "reason": "group lies on a cycle of the plan"} for k in sorted(cyclic)]
            groups = _dissolve(groups, cyclic)
        out, groups, failed = self._outline(mod, graph, groups)
        unfused += failed
        names = [_group_name(graph, g) for g in groups]
        self._record(graph, groups, names, decisions, out)
        self.plan.unfused = unfused
        for entry in unfused:  # edges into a dissolved group were not fused after all
            for e in self.plan.edges:
                if e["fused"] and e["producer_var"] in entry["members"] and e["consumer_var"] in entry["members"]:
                    e["fused"] = False
                    e["reason"] += f"; left unfused: {entry['reason']}"
        return out

    def _outline(self, mod, graph, groups):
        """(module, groups kept, [unfused entries]): outline + FuseTIR; the last line of defence
        leaves any group that fails to outline or fuse unfused, with the reason, and never raises
        on a module the planner could read."""
        def attempt(gs):
            names = [_group_name(graph, g) for g in gs]
            out = outline_groups(mod, graph, gs, names)
            out = relax.transform.FuseTIR()(out)
            return relax.transform.DeadCodeElimination(["main"])(out)

        try:
            return attempt(groups), groups, []
        except Exception as whole:  # noqa: BLE001 - isolate the groups at fault below
            first = _first_line(whole)
        failed, unfused = set(), []
        for k, g in enumerate(groups):
            if len(g) < 2:
                continue
            try:
                relax.transform.FuseTIR()(outline_groups(mod, graph, [g], [_group_name(graph, g)]))
            except Exception as exc:  # noqa: BLE001
                failed.add(k)
                unfused.append({"members": [graph.nodes[i].var.name for i in g],
                                "reason": f"outlining failed: {_first_line(exc)}"})
        kept = _dissolve(groups, failed)
        try:
            return attempt(kept), kept, unfused
        except Exception as exc:  # noqa: BLE001 - leave the whole function unfused
            singles = _dissolve(groups, set(range(len(groups))))
            return mod, singles, unfused + [{
                "members": [], "reason": f"outlining the plan failed ({first}; then {_first_line(exc)}): "
                                         "every kernel left unfused"}]

    def _record(self, graph, groups, names, decisions, out):
        plan = self.plan
        plan.target = str(self.target.kind.name) if self.target is not None else ""
        plan.kernels_before = len(graph.nodes)
        plan.kernels_after = len(groups)
        plan.groups = [{
            "name": name if len(g) > 1 else graph.nodes[g[0]].func_name,
            "kind": max(graph.nodes[i].mapping for i in g).label,
            "ops": [graph.nodes[i].func_name for i in g],
            "members": [graph.nodes[i].var.name for i in g],
            "output_bytes": sum(graph.nodes[i].output_bytes for i in g),
        } for name, g in zip(names, groups)]
        plan.edges = [{
            "producer": graph.nodes[d.producer].func_name, "consumer": graph.nodes[d.consumer].func_name,
            "producer_var": graph.nodes[d.producer].var.name, "consumer_var": graph.nodes[d.consumer].var.name,
            "mapping": f"{graph.nodes[d.producer].mapping.label} -> {graph.nodes[d.consumer].mapping.label}",
            "decision": d.colour, "fused": d.fused, "reason": d.reason, "measured": d.measured,
        } for d in decisions]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1][:200] if text else ''}"


def _dissolve(groups, which) -> List[List[int]]:
    """``groups`` with the groups at the indices in ``which`` split into single kernels."""
    out = []
    for k, g in enumerate(groups):
        out.extend([[i] for i in g] if k in which else [g])
    return sorted(out)


def _group_name(graph, group) -> str:
    ops = []
    for i in group:
        base = graph.nodes[i].func_name.rstrip("0123456789_")
        if base not in ops:
            ops.append(base)
    return ("lp_fused_" + "_".join(ops))[:80]


def LPFusion(target=None, yellow: str = "measure", plan: Optional[FusionPlan] = None) -> tvm.transform.Pass:
    """Everything LP-Fusion does, as one pass over an un-legalized Relax module: rewrite, legalize,
    annotate op patterns, plan + fuse. Run the rest of a stock pipeline after it (its FuseOps finds
    nothing left to fuse across LP-Fusion's kernels)."""
    plan = plan if plan is not None else FusionPlan()
    records: List[RewriteRecord] = []

    @tvm.transform.module_pass(opt_level=0, name="LPFusion")
    def _pass(mod, _ctx):
        tgt = target or tvm.target.Target.current(allow_none=True)
        mod = LPRewrite(records)(mod)
        mod = tvm.transform.Sequential([relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
                                        relax.transform.FoldConstant()])(mod)
        mod = LPFuse(tgt, yellow, plan)(mod)
        plan.rewrites = [r.to_json() for r in records]
        return mod

    return _pass
