"""Auto-tuning with MetaSchedule: resumable per-task tuning into a JSON database, the pipeline
stage that applies the database at build time, and fusion versions chosen by measurement.

Importing this module registers the "tuning-database" stage in the pipeline's schedule slot
(order 10, before the default schedules at 90): ``build(..., options={"tuning_db": DIR})``
uses the tuned kernels, and the default schedules handle every kernel the database lacks.
"""
from .apply import apply_database, build_tuned, database_stage
from .tasks import TuningTask, allocate_trials, extract_tasks, fused_module
from .tuner import TaskResult, TuningReport, tune
from .versions import FusionChoice, choose_fusion_version

__all__ = ["tune", "TuningReport", "TaskResult", "TuningTask", "fused_module", "extract_tasks",
           "allocate_trials", "apply_database", "database_stage", "build_tuned",
           "choose_fusion_version", "FusionChoice"]
