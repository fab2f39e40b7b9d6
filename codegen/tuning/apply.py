"""Using a tuning database at build time: the schedule-slot stage and a tune-then-build helper."""
from typing import Optional

from canao.errors import CanaoError

from ..pipeline import register_stage
from .store import TuningStore

STAGE_NAME = "tuning-database"
STAGE_ORDER = 10  # before the default schedules (90): tuned kernels first, defaults for the rest


def apply_database(work_dir, target=None):
    """MetaSchedule's ApplyDatabase over ``work_dir``: tuned kernels replace their PrimFuncs and
    are marked scheduled, so later schedule rules leave them alone. The pass binds the target
    current when it is made (``target`` if given)."""
    import contextlib

    from tvm import relax

    store = TuningStore(work_dir)
    if not store.exists():
        raise CanaoError(f"no tuning database in {work_dir}",
                         f"run `canao tune MODEL --target T --db {work_dir}` first, or drop the tuning_db option")
    store.repair()
    source = _winners(store)
    with target if target is not None else contextlib.nullcontext():
        return relax.transform.MetaScheduleApplyDatabase(str(source), enable_warning=False)


APPLIED = "applied"  # the subset of the database a build uses, rewritten from the records


def _winners(store: TuningStore):
    """The folder to apply: the whole database, or (when `canao tune` measured the default
    schedules) only the tuned kernels that beat them, so tuning never makes a build slower."""
    tasks = store.load_manifest().get("tasks", {})
    if not any("default_us" in entry for entry in tasks.values()):
        return store.dir
    best = store.best_records()
    keep = [key for key, (secs, _, _) in best.items()
            if tasks.get(key, {}).get("default_us") is None or 1e6 * secs < tasks[key]["default_us"]]
    store.write_subset(store.dir / APPLIED, keep)
    return store.dir / APPLIED


def database_stage(target, options: dict):
    """Pipeline factory: the database pass when ``options["tuning_db"]`` is set, else None."""
    work_dir = (options or {}).get("tuning_db")
    return apply_database(work_dir, target) if work_dir else None


register_stage("schedule", STAGE_NAME, database_stage, order=STAGE_ORDER)


def compile_fused(fused_mod, target_spec, pipeline: str = "canao", options: Optional[dict] = None):
    """Schedule (tuning database, then defaults) and lower an already fused module; returns the
    VM executable. Used to measure alternative fused modules side by side."""
    import tvm

    from .. import pipeline as pipelines
    from .tasks import copy_module

    target = target_spec.tvm_target()
    mod = copy_module(fused_mod)
    for name, stage in pipelines.stages(pipeline, target, options or {}):
        if name in ("schedule", "lower"):
            with target:
                mod = stage(mod)
    return tvm.compile(mod, target=target, relax_pipeline=tvm.transform.Sequential([]))


def build_tuned(imported, target_spec, work_dir, trials: Optional[int] = None,
                time_budget_s: Optional[float] = None, runner=None, pipeline: str = "canao",
                options: Optional[dict] = None, progress: bool = True):
    """Build ``imported`` with the tuning database in ``work_dir``, tuning first when needed.

    ``trials``: the database's total budget; tuning resumes until it is reached (a no-op when it
    is). Without it, tuning runs only if some kernel has no record yet, with one batch per task.
    Returns (CompiledModel, TuningReport or None when nothing was tuned).
    """
    from ..build import build
    from .tasks import extract_tasks, fused_module
    from .tuner import DEFAULT_SLICE, tune

    report = None
    if trials is None:
        tasks = extract_tasks(fused_module(imported, target_spec, pipeline, options), target_spec)
        counts = TuningStore(work_dir).record_counts()
        if any(counts.get(t.key, 0) == 0 for t in tasks):
            trials = sum(counts.get(t.key, 0) for t in tasks) + DEFAULT_SLICE * sum(
                1 for t in tasks if counts.get(t.key, 0) == 0)
    if trials is not None:
        report = tune(imported, target_spec, work_dir, trials, time_budget_s, runner, pipeline=pipeline,
                      options=options, progress=progress)
    compiled = build(imported, target_spec, pipeline, options=dict(options or {}, tuning_db=str(work_dir)))
    return compiled, report
