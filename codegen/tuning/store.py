"""The tuning work dir: MetaSchedule's JSON database plus a small manifest, kept consistent
across kill -9.

Records are read and written only through MetaSchedule's database API (``JSONDatabase``,
``TuningRecord``, ``Workload``), never by parsing its files. The one thing the API cannot do is
recover from a kill: the database appends one line per record as each batch is measured, so a
kill can leave a torn last line, and ``JSONDatabase`` refuses to load a file with one. ``repair``
trims it before the database is opened for writing; readers load a copy of the complete lines,
so they never block on (or change) a database another process is tuning into. The database is
the source of truth for how many trials each task has had; the manifest adds what the records
cannot say (a task whose search space is exhausted, the tuning time spent so far, the verdicts).
"""
import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from canao.atomic import write_json, write_text

from .tasks import task_key

WORKLOADS = "database_workload.json"
RECORDS = "database_tuning_record.json"
MANIFEST = "canao_tuning.json"
COST_MODEL = "cost_model.tar"
MODULE_EQUALITY = "structural"  # what task keys hash (tasks.task_key), so lookups agree with them


@dataclass
class TaskRecords:
    """What the database holds for one task: how many trials, and its fastest valid record."""
    count: int
    best: Optional[object]  # TuningRecord; None when every trial failed to build or run


class TuningStore:
    def __init__(self, work_dir):
        self.dir = Path(work_dir)

    @property
    def workloads_path(self) -> Path:
        return self.dir / WORKLOADS

    @property
    def records_path(self) -> Path:
        return self.dir / RECORDS

    @property
    def cost_model_path(self) -> Path:
        return self.dir / COST_MODEL

    def exists(self) -> bool:
        return self.workloads_path.exists() and self.records_path.exists()

    def repair(self) -> int:
        """Drop a torn last line (from a kill mid-append) from both tables; returns lines dropped."""
        dropped = 0
        for path in (self.workloads_path, self.records_path):
            if not path.exists():
                continue
            text = path.read_text()
            lines = _complete_lines(text)
            dropped += len([line for line in text.splitlines() if line.strip()]) - len(lines)
            fixed = "".join(line + "\n" for line in lines)
            if fixed != text:  # also ends a complete last line, so the next append starts a new one
                write_text(path, fixed)
        return dropped

    def open_database(self):
        """MetaSchedule's JSONDatabase over this dir, for the process that tunes into it (created
        if missing, repaired first)."""
        from tvm.s_tir.meta_schedule.database import JSONDatabase

        self.dir.mkdir(parents=True, exist_ok=True)
        self.repair()
        return JSONDatabase(str(self.workloads_path), str(self.records_path), allow_missing=True,
                            module_equality=MODULE_EQUALITY)

    def scan(self) -> Dict[str, TaskRecords]:
        """{task key: its trial count and best record}, from one read of the database."""
        database = self._read()
        if database is None:
            return {}
        counts: Counter = Counter()
        workloads = {}
        for record in database.get_all_tuning_records():
            if record.workload not in workloads:
                workloads[record.workload] = task_key(record.workload.mod)
            counts[workloads[record.workload]] += 1
        out = {}
        for workload, key in workloads.items():
            top = database.get_top_k(workload, 1)  # valid records only: failed trials never win
            out[key] = TaskRecords(counts[key], top[0] if top else None)
        return out

    def record_counts(self) -> Dict[str, int]:
        """Trials on disk per task key, failed ones included."""
        return {key: task.count for key, task in self.scan().items()}

    def best_records(self) -> Dict[str, object]:
        """{task key: TuningRecord} of each task's fastest valid record."""
        return {key: task.best for key, task in self.scan().items() if task.best is not None}

    def total_records(self) -> int:
        return sum(self.record_counts().values())

    def _read(self):
        """A JSONDatabase loaded from a copy of the tables' complete lines (None when there is no
        database), so a reader never sees a torn line, even while a tuning process appends.
        Records are copied before workloads: every record's workload was committed first, so
        the copy holds it. Read-only: the copy is gone when this returns."""
        from tvm.s_tir.meta_schedule.database import JSONDatabase

        if not self.exists():
            return None
        records = _complete_lines(self.records_path.read_text())
        workloads = _complete_lines(self.workloads_path.read_text())
        with tempfile.TemporaryDirectory(prefix="canao-db-") as tmp:
            paths = [os.path.join(tmp, WORKLOADS), os.path.join(tmp, RECORDS)]
            for path, lines in zip(paths, (workloads, records)):
                Path(path).write_text("".join(line + "\n" for line in lines))
            return JSONDatabase(*paths, allow_missing=False, module_equality=MODULE_EQUALITY)

    def load_manifest(self) -> dict:
        path = self.dir / MANIFEST
        if not path.exists():
            return {"tasks": {}, "tuning_seconds": 0.0}
        return json.loads(path.read_text())

    def save_manifest(self, manifest: dict) -> None:
        write_json(self.dir / MANIFEST, manifest)

    def save_cost_model(self, cost_model) -> None:
        """Keep the XGBoost model and its training data, so a resumed run does not start cold."""
        if getattr(cost_model, "booster", None) is None:
            return
        import warnings

        tmp = self.dir / f".{COST_MODEL}.{os.getpid()}.tar"
        with warnings.catch_warnings():  # xgboost's note about its default file format
            warnings.simplefilter("ignore")
            cost_model.save(str(tmp))
        os.replace(tmp, self.cost_model_path)

    def load_cost_model(self, cost_model) -> bool:
        if not self.cost_model_path.exists():
            return False
        import warnings

        try:
            with warnings.catch_warnings():  # xgboost guessing the format of "model.bin"
                warnings.simplefilter("ignore")
                cost_model.load(str(self.cost_model_path))
            return True
        except Exception:  # a stale or unreadable model only costs warm-up time
            return False


def mean_run_seconds(record) -> float:
    """A record's mean run time, what MetaSchedule ranks records by."""
    secs = [float(s) for s in record.run_secs]
    return sum(secs) / len(secs)


def write_database(dest, records: Iterable) -> None:
    """A JSON database at ``dest`` holding ``records`` (TuningRecords from any databases),
    committed through the API and renamed into place only when complete."""
    from tvm.s_tir.meta_schedule.database import JSONDatabase, TuningRecord

    from canao.atomic import staged_dir

    with staged_dir(dest, force=True) as tmp:
        database = JSONDatabase(str(tmp / WORKLOADS), str(tmp / RECORDS), allow_missing=True,
                                module_equality=MODULE_EQUALITY)
        for record in records:
            workload = database.commit_workload(record.workload.mod)
            database.commit_tuning_record(TuningRecord(record.trace, workload, [float(s) for s in record.run_secs],
                                                       record.target, list(record.args_info)))


def _complete_lines(text: str) -> List[str]:
    """The non-empty lines of a table up to its last complete one: a line a kill cut short is
    not valid JSON (JSONDatabase would refuse the whole file)."""
    lines = text.splitlines()
    while lines and not _parses(lines[-1]):
        lines.pop()
    return [line for line in lines if line.strip()]


def _parses(line: str) -> bool:
    if not line.strip():
        return True
    try:
        json.loads(line)
        return True
    except ValueError:
        return False
