"""The Relax pipeline as named stages, so a build can be inspected after each one.

``stock`` is TVM's own default pipeline for the target, split where it fuses; ``canao`` is the
toolkit's: weight transforms lifted out of the hot path, and (as later stages land) LP-Fusion's
rewrite and fusion plan in place of FuseOps.
"""
import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

from .options import BuildOptions

PIPELINES = ("stock", "canao")

SLOTS = ("rewrite", "fuse", "schedule")

# Stages other packages contribute to the canao pipeline: slot -> [(order, name, factory)].
# A factory is called as factory(target, options: BuildOptions) and returns a tvm.transform.Pass,
# or None to sit this build out; what it reports goes to stage_reports(), never into the options.
# canao.fusion and canao.codegen.schedules register themselves on import (PLUGINS below), so this
# module never imports them and the arrow stays fuse -> build.
_CANAO_STAGES: Dict[str, List[Tuple[int, str, Callable]]] = {slot: [] for slot in SLOTS}
PLUGINS = ("canao.fusion", "canao.fusion.quantize", "canao.codegen.tuning", "canao.codegen.schedules",
           "canao.codegen.schedules.int8", "canao.codegen.gpu")
# TVM's GPU backends schedule right after fusion; in the canao pipeline that belongs to the
# schedule slot (tuning database first, then DLight rules kernel by kernel), so it is dropped here.
_SCHEDULING_PASSES = ("FuseOps", "FuseTIR", "ApplyDefaultSchedule")


@dataclass
class StageReports:
    """What the stages of one build report, returned as ``CompiledModel.reports`` (e.g. "fusion":
    the LP-Fusion plan, "quantize": what was quantized), and the rewrite records the rewrite
    stages leave for the fuse stage's plan."""
    reports: Dict[str, dict] = field(default_factory=dict)
    rewrite_records: list = field(default_factory=list)


_STAGE_REPORTS: "contextvars.ContextVar[StageReports | None]" = contextvars.ContextVar("canao_stage_reports",
                                                                                     default=None)


@contextlib.contextmanager
def collecting_stage_reports():
    """Collect what the stages made inside the block report (build() opens one per build)."""
    sink = StageReports()
    token = _STAGE_REPORTS.set(sink)
    try:
        yield sink
    finally:
        _STAGE_REPORTS.reset(token)


def stage_reports() -> StageReports:
    """The report sink of the build in progress; a throwaway one for a stage used on its own."""
    sink = _STAGE_REPORTS.get()
    return sink if sink is not None else StageReports()


def register_stage(slot: str, name: str, factory: Callable, order: int = 50) -> None:
    """Plug a stage into the canao pipeline.

    Slots: "rewrite" (graph algebra on Relax ops, before weights are lifted), "fuse" (replaces
    FuseOps/FuseTIR, after legalization), "schedule" (on fused PrimFuncs, lower ``order`` first:
    a tuning database before default schedules). Re-registering a name replaces it.
    """
    if slot not in SLOTS:
        raise ValueError(f"unknown pipeline slot {slot}; use one of {SLOTS}")
    entries = [e for e in _CANAO_STAGES[slot] if e[1] != name]
    entries.append((order, name, factory))
    _CANAO_STAGES[slot] = sorted(entries, key=lambda e: (e[0], e[1]))


def _load_plugins() -> None:
    import importlib

    for module in PLUGINS:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # the plugin exists but something it needs is missing
                raise


def _slot_pass(slot: str, target, options=None):
    """The passes registered in ``slot`` for this build, as one Sequential (None if none apply).
    ``options``: BuildOptions (a dict is converted).

    The Sequential carries ``canao_fingerprint``: a hash of what changes the code the slot
    produces (each stage's name and its factory's fingerprint — the stage's source, the options
    it reads, a tuning database's content), read back by :func:`pass_identity`."""
    import tvm

    _load_plugins()
    options = BuildOptions.coerce(options)
    passes, parts = [], []
    for _, name, factory in _CANAO_STAGES[slot]:
        p = factory(target, options)
        if p is not None:
            passes.append(p)
            parts.append(f"{name}={factory_fingerprint(factory, target, options)}")
    if not passes:
        return None
    seq = tvm.transform.Sequential(passes)
    seq.canao_fingerprint = _digest("|".join([slot, str(target)] + parts))
    return seq


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:20]


