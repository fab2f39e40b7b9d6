"""Build: an ImportedModel -> a compiled Relax VM executable + the weights it takes, for one target.

Weight-only computation (constants folded into weights by LP-Fusion, layout changes) is lifted by
``LiftTransformParams`` into ``main_transform_params``, run once here on the host, and the
results are what ships: the device never redoes compile-time work.
"""
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from canao import analysis
from canao.errors import CanaoError

from . import pipeline as pipelines
from .options import BuildOptions
from .targets import TargetSpec, check_cross_compiler


@dataclass
class StageStats:
    name: str
    ops: Dict[str, int]
    kernels: int
    seconds: float

    def to_json(self):
        return {"stage": self.name, "relax_ops": sum(self.ops.values()), "kernels": self.kernels,
                "ops": self.ops, "seconds": round(self.seconds, 3)}


@dataclass
class CompiledModel:
    executable: "object"  # tvm.runtime.Executable
    params: List[np.ndarray]  # what main() takes after the inputs
    target: TargetSpec
    pipeline: str
    stages: List[StageStats] = field(default_factory=list)
    kernels: int = 0
    mod: "object" = None  # the lowered Relax module, kept for inspection
    reports: dict = field(default_factory=dict)  # what stages reported (e.g. "fusion": the LP-Fusion plan)
    # what the build degraded on (canao.measure.report.BuildReport): kernels left unscheduled and
    # why, schedule rules that raised, fusion measurements that failed; report.to_json() for a manifest
    report: "object" = None
    options: BuildOptions = None  # what the build was asked (finite_weights settled from the weights)

    def export(self, path: str) -> None:
        """Write the shared library (cross-linked for the target's architecture)."""
        check_cross_compiler(self.target)
        from canao.atomic import quiet_native_stderr

        kwargs = {"cc": self.target.cross_compiler} if self.target.cross_compiler else {}
        with quiet_native_stderr():
            self.executable.export_library(path, **kwargs)


def _split_transform(mod):
    """(main-only module, transform module or None) after LiftTransformParams."""
    import tvm
    from tvm import relax

    names = [gv.name_hint for gv in mod.get_global_vars()]
    transform_name = "main_transform_params"
    if transform_name not in names:
        return mod, None
    transform = tvm.IRModule({"main": mod[transform_name].with_attr("global_symbol", "main")})
    for gv, func in mod.functions.items():  # PrimFuncs / helpers it calls
        if gv.name_hint not in ("main", transform_name):
            transform[gv] = func
    transform = relax.transform.DeadCodeElimination(["main"])(transform)
    main = tvm.IRModule({gv: f for gv, f in mod.functions.items() if gv.name_hint != transform_name})
    main = relax.transform.DeadCodeElimination(["main"])(main)
    return main, transform


def _run_transform(transform_mod, params: List[np.ndarray]) -> List[np.ndarray]:
    """Run main_transform_params on the host CPU once; return the transformed weights."""
    import tvm
    from tvm import relax

    from .targets import resolve_target

    host = resolve_target("x86").tvm_target()
    exe = tvm.compile(transform_mod, target=host)
    vm = relax.VirtualMachine(exe, tvm.cpu())
    dev = tvm.cpu()
    out = vm["main"]([tvm.runtime.tensor(p, dev) for p in params])  # takes one tuple
    return [t.numpy() for t in out]


