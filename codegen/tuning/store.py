"""The tuning work dir: MetaSchedule's JSON database plus a small manifest, kept consistent
across kill -9.

MetaSchedule's JSON database appends one line per record as each batch is measured, so what is
on disk is everything measured up to the last finished batch; a kill can only leave a torn
last line, which ``repair`` trims before the database is opened. The database is the source of
truth for how many trials each task has had; the manifest adds what the records cannot say
(a task whose search space is exhausted, the tuning time spent so far).
"""
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Dict

from canao.atomic import write_json, write_text

WORKLOADS = "database_workload.json"
RECORDS = "database_tuning_record.json"
MANIFEST = "canao_tuning.json"
COST_MODEL = "cost_model.tar"

_RECORD_PREFIX = re.compile(r"^\[\s*(\d+)\s*,")
_WORKLOAD_PREFIX = re.compile(r'^\[\s*"(\d+)"\s*,')


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
            lines = text.splitlines()
            while lines and not _parses(lines[-1]):
                lines.pop()
                dropped += 1
            fixed = "".join(line + "\n" for line in lines if line.strip())
            if fixed != text:
                write_text(path, fixed)
        return dropped

    def open_database(self):
        """MetaSchedule's JSONDatabase over this dir (created if missing, repaired first)."""
        from tvm.s_tir.meta_schedule.database import JSONDatabase

        self.dir.mkdir(parents=True, exist_ok=True)
        self.repair()
        return JSONDatabase(str(self.workloads_path), str(self.records_path), allow_missing=True,
                            module_equality="structural")

    def record_counts(self) -> Dict[str, int]:
        """Trials on disk per task key (structural hash), read straight from the tables."""
        if not self.exists():
            return {}
        keys = []
        for line in self.workloads_path.read_text().splitlines():
            match = _WORKLOAD_PREFIX.match(line)
            keys.append(match.group(1) if match else None)
        counts: Counter = Counter()
        for line in self.records_path.read_text().splitlines():
            match = _RECORD_PREFIX.match(line)
            if match and int(match.group(1)) < len(keys):
                counts[keys[int(match.group(1))]] += 1
        return dict(counts)

    def best_records(self) -> Dict[str, tuple]:
        """{task key: (mean seconds, workload line, record line)} of each task's fastest valid record."""
        if not self.exists():
            return {}
        workloads = self.workloads_path.read_text().splitlines()
        best: Dict[str, tuple] = {}
        for line in self.records_path.read_text().splitlines():
            match = _RECORD_PREFIX.match(line)
            if not match or int(match.group(1)) >= len(workloads):
                continue
            run_secs = json.loads(line)[1][1]
            if not run_secs or any(s is None or s >= 1e9 for s in run_secs):
                continue  # failed build or run
            index = int(match.group(1))
            key_match = _WORKLOAD_PREFIX.match(workloads[index])
            if not key_match:
                continue
            mean = sum(run_secs) / len(run_secs)
            key = key_match.group(1)
            if key not in best or mean < best[key][0]:
                best[key] = (mean, workloads[index], line)
        return best

    def total_records(self) -> int:
        return sum(self.record_counts().values())

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


def write_database(dest, entries) -> None:
    """A JSON database at ``dest`` from (workload line, record line) pairs taken from any
    databases, one record per workload (written whole, then renamed into place)."""
    from canao.atomic import staged_dir

    with staged_dir(dest, force=True) as tmp:
        workloads, records = [], []
        for index, (workload_line, record_line) in enumerate(entries):
            workloads.append(workload_line)
            records.append(_RECORD_PREFIX.sub(f"[{index},", record_line, count=1))
        (tmp / WORKLOADS).write_text("".join(w + "\n" for w in workloads))
        (tmp / RECORDS).write_text("".join(r + "\n" for r in records))


def _parses(line: str) -> bool:
    if not line.strip():
        return True
    try:
        json.loads(line)
        return True
    except ValueError:
        return False