def source_fingerprint(*paths) -> str:
    """A hash of the Python sources under ``paths`` (files or folders): code that changes them
    changes the kernels a stage produces."""
    import hashlib
    from pathlib import Path

    h = hashlib.sha256()
    for root in paths:
        root = Path(root)
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for f in files:
            try:
                h.update(f.name.encode() + b"\0" + f.read_bytes())
            except OSError:
                h.update(f"{f}:missing".encode())
    return h.hexdigest()[:20]


def factory_fingerprint(factory, target, options=None) -> str:
    """A stage factory's own ``fingerprint(target, options)`` when it has one; otherwise the hash
    of its module's source and of every option (conservative: more cache misses, never a wrong hit)."""
    import inspect
    import sys

    options = BuildOptions.coerce(options)
    own = getattr(factory, "fingerprint", None)
    if own is not None:
        return str(own(target, options))
    module = sys.modules.get(getattr(factory, "__module__", ""), None)
    try:
        src = source_fingerprint(inspect.getsourcefile(module)) if module is not None else "?"
    except TypeError:
        src = "?"
    return _digest(f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', '?')}|{src}|"
                   f"{options.fingerprint_items()}")


def pass_identity(schedule_pass) -> "str | None":
    """What a pass is, for cache keys: "none" for no pass, the fingerprint of a slot pass made by
    this module, None for a pass of unknown provenance (do not cache what it measured)."""
    if schedule_pass is None:
        return "none"
    return getattr(schedule_pass, "canao_fingerprint", None)


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


# Schedule-slot stages ordered below this rewrite kernel bodies (e.g. vectorisable erf/exp) rather
# than schedule them; tuning extracts its tasks after them, so tuned and default kernels compute
# the same thing and a database applies to the kernels the build actually has.
PRELUDE_ORDER = 10


def schedule_prelude(target, options=None):
    """The schedule-slot stages ordered before PRELUDE_ORDER, as one pass (None if none apply)."""
    import tvm

    _load_plugins()
    options = BuildOptions.coerce(options)
    entries = [f(target, options) for order, _, f in _CANAO_STAGES["schedule"] if order < PRELUDE_ORDER]
    passes = [p for p in entries if p is not None]
    return tvm.transform.Sequential(passes) if passes else None


def rewrite_stage(pipeline: str, target, options=None):
    """The graph-level rewrite run before weights are lifted (None for stock or when none is registered).

    It runs apart from stages() because its constant folding must happen before LiftTransformParams
    moves weight-only work out of main.
    """
    if pipeline != "canao":
        return None
    return _slot_pass("rewrite", target, options)


def stages(pipeline: str, target, options=None) -> List[Tuple[str, "object"]]:
    """[(stage name, tvm.transform.Pass)] for ``pipeline`` on ``target``; run in order under target.
    ``options``: BuildOptions (a dict is converted)."""
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
    options = BuildOptions.coerce(options)
    out = [("legalize", seq(dispatch + before_fuse))]
    fuse = _slot_pass("fuse", target, options)
    if fuse is not None:
        out.append(("lp-fuse", fuse))
        # what stock fusion does after FuseOps/FuseTIR (e.g. GPU schedules) still applies
        rest = [p for p in fuse_and_after if p.info.name not in _SCHEDULING_PASSES]
        if rest:
            out.append(("post-fuse", seq(rest)))
    else:
        out.append(("fuse", seq([p for p in fuse_and_after if p.info.name != "ApplyDefaultSchedule"])))
    schedule = _slot_pass("schedule", target, options)
    if schedule is not None:
        out.append(("schedule", schedule))
    out.append(("lower", lower))
    return out
