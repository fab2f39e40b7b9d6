"""The Relax pipeline as named stages, so a build can be inspected after each one.

``stock`` is TVM's own default pipeline for the target, split where it fuses; ``canao`` is the
toolkit's: weight transforms lifted out of the hot path, and (as later stages land) LP-Fusion's
rewrite and fusion plan in place of FuseOps.
"""
from typing import Callable, Dict, List, Tuple

PIPELINES = ("stock", "canao")

# Extra stages other packages contribute to the canao pipeline: name -> factory(target) -> Pass.
# canao.fusion registers its rewrite and fusion stages here (see register_stage), so codegen
# never imports fusion and the dependency arrow stays fuse -> build.
_CANAO_STAGES: Dict[str, Callable] = {}


def register_stage(slot: str, factory: Callable) -> None:
    """Plug a stage into the canao pipeline. Slots: "rewrite" (Relax ops), "fuse" (after legalize),
    "schedule" (after fusion, on PrimFuncs)."""
    if slot not in ("rewrite", "fuse", "schedule"):
        raise ValueError(f"unknown pipeline slot {slot}")
    _CANAO_STAGES[slot] = factory


def _backend(target):
    """The stock backend module for this target kind, dispatched as relax.get_pipeline does."""
    import importlib

    kind = target.kind.name
    if kind == "llvm":
        name = "cpu_generic"
    elif kind in ("cuda", "rocm"):
        name = kind
    elif kind == "opencl" and "adreno" in target.keys:
        name = "adreno"
    else:
        name = "gpu_generic"
    return importlib.import_module(f"tvm.relax.backend.{name}.pipeline")


def _split_at_fuse(passes):
    names = [p.info.name for p in passes]
    i = names.index("FuseOps") if "FuseOps" in names else len(passes)
    return passes[:i], passes[i:]


def rewrite_stage(pipeline: str, target):
    """The graph-level rewrite run before weights are lifted (None for stock or when none is registered).

    It runs apart from stages() because its constant folding must happen before LiftTransformParams
    moves weight-only work out of main.
    """
    if pipeline == "canao" and "rewrite" in _CANAO_STAGES:
        return _CANAO_STAGES["rewrite"](target)
    return None


def stages(pipeline: str, target) -> List[Tuple[str, "object"]]:
    """[(stage name, tvm.transform.Pass)] for ``pipeline`` on ``target``; run in order under target."""
    import tvm

    if pipeline not in PIPELINES:
        from canao.errors import CanaoError

        raise CanaoError(f"unknown pipeline '{pipeline}'", f"use one of {', '.join(PIPELINES)}")
    backend = _backend(target)
    with target:  # some backends read the current target while listing their passes
        before_fuse, fuse_and_after = _split_at_fuse(backend.legalize_passes(target))
        dispatch = backend.library_dispatch_passes(target)
        lower_passes = backend.dataflow_lower_passes(target) + backend.finalize_passes(target)
    seq = tvm.transform.Sequential
    lower = seq(lower_passes)
    if pipeline == "stock":
        return [
            ("legalize", seq(dispatch + before_fuse)),
            ("fuse", seq(fuse_and_after)),
            ("lower", lower),
        ]
    out = []
    out.append(("legalize", seq(dispatch + before_fuse)))
    if "fuse" in _CANAO_STAGES:
        out.append(("lp-fuse", _CANAO_STAGES["fuse"](target)))
        # what stock fusion does after FuseOps/FuseTIR (e.g. GPU schedules) still applies
        out.append(("post-fuse", seq([p for p in fuse_and_after if p.info.name not in ("FuseOps", "FuseTIR")])))
    else:
        out.append(("fuse", seq(fuse_and_after)))
    if "schedule" in _CANAO_STAGES:
        out.append(("schedule", _CANAO_STAGES["schedule"](target)))
    out.append(("lower", lower))
    return out
