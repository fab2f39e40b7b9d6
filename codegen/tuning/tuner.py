"""Resumable MetaSchedule tuning: one task at a time, in slices, so every finished slice is on
disk before the next starts.

MetaSchedule's own task scheduler measures every task once before committing anything, so an
interrupt in the first round used to lose the lot. Here each slice is one builder/runner batch
of one task (``tune_tasks`` with a single TuneContext); its records are appended to the JSON
database as soon as it is measured. A rerun with the same arguments reads how many trials each
task already has from the database and continues: the search restarts from the best records
on disk (MetaSchedule seeds its population from them) and the XGBoost cost model is reloaded.
"""
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

from canao.errors import CanaoError

from ..targets import check_cross_compiler
from .intrinsics import load_tensor_intrinsics
from .builder_runner import make_builder, make_local_runner
from .store import TuningStore
from .tasks import TuningTask, allocate_trials, extract_tasks, fused_module
from .variants import search_variants

DEFAULT_SLICE = 32  # trials per builder/runner batch: one batch is what a kill can lose


@dataclass
class TaskResult:
    name: str
    key: str
    weight: int
    flop: float
    trials: int  # on disk, all runs together
    target_trials: int
    exhausted: bool  # the search found nothing new to measure
    best_us: Optional[float] = None  # MetaSchedule's best record, as measured while tuning
    default_us: Optional[float] = None  # the same kernel under the default schedules
    choice: Optional[str] = None  # what a build uses: "default", "variant" or "tuned" (the verdict)
    verdict_us: dict = field(default_factory=dict)  # contender -> us, timed side by side

    @property
    def uses_tuned(self) -> bool:
        """Whether a build applies a kernel from tuning (a tile variant or MetaSchedule's)."""
        if self.choice is not None:
            return self.choice != "default"
        return self.best_us is not None and (self.default_us is None or self.best_us < self.default_us)


@dataclass
class TuningReport:
    work_dir: str
    target: str
    trials_requested: int
    trials_total: int  # records on disk after this run
    trials_this_run: int
    seconds_this_run: float
    seconds_total: float  # tuning time over every run on this work dir
    complete: bool  # every task reached its share (or ran out of candidates)
    stopped_by_time_budget: bool = False
    tasks: List[TaskResult] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        lines = ["side by side (us, best of interleaved rounds):",
                 f"{'task':48s} {'calls':>5s} {'trials':>11s} {'default':>10s} {'variant':>10s} {'tuned':>10s}  build uses"]
        for t in self.tasks:
            trials = f"{t.trials}/{t.target_trials}" + ("*" if t.exhausted else "")
            v = t.verdict_us
            default = v.get("default", t.default_us) if v else t.default_us
            tuned = v.get("tuned") if v else t.best_us
            choice = t.choice or ("tuned" if t.uses_tuned else "default")
            lines.append(f"{t.name[:48]:48s} {t.weight:5d} {trials:>11s} {_us(default)} {_us(v.get('variant'))} "
                         f"{_us(tuned)}  {choice}")
        state = "complete" if self.complete else ("stopped by the time budget" if self.stopped_by_time_budget
                                                  else "incomplete")
        lines.append(f"{self.trials_total} trials on disk ({self.trials_this_run} this run, "
                     f"{self.seconds_this_run:.0f} s; {self.seconds_total:.0f} s of tuning in all), {state}. "
                     f"* = search space exhausted")
        return "\n".join(lines)


def _us(value: Optional[float]) -> str:
    return f"{value:10.1f}" if value is not None else f"{'-':>10s}"


