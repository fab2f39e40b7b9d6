"""Which kernel a build uses, decided side by side: for every task, the default schedule, the
best tile variant and MetaSchedule's best record are built and timed in the same interleaved
rounds, and the fastest wins.

Why not compare the numbers in the database: records are measured over a tuning run of many
minutes on a shared machine, and the default was timed once at its start; a load spike in either
made a 64-trial MiniLM build pick tuned kernels 3x slower than the defaults it replaced (36 ms
vs 18 ms). Timing the contenders together removes the drift; the minimum over rounds removes
most of the remaining noise.
"""
from typing import Dict, List, Optional

from .store import TuningStore
from .tasks import TuningTask, copy_module

CONTENDERS = ("default", "variant", "tuned")
ROUNDS = 3  # interleaved rounds; the minimum over them is what each contender is judged by


def _from_database(database, task: TuningTask, target):
    """The task's best record replayed on its kernel (what ApplyDatabase would build), or None."""
    if database is None or not database.has_workload(task.mod):
        return None
    sch = database.query_schedule(task.mod, target, task.name)
    return None if sch is None else sch.mod


def settle(tasks: List[TuningTask], store: TuningStore, target_spec, builder, runner, schedule,
           manifest: dict) -> Dict[str, dict]:
    """Time every task's contenders side by side and write each verdict into ``manifest``
    (``tasks[key]["verdict"]``): the choice, the microseconds of each contender, the record
    counts it saw (a later tuning run makes it stale) and the measurement core's noise record
    (reference time, load, tries, flagged)."""
    from .baseline import default_modules
    from .kernel_check import agrees
    from .kernel_timing import measure_modules
    from .variants import variants_store

    target = target_spec.tvm_target()
    defaults = default_modules(tasks, target_spec, schedule)
    counts = store.record_counts()
    variants = variants_store(store)
    variant_counts = variants.record_counts()
    tuned_db = store.open_database() if store.exists() else None
    variant_db = variants.open_database() if variants.exists() else None
    mods, owners = [], []
    for task, default in zip(tasks, defaults):
        contenders = {"default": default,
                      "variant": _from_database(variant_db, task, target),
                      "tuned": _from_database(tuned_db, task, target)}
        if target_spec.runs_locally:  # a contender that computes something else is dropped
            for name in ("variant", "tuned"):
                if contenders[name] is not None and not agrees(contenders[name], default, target,
                                                               name=f"{task.name} ({name})"):
                    contenders[name] = None
        if contenders["variant"] is None and contenders["tuned"] is None:
            continue
        for name in CONTENDERS:
            if contenders[name] is not None:
                mods.append(copy_module(contenders[name]))
                owners.append((task, name))
    verdicts: Dict[str, dict] = {}
    if not mods:
        return verdicts
    names = [f"{task.name} ({name})" for task, name in owners]
    times, row = measure_modules(mods, target_spec, builder, runner, names, rounds=ROUNDS)
    noise = row.noise() if row is not None else None
    per_task: Dict[str, Dict[str, Optional[float]]] = {}
    for (task, name), us in zip(owners, times):
        per_task.setdefault(task.key, {})[name] = us
    for task in tasks:
        timed = per_task.get(task.key)
        if timed is None:
            continue
        valid = {n: us for n, us in timed.items() if us is not None}
        # the default stays unless something measured faster (also when the default failed to time)
        choice = min(valid, key=valid.get) if valid else "default"
        verdict = {"choice": choice, "us": timed, "records": counts.get(task.key, 0),
                   "variant_records": variant_counts.get(task.key, 0), "noise": noise}
        manifest["tasks"].setdefault(task.key, {"name": task.name})["verdict"] = verdict
        verdicts[task.key] = verdict
    return verdicts


def is_current(verdict: dict, counts: Dict[str, int], variant_counts: Dict[str, int], key: str) -> bool:
    """Whether the records a verdict compared are still all there is on disk for ``key``."""
    return verdict.get("records") == counts.get(key, 0) and verdict.get("variant_records") == variant_counts.get(key, 0)
