"""Using a tuning database at build time: the schedule-slot stage and a tune-then-build helper."""
from typing import Optional

from canao.errors import CanaoError

from ..options import BuildOptions
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
    """The folder to apply: the whole database for one tuned by plain MetaSchedule; otherwise
    each kernel's winner (default schedule = no record, best tile variant, or MetaSchedule's
    best), as the side-by-side verdict of `canao tune` decided, so tuning never makes a kernel
    slower. A verdict made stale by later records falls back to comparing stored times."""
    from .store import mean_run_seconds, write_database
    from .variants import variants_store
    from .verdict import is_current

    tasks = store.load_manifest().get("tasks", {})
    if not any("default_us" in entry or "verdict" in entry for entry in tasks.values()):
        return store.dir
    tuned, variant = store.scan(), variants_store(store).scan()
    best = {key: t.best for key, t in tuned.items() if t.best is not None}
    variant_best = {key: t.best for key, t in variant.items() if t.best is not None}
    counts = {key: t.count for key, t in tuned.items()}
    variant_counts = {key: t.count for key, t in variant.items()}
    winners = []
    for key in sorted(set(best) | set(variant_best)):
        entry = tasks.get(key, {})
        verdict = entry.get("verdict")
        if verdict and is_current(verdict, counts, variant_counts, key):
            choice = verdict["choice"]
        else:
            stored = {"default": entry.get("default_us"),
                      "tuned": 1e6 * mean_run_seconds(best[key]) if key in best else None,
                      "variant": 1e6 * mean_run_seconds(variant_best[key]) if key in variant_best else None}
            timed = {n: us for n, us in stored.items() if us is not None}
            choice = min(timed, key=timed.get) if "default" in timed else (
                "tuned" if key in best else "variant")
        if choice == "tuned":
            winners.append(best[key])
        elif choice == "variant":
            winners.append(variant_best[key])
    write_database(store.dir / APPLIED, winners)
    return store.dir / APPLIED


def database_stage(target, options):
    """Pipeline factory: the database pass when ``options.tuning_db`` is set, else None."""
    work_dir = BuildOptions.coerce(options).tuning_db
    return apply_database(work_dir, target) if work_dir else None


def database_fingerprint(target, options) -> str:
    """The content of the tuning database a build applies: MetaSchedule's records, the tile
    variants' records and the manifest's per-kernel verdicts (which records win)."""
    import hashlib
    import json

    from .variants import variants_store

    work_dir = BuildOptions.coerce(options).tuning_db
    if not work_dir:
        return "no-tuning-db"
    store = TuningStore(work_dir)
    h = hashlib.sha256()
    for s in (store, variants_store(store)):
        for path in (s.workloads_path, s.records_path):
            h.update(path.name.encode())
            h.update(path.read_bytes() if path.exists() else b"-")
    h.update(json.dumps(store.load_manifest().get("tasks", {}), sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


database_stage.fingerprint = database_fingerprint
register_stage("schedule", STAGE_NAME, database_stage, order=STAGE_ORDER)


def compile_fused(fused_mod, target_spec, pipeline: str = "canao", options: Optional[dict] = None):
    """Schedule (tuning database, then defaults) and lower an already fused module; returns the
    VM executable. Used to measure alternative fused modules side by side."""
    import tvm

    from .. import pipeline as pipelines
    from .tasks import copy_module

    target = target_spec.tvm_target()
    mod = copy_module(fused_mod)
    # no weight prepacking: its packing blocks are lifted by build() only, here they would run per call
    options = BuildOptions.coerce(options).replace(prepack_weights=False)
    for name, stage in pipelines.stages(pipeline, target, options):
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
    compiled = build(imported, target_spec, pipeline,
                     options=BuildOptions.coerce(options).replace(tuning_db=str(work_dir)))
    return compiled, report