def tune(mod, target_spec, work_dir, trials: int, time_budget_s: Optional[float] = None, runner=None, *,
         pipeline: str = "canao", options: Optional[dict] = None, slice_trials: int = DEFAULT_SLICE,
         progress: bool = True, builder=None) -> TuningReport:
    """Tune the fused kernels of ``mod`` for ``target_spec`` until the database in ``work_dir``
    holds ``trials`` trials in all (a rerun resumes; a finished run is a no-op).

    ``mod``: an ImportedModel, a Relax module, or an already fused module (see fused_module).
    ``runner``: a MetaSchedule runner (e.g. an RPCRunner for a phone); local by default.
    ``builder``: a MetaSchedule builder; by default one that links with the target's compiler.
    ``time_budget_s`` bounds this run's wall time; the slice in flight when it runs out finishes.
    """
    if trials < 0:
        raise CanaoError(f"--trials must be >= 0, got {trials}", "pass a trial budget such as --trials 500")
    check_cross_compiler(target_spec)
    start = time.perf_counter()
    tasks = extract_tasks(fused_module(mod, target_spec, pipeline, options), target_spec)
    store = TuningStore(work_dir)
    manifest = _check_manifest(store, target_spec)
    if not tasks:
        return _report(store, target_spec, tasks, {}, manifest, trials, 0, time.perf_counter() - start, False)
    on_disk = store.record_counts()
    counts = {t.key: on_disk.get(t.key, 0) for t in tasks}
    before = sum(counts.values())
    earlier_seconds = manifest.get("tuning_seconds", 0.0)  # wall time of earlier runs on this dir
    stopped = False
    tuner = database = None

    def ensure_tuner():
        """Builder, runner, cost model and the default timings; made only when there is work, so
        a finished database is not even opened for writing."""
        nonlocal tuner, database
        if tuner is None:
            load_tensor_intrinsics(target_spec)
            database = store.open_database()
            tuner = _SliceTuner(target_spec, store, database, builder, runner, tasks)
            _measure_baselines(tuner, tasks, manifest, target_spec, pipeline, options)
            store.save_manifest(manifest)
        return tuner

    with _Progress(progress, trials, before) as bars:
        if trials > 0 and any("variants" not in manifest["tasks"].get(t.key, {}) for t in tasks):
            bars.note("timing the default schedules' tile variants")  # tuning starts from the defaults
            search_variants(tasks, target_spec, ensure_tuner().builder, tuner.runner, store, manifest)
        while True:
            targets = _targets(tasks, trials, counts, manifest)
            pending = [t for t in tasks if not _exhausted(manifest, t) and counts[t.key] < targets[t.key]]
            if not pending:
                break
            ensure_tuner()
            measured_in_round = 0
            for task in pending:
                if time_budget_s is not None and time.perf_counter() - start >= time_budget_s:
                    stopped = True
                    break
                want = _slice_size(targets[task.key] - counts[task.key], slice_trials)
                got = tuner.run(task, want, counts[task.key], bars, on_batch=lambda: _save_time(
                    store, manifest, earlier_seconds + time.perf_counter() - start))
                counts[task.key] += got
                measured_in_round += got
                entry = manifest["tasks"].setdefault(task.key, {"name": task.name})
                entry["exhausted"] = got < want
                _save_time(store, manifest, earlier_seconds + time.perf_counter() - start)
                store.save_cost_model(tuner.cost_model)
            if stopped or measured_in_round == 0:
                break
    if _needs_verdict(store, tasks, manifest):
        _settle(ensure_tuner(), tasks, manifest, target_spec, pipeline, options, progress)
        store.save_manifest(manifest)
    elapsed = time.perf_counter() - start
    if sum(counts.values()) > before:  # a run with nothing left to tune adds no tuning time
        _save_time(store, manifest, earlier_seconds + elapsed)
    return _report(store, target_spec, tasks, _targets(tasks, trials, counts, manifest), manifest, trials,
                   sum(counts.values()) - before, elapsed, stopped, database)


def _measure_baselines(tuner, tasks, manifest, target_spec, pipeline, options) -> None:
    """Time each task once under the default schedules (one batch), so the build can keep the
    default where tuning has not beaten it yet."""
    from .baseline import default_schedule_pass, measure_defaults

    todo = [t for t in tasks if "default_us" not in manifest["tasks"].get(t.key, {})]
    if not todo:
        return
    schedule = default_schedule_pass(target_spec, pipeline, options)
    for key, us in measure_defaults(todo, target_spec, tuner.builder, tuner.runner, schedule).items():
        manifest["tasks"].setdefault(key, {})["default_us"] = us
    for task in todo:
        manifest["tasks"][task.key].setdefault("name", task.name)


def _needs_verdict(store: TuningStore, tasks, manifest) -> bool:
    """Some task with records (MetaSchedule's or a variant) has no current side-by-side verdict."""
    from .variants import variants_store
    from .verdict import is_current

    counts, variant_counts = store.record_counts(), variants_store(store).record_counts()
    for task in tasks:
        if not counts.get(task.key) and not variant_counts.get(task.key):
            continue
        verdict = manifest["tasks"].get(task.key, {}).get("verdict")
        if not verdict or not is_current(verdict, counts, variant_counts, task.key):
            return True
    return False