class WeightPacking:
    """build()'s half of weight prepacking (codegen/schedules/prepack.py): the schedule slot's
    "mark-weights" stage let the Matmul rule read weights through packing blocks; before the VM
    lowering these are split out of the kernels, lifted into the weight transform and run once
    here, so ``params`` are the packed weights the module now takes."""

    def __init__(self, params: List[np.ndarray]):
        self.params = params

    def hooks(self) -> dict:
        return {"lower": self.lift}

    def lift(self, mod):
        from tvm import relax

        from .schedules.prepack import has_packing, split_packing

        if not has_packing(mod):
            return mod
        try:
            mod, transform = _split_transform(relax.transform.LiftTransformParams()(split_packing(mod)))
            if transform is not None:
                self.params = _run_transform(transform, self.params)
        except Exception as exc:
            raise PackingFailed(f"lifting the packed weights failed: {type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from exc
        return mod


class PackingFailed(Exception):
    """WeightPacking could not lift the packing blocks (build() then rebuilds without packing)."""


def lower(mod, target_spec: TargetSpec, pipeline: str = "canao", stop_after: Optional[str] = None,
          on_stage=None, options=None, before: Optional[dict] = None):
    """Run the pipeline's stages on ``mod``; return (module, [StageStats]). Used by build and inspect.
    ``options``: BuildOptions or a dict; stage reports go to pipeline.collecting_stage_reports().
    ``before``: {stage name: function(module) -> module} run just before that stage (its time
    counts in the stage's), e.g. build()'s weight-packing lift before "lower"."""
    target = target_spec.tvm_target()
    before = before or {}
    stats = [StageStats("import", analysis.op_counts(mod), analysis.kernel_count(mod), 0.0)]
    for name, stage in pipelines.stages(pipeline, target, options):
        start = time.perf_counter()
        with target:
            if name in before:
                mod = before[name](mod)
            mod = stage(mod)
        stats.append(StageStats(name, analysis.op_counts(mod), analysis.kernel_count(mod), time.perf_counter() - start))
        if on_stage:
            on_stage(name)
        if stop_after == name:
            break
    return mod, stats


def prepare(imported, target_spec: TargetSpec, pipeline: str = "canao", options=None):
    """Graph rewrite + weight lifting: (module with weights as inputs, weights it takes, [StageStats]).
    ``options``: BuildOptions or a dict; ``finite_weights`` is settled from the weights when unset."""
    from tvm import relax

    mod = imported.mod
    params = list(imported.params)
    stats = [StageStats("import", analysis.op_counts(mod), analysis.kernel_count(mod), 0.0)]
    if pipeline != "canao":
        return mod, params, stats
    start = time.perf_counter()
    options = BuildOptions.coerce(options).for_weights(params)  # what the polynomial rules may assume
    rewrite = pipelines.rewrite_stage(pipeline, target_spec.tvm_target(), options)
    if rewrite is not None:
        with target_spec.tvm_target():
            mod = rewrite(mod)
        stats.append(StageStats("lp-rewrite", analysis.op_counts(mod), analysis.kernel_count(mod),
                                time.perf_counter() - start))
    start = time.perf_counter()
    mod, transform = _split_transform(relax.transform.LiftTransformParams()(mod))
    if transform is not None:
        params = _run_transform(transform, params)
    stats.append(StageStats("lift-params", analysis.op_counts(mod), analysis.kernel_count(mod),
                            time.perf_counter() - start))
    return mod, params, stats


def build(imported, target_spec: TargetSpec, pipeline: str = "canao", on_stage=None,
          options=None) -> CompiledModel:
    """Compile ``imported`` for ``target_spec`` with the named pipeline ("canao" or "stock").

    ``options`` (BuildOptions, or a dict of its fields) reach every registered stage factory,
    e.g. ``BuildOptions(tuning_db=work_dir)``. What the stages report comes back in
    ``CompiledModel.reports``; ``CompiledModel.report`` lists what the build degraded on (each
    also a CanaoWarning).
    """
    import tvm

    from canao.measure.report import collecting

    check_cross_compiler(target_spec)
    options = BuildOptions.coerce(options)
    if pipeline == "canao":  # settled once, so the rewrite and the later stages' keys see the same value
        options = options.for_weights(imported.params)
    with collecting() as report, pipelines.collecting_stage_reports() as stage_reports:
        mod, params, stats = prepare(imported, target_spec, pipeline, options)
        packing = WeightPacking(params)  # a no-op unless the schedules packed a weight
        try:
            lowered, lowered_stats = lower(mod, target_spec, pipeline, on_stage=on_stage, options=options,
                                           before=packing.hooks())
        except PackingFailed as exc:  # never a failed build for an optimisation: redo it unpacked
            from canao.measure.report import WEIGHT_PREPACK, record

            record(WEIGHT_PREPACK, "build", f"{exc}; weights kept in their imported layout")
            options = options.replace(prepack_weights=False)
            packing = WeightPacking(params)
            lowered, lowered_stats = lower(mod, target_spec, pipeline, on_stage=on_stage, options=options)
        mod, params = lowered, packing.params
        stats += lowered_stats[1:]
        kernels = fused_kernel_count(stats)
        try:
            executable = tvm.compile(mod, target=target_spec.tvm_target(),
                                     relax_pipeline=tvm.transform.Sequential([]))
        except Exception as exc:
            raise CanaoError(f"code generation for {target_spec.name} failed: {str(exc).splitlines()[0][:300]}",
                             "report the model; try --pipeline stock to see whether LP-Fusion is the cause") from exc
    return CompiledModel(executable, params, target_spec, pipeline, stats, kernels, mod,
                         dict(stage_reports.reports), report, options)


def fused_kernel_count(stats: List[StageStats]) -> int:
    """Kernel launches per inference: PrimFunc calls left in main after lowering to the VM
    (reshapes have become free views by then, so this is what actually runs)."""
    return stats[-1].kernels
