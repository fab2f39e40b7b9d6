"""LP-Fusion: CANAO's lightweight polynomial-based layer fusion, as Relax passes.

    from canao.fusion import LPRewrite, LPFuse, LPFusion
    seq = tvm.transform.Sequential([LPFusion(target), ...])   # or LPRewrite() before relax.get_pipeline

Importing this package registers both halves in the canao build pipeline (codegen.pipeline slots
"rewrite" and "fuse"), reading ``codegen.options.BuildOptions``; the fusion plan of each build is
returned in ``CompiledModel.reports["fusion"]``.
"""
from canao.codegen import pipeline as _pipeline

from .lp_fusion import YELLOW_MODES, LPFuse, LPFusion, LPRewrite
from .plan import FusionPlan
from .rewrites import RewriteRecord

__all__ = ["LPRewrite", "LPFuse", "LPFusion", "FusionPlan", "RewriteRecord", "YELLOW_MODES"]


def _rewrite_stage(target, options):
    if not options.fusion:
        return None
    # merge_parallel_matmul is off by default: measured on MiniLM (x86, default schedules,
    # interleaved) the merged Q/K/V GEMM with its split + head-transpose epilogue ran ~1.2 ms
    # slower per inference than three GEMMs. finite_weights None (a stage used outside build()):
    # assumed, as LPRewrite does.
    return LPRewrite(_pipeline.stage_reports().rewrite_records, merge_parallel=options.merge_parallel_matmul,
                     finite_weights=options.finite_weights is not False)


def _fuse_stage(target, options):
    if not options.fusion:
        return None
    plan = FusionPlan()
    sink = _pipeline.stage_reports()  # the build's, taken now: the pass may run later

    @__import__("tvm").transform.module_pass(opt_level=0, name="LPFuse+report")
    def _pass(mod, _ctx):
        # yellow edges are measured with the schedules this build applies (and cached under them)
        fuse = LPFuse(target, options.yellow, plan, schedule_pass=_pipeline._slot_pass("schedule", target, options),
                      attention=options.fuse_attention)
        out = fuse(mod)
        plan.rewrites = [r.to_json() for r in sink.rewrite_records]
        sink.reports["fusion"] = plan.to_json()
        return out

    return _pass


_pipeline.register_stage("rewrite", "lp-rewrite", _rewrite_stage)
_pipeline.register_stage("fuse", "lp-fuse", _fuse_stage)
