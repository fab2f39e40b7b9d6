"""What gets tuned: the fused module (as it enters the pipeline's "schedule" slot) and its
MetaSchedule tasks, each keyed by the structural hash the JSON database files it under."""
from dataclasses import dataclass
from typing import Dict, List, Optional

# The pipeline stages that schedule or lower; tuning sees the module just before them.
_AFTER_FUSION = ("schedule", "lower")
# GPU backends schedule with DLight right after FuseTIR; tasks must be extracted before that.
_GPU_SCHEDULE_PASS = "ApplyDefaultSchedule"


def task_key(mod) -> str:
    """A task's key: the structural hash of its PrimFunc module, what MetaSchedule's database
    (module equality "structural") files its workload under."""
    import tvm_ffi

    return str(tvm_ffi.structural_hash(mod))


@dataclass
class TuningTask:
    key: str  # task_key(mod)
    name: str
    mod: object  # IRModule with one PrimFunc "main", what MetaSchedule tunes
    weight: int  # how many times main calls it
    flop: float

    @property
    def work(self) -> float:
        """Weighted FLOPs: the share of the model this task stands for (at least 1)."""
        return max(self.flop, 1.0) * max(self.weight, 1)


def copy_module(mod):
    """A new IRModule with the same functions: some schedule passes assign into the module they
    are given (``mod[gv] = ...``), which would otherwise change the caller's module."""
    import tvm

    return tvm.IRModule(dict(mod.functions.items()), attrs=mod.attrs)


def has_prim_funcs(mod) -> bool:
    import tvm

    return any(isinstance(f, tvm.tirx.PrimFunc) for f in mod.functions.values())


def fused_module(mod, target_spec, pipeline: str = "canao", options: Optional[dict] = None):
    """``mod`` taken through the pipeline up to its schedule stage (and that stage's prelude).

    ``mod`` may be an ImportedModel (graph rewrite and weight lifting run first, as in build),
    a Relax module of high-level ops, or an already fused module (returned unchanged). The
    tuning database is left out of ``options``: tuning must see unscheduled kernels.
    """
    import tvm

    from .. import pipeline as pipelines
    from ..build import prepare

    from ..options import BuildOptions

    options = BuildOptions.coerce(options).replace(tuning_db=None)
    if hasattr(mod, "params") and hasattr(mod, "mod"):  # an ImportedModel
        if pipeline == "canao":  # as build() settles it, so the later stages see what the build's see
            options = options.for_weights(mod.params)
        mod, _params, _stats = prepare(mod, target_spec, pipeline, options)
    elif has_prim_funcs(mod):
        return mod
    target = target_spec.tvm_target()
    with tvm.transform.PassContext(opt_level=3, disabled_pass=[_GPU_SCHEDULE_PASS]):
        for name, stage in pipelines.stages(pipeline, target, options):
            if name in _AFTER_FUSION:
                break
            with target:
                mod = stage(mod)
        prelude = pipelines.schedule_prelude(target, options) if pipeline == "canao" else None
        if prelude is not None:  # kernel-body rewrites the build applies before the database
            with target:
                mod = prelude(mod)
    return mod


def extract_tasks(fused_mod, target_spec) -> List[TuningTask]:
    """MetaSchedule's tasks for ``fused_mod``, heaviest first; kernels already scheduled are skipped."""
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.analysis import estimate_tir_flops

    tasks: Dict[str, TuningTask] = {}
    for task in ms.relax_integration.extract_tasks(fused_mod, target_spec.tvm_target()):
        if task.mod.attrs is not None and task.mod.attrs.get("tirx.is_scheduled", False):
            continue
        mod = task.dispatched[0]
        func = mod["main"]
        if func.attrs is not None and func.attrs.get("tirx.is_scheduled", False):
            continue
        key = task_key(mod)
        try:
            flop = float(estimate_tir_flops(mod))
        except Exception:  # opaque or data-dependent loops
            flop = 0.0
        tasks[key] = TuningTask(key, str(task.task_name), mod, int(task.weight), flop)
    return sorted(tasks.values(), key=lambda t: -t.work)


def allocate_trials(tasks: List[TuningTask], total: int, floor: int = 16) -> Dict[str, int]:
    """Split ``total`` trials over tasks: every task gets a floor (small kernels still need a
    schedule), the rest goes by weighted FLOPs. Deterministic, so a rerun aims at the same targets."""
    if not tasks or total <= 0:
        return {t.key: 0 for t in tasks}
    n = len(tasks)
    floor = min(floor, total // n)
    rest = total - floor * n
    work = sum(t.work for t in tasks)
    exact = [rest * t.work / work for t in tasks]
    shares = [int(x) for x in exact]
    # largest remainders get the trials that rounding down left over
    for i in sorted(range(n), key=lambda i: shares[i] - exact[i])[: rest - sum(shares)]:
        shares[i] += 1
    return {t.key: floor + s for t, s in zip(tasks, shares)}
