"""Tuning does not depend on (or change) global logging state: a handler without a name on
MetaSchedule's logger, left by earlier code in the same process, once made every later tuning run
fail inside MetaSchedule's get_loggers_from_work_dir ('NoneType' object has no attribute 'format')."""
import logging

import pytest


def test_tuning_ignores_foreign_handlers_and_leaves_global_logging_alone(tmp_path, host_target):
    from canao.codegen.tuning import tune
    from test_tuning_resume import _tiny_model

    ms_logger = logging.getLogger("tvm.s_tir.meta_schedule")
    nameless = logging.StreamHandler()
    assert nameless.get_name() is None
    ms_logger.addHandler(nameless)
    root_before = list(logging.getLogger().handlers)
    try:
        handlers_before = list(ms_logger.handlers)
        report = tune(_tiny_model(), host_target, tmp_path / "db", trials=2, slice_trials=2, progress=False)
        assert report.trials_total >= 2
        assert list(ms_logger.handlers) == handlers_before  # nothing added, nothing replaced
        assert list(logging.getLogger().handlers) == root_before
        logs = list((tmp_path / "db" / "logs").glob("task_*.log"))
        assert logs and any(p.stat().st_size > 0 for p in logs)
        # a second run over the same work_dir reuses its task loggers instead of stacking handlers
        from canao.codegen.tuning.tuner import task_loggers
        from canao.codegen.tuning.tasks import extract_tasks, fused_module

        tasks = extract_tasks(fused_module(_tiny_model(), host_target), host_target)
        first = task_loggers(tmp_path / "db", tasks)
        second = task_loggers(tmp_path / "db", tasks)
        assert all(len(second[k].handlers) == len(first[k].handlers) == 1 for k in first)
    finally:
        ms_logger.removeHandler(nameless)