def _settle(tuner, tasks, manifest, target_spec, pipeline, options, progress: bool) -> None:
    """Time default / best variant / best MetaSchedule kernel side by side; the build uses the winner."""
    import sys

    from .baseline import default_schedule_pass
    from .verdict import settle

    if progress:
        print("timing default, variant and tuned kernels side by side ...", file=sys.stderr, flush=True)
    schedule = default_schedule_pass(target_spec, pipeline, options)
    settle(tasks, tuner.store, target_spec, tuner.builder, tuner.runner, schedule, manifest)


def _save_time(store: TuningStore, manifest: dict, seconds: float) -> None:
    """Tuning time so far, written with every batch so a killed run's time is not lost either."""
    manifest["tuning_seconds"] = seconds
    store.save_manifest(manifest)


def _slice_size(remaining: int, slice_trials: int) -> int:
    """One batch, but never leave a tail shorter than half a batch for another round."""
    return remaining if remaining < slice_trials * 1.5 else slice_trials


def _exhausted(manifest: dict, task: TuningTask) -> bool:
    return bool(manifest["tasks"].get(task.key, {}).get("exhausted"))


def _targets(tasks: List[TuningTask], trials: int, counts: Dict[str, int], manifest: dict) -> Dict[str, int]:
    """Each task's share of ``trials``; what an exhausted task did not use goes to the others."""
    done = [t for t in tasks if _exhausted(manifest, t)]
    active = [t for t in tasks if not _exhausted(manifest, t)]
    targets = {t.key: counts[t.key] for t in done}
    targets.update(allocate_trials(active, max(0, trials - sum(targets.values()))))
    return targets


def _check_manifest(store: TuningStore, target_spec) -> dict:
    manifest = store.load_manifest()
    target = str(target_spec.tvm_target())
    if manifest.get("target") not in (None, target):
        raise CanaoError(f"tuning database {store.dir} was tuned for another target ({manifest['target']})",
                         f"use a separate --db folder for target {target_spec.name}")
    manifest["target"] = target
    return manifest


class _SliceTuner:
    """What stays alive across slices: builder, runner (its worker pool), cost model, loggers."""

    def __init__(self, target_spec, store: TuningStore, database, builder, runner, tasks: List[TuningTask]):
        from tvm.s_tir.meta_schedule.cost_model import XGBModel

        self.target = target_spec.tvm_target()
        self.store = store
        self.database = database
        self.builder = builder if builder is not None else make_builder(target_spec)
        self.runner = runner if runner is not None else make_local_runner()
        self.threads = max(1, _physical_cores())
        self.cost_model = XGBModel(num_tuning_cores=self.threads, verbose_eval=0)
        store.load_cost_model(self.cost_model)
        _quiet_console()
        self.loggers = task_loggers(store.dir, tasks)

    def run(self, task: TuningTask, trials: int, trials_before: int, bars, on_batch) -> int:
        """Tune ``task`` for one batch of ``trials``; returns how many were measured."""
        from tvm.s_tir import meta_schedule as ms

        ctx = ms.TuneContext(mod=task.mod, target=self.target, space_generator="post-order-apply",
                             search_strategy="evolutionary", task_name=task.name,
                             logger=self.loggers[task.key], num_threads=self.threads,
                             rand_state=(int(task.key) + 7919 * trials_before) % (2**31 - 2) + 1)

        def measured(n):
            bars.on_measured(n)
            on_batch()

        counter = _progress_callback(measured)
        bars.start_task(task.name, trials)
        ms.tune_tasks(tasks=[ctx], task_weights=[1.0], work_dir=str(self.store.dir), max_trials_global=trials,
                      max_trials_per_task=trials, num_trials_per_iter=trials, builder=self.builder,
                      runner=self.runner, database=self.database, cost_model=self.cost_model,
                      measure_callbacks=ms.MeasureCallback.create("default") + [counter],
                      task_scheduler="round-robin")
        bars.end_task()
        return counter.measured


