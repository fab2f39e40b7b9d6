"""LP-Fusion: CANAO's lightweight polynomial-based layer fusion, as Relax passes.

    from canao.fusion import LPRewrite, LPFuse, LPFusion
    seq = tvm.transform.Sequential([LPFusion(target), ...])   # or LPRewrite() before relax.get_pipeline

Importing this package registers both halves in the canao build pipeline (codegen.pipeline slots
"rewrite" and "fuse"); the fusion plan of each build lands in ``options["reports"]["fusion"]``.
"""
from canao.codegen import pipeline as _pipeline

from .lp_fusion import YELLOW_MODES, LPFuse, LPFusion, LPRewrite
from .plan import FusionPlan
from .rewrites import RewriteRecord

__all__ = ["LPRewrite", "LPFuse", "LPFusion", "FusionPlan", "RewriteRecord", "YELLOW_MODES"]


def _records(options):
    reports = options.setdefault("reports", {})
    return reports.setdefault("_rewrite_records", [])


def _rewrite_stage(target, options):
    if options.get("fusion") is False:
        return None
    # Off by default: measured on MiniLM (x86, default schedules, interleaved) the merged Q/K/V GEMM
    # with its split + head-transpose epilogue ran ~1.2 ms slower per inference than three GEMMs.
    return LPRewrite(_records(options), merge_parallel=options.get("merge_parallel_matmul", False),
                     finite_weights=options.get("finite_weights", True))


def _fuse_stage(target, options):
    if options.get("fusion") is False:
        return None
    plan = FusionPlan()
    reports = options.setdefault("reports", {})
    records = _records(options)

    @__import__("tvm").transform.module_pass(opt_level=0, name="LPFuse+report")
    def _pass(mod, _ctx):
        fuse = LPFuse(target, options.get("yellow", "measure"), plan,
                      schedule_pass=_pipeline._slot_pass("schedule", target, dict(options, fusion_measurement=True)))
        out = fuse(mod)
        plan.rewrites = [r.to_json() for r in records]
        reports["fusion"] = plan.to_json()
        return out

    return _pass


_pipeline.register_stage("rewrite", "lp-rewrite", _rewrite_stage)
_pipeline.register_stage("fuse", "lp-fuse", _fuse_stage)