def _progress_callback(on_measured):
    """A MetaSchedule measure callback that counts measured candidates and reports each batch."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class CountMeasured(PyMeasureCallback):
        def __init__(self):
            super().__init__()
            self.measured = 0

        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            self.measured += len(measure_candidates)
            on_measured(len(measure_candidates))

    return CountMeasured()


def _physical_cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


def _quiet_console() -> None:
    """MetaSchedule's module loggers (task scheduler, builder, runner) log every step at INFO; only
    warnings reach the console (through the root logger), the details are in work_dir/logs."""
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)


def task_loggers(work_dir, tasks: List[TuningTask]) -> Dict[str, logging.Logger]:
    """One file logger per task, ``work_dir/logs/task_<key>.log``, for its TuneContext.

    Made here instead of by MetaSchedule's ``get_loggers_from_work_dir``, which runs
    ``logging.config.dictConfig`` over the global ``tvm.s_tir.meta_schedule`` logger and copies the
    names of whatever handlers other code attached there: one handler without a name (any plain
    ``logger.addHandler(...)`` earlier in the process) made it fail with ``'NoneType' object has no
    attribute 'format'``, so tuning depended on what ran before it. These loggers touch no global
    logging state: their names are private to this work_dir, they do not propagate, and a second
    call for the same work_dir reuses the same handler instead of adding another."""
    from pathlib import Path

    log_dir = Path(work_dir).resolve() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s [%(levelname)s] %(message)s", "%Y-%m-%d %H:%M:%S")
    scope = f"canao.tuning.{abs(hash(str(log_dir))) & 0xFFFFFFFF:08x}"
    loggers = {}
    for task in tasks:
        logger = logging.getLogger(f"{scope}.task_{task.key}")
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        path = str(log_dir / f"task_{task.key}.log")
        if not any(getattr(h, "baseFilename", None) == path for h in logger.handlers):
            handler = logging.FileHandler(path, mode="a", delay=True)
            handler.setFormatter(formatter)
            logger.addHandler(handler)
        loggers[task.key] = logger
    return loggers


def _best_us(database, task: TuningTask) -> Optional[float]:
    if database is None or not database.has_workload(task.mod):
        return None
    records = database.get_top_k(database.commit_workload(task.mod), 1)
    if not records or not records[0].run_secs:
        return None
    secs = [float(s) for s in records[0].run_secs]
    return 1e6 * sum(secs) / len(secs)


def _report(store, target_spec, tasks, targets, manifest, trials, new, elapsed, stopped, database=None):
    if database is None and tasks and store.exists():
        database = store.open_database()
    counts = store.record_counts()
    results = []
    for t in tasks:
        entry = manifest["tasks"].get(t.key, {})
        verdict = entry.get("verdict") or {}
        results.append(TaskResult(t.name, t.key, t.weight, t.flop, counts.get(t.key, 0), targets.get(t.key, 0),
                                  _exhausted(manifest, t), _best_us(database, t), entry.get("default_us"),
                                  verdict.get("choice"), dict(verdict.get("us", {}))))
    complete = all(r.exhausted or r.trials >= r.target_trials for r in results)
    return TuningReport(str(store.dir), target_spec.name, trials, sum(counts.get(t.key, 0) for t in tasks), new,
                        elapsed, manifest.get("tuning_seconds", 0.0), complete, stopped,
                        results)


class _Progress:
    """tqdm bars: one for the whole budget, one for the task being tuned."""

    def __init__(self, enabled: bool, total: int, initial: int):
        self.enabled, self.total, self.initial = enabled, total, initial
        self.overall = self.task = None

    def __enter__(self):
        from tqdm import tqdm

        self.overall = tqdm(total=max(self.total, self.initial), initial=self.initial, desc="tuning",
                            unit="trial", disable=not self.enabled, position=0, dynamic_ncols=True)
        return self

    def start_task(self, name: str, trials: int) -> None:
        from tqdm import tqdm

        self.task = tqdm(total=trials, desc=f"  {name[:40]}", unit="trial", leave=False,
                         disable=not self.enabled, position=1, dynamic_ncols=True)

    def on_measured(self, n: int) -> None:
        if self.task is not None:
            self.task.update(n)
        self.overall.update(n)

    def note(self, text: str) -> None:
        if self.overall is not None:
            self.overall.set_postfix_str(text)

    def end_task(self) -> None:
        if self.task is not None:
            self.task.close()
            self.task = None

    def __exit__(self, *exc):
        self.end_task()
        self.overall.close()
