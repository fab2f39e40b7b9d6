"""Tuning bookkeeping without running MetaSchedule's search: trial shares, the torn-line repair that
makes the JSON database survive kill -9, record counting over real records, and batch sizes."""
import pytest

from canao.codegen.tuning.store import TuningStore
from canao.codegen.tuning.tasks import TuningTask, allocate_trials, task_key
from canao.codegen.tuning.tuner import _slice_size, _targets


def _task(key, flop, weight=1):
    return TuningTask(key=key, name=f"t{key}", mod=None, weight=weight, flop=flop)


def test_trials_are_shared_by_weighted_flops_with_a_floor():
    tasks = [_task("1", 1e9, 6), _task("2", 1e6, 6), _task("3", 0.0, 1)]
    shares = allocate_trials(tasks, 200, floor=16)
    assert sum(shares.values()) == 200
    assert min(shares.values()) >= 16
    assert shares["1"] > shares["2"] >= shares["3"]


def test_small_budgets_still_sum_exactly():
    tasks = [_task(str(i), 10.0 * (i + 1)) for i in range(7)]
    for total in (0, 1, 5, 7, 31):
        assert sum(allocate_trials(tasks, total).values()) == total


def test_exhausted_tasks_hand_their_share_to_the_others():
    tasks = [_task("1", 1e9), _task("2", 1e6)]
    manifest = {"tasks": {"2": {"exhausted": True}}}
    targets = _targets(tasks, 100, {"1": 10, "2": 3}, manifest)
    assert targets == {"2": 3, "1": 97}


def test_batches_never_leave_a_short_tail():
    assert _slice_size(100, 32) == 32
    assert _slice_size(40, 32) == 40
    assert _slice_size(5, 32) == 5


def test_torn_last_line_is_dropped_and_records_are_counted(tmp_path):
    from tuning_records import commit, matmul, split_inner

    small, large = matmul(16), matmul(24)
    commit(tmp_path, [(small, split_inner(small, 4), [1e-5]), (large, split_inner(large, 8), [2e-5]),
                      (small, split_inner(small, 8), None)])  # a trial that failed to build or run
    store = TuningStore(tmp_path)
    good = store.records_path.read_text()
    last = good.splitlines()[-1]
    store.records_path.write_text(good + last[: len(last) // 2])  # what kill -9 mid-append leaves
    expected = {task_key(small): 2, task_key(large): 1}
    assert store.record_counts() == expected  # a reader skips the torn line without touching the file
    assert store.records_path.read_text().endswith(last[: len(last) // 2])
    assert store.repair() == 1
    assert store.records_path.read_text() == good
    assert store.repair() == 0  # idempotent
    assert store.record_counts() == expected
    best = store.best_records()
    assert [float(s) for s in best[task_key(small)].run_secs] == [1e-5]  # the failed trial never wins
    assert store.open_database().has_workload(large)  # MetaSchedule itself loads the repaired tables


def test_missing_database_counts_nothing(tmp_path):
    store = TuningStore(tmp_path / "nowhere")
    assert not store.exists() and store.record_counts() == {}


def test_manifest_for_another_target_is_refused(tmp_path):
    from canao.codegen import resolve_target
    from canao.codegen.tuning.tuner import _check_manifest
    from canao.errors import CanaoError

    store = TuningStore(tmp_path)
    store.save_manifest({"tasks": {}, "target": "{\"kind\":\"cuda\"}"})
    with pytest.raises(CanaoError) as err:
        _check_manifest(store, resolve_target("x86"))
    assert "another target" in err.value.cause and "--db" in err.value.fix


def test_only_tuned_kernels_faster_than_the_defaults_are_applied(tmp_path):
    from tvm_ffi import structural_equal

    from canao.codegen.tuning.apply import APPLIED, _winners
    from tuning_records import applied_schedule, commit, matmul, split_inner

    small, large = matmul(16), matmul(24)
    fastest = split_inner(small, 8)
    commit(tmp_path, [(small, split_inner(small, 4), [4e-5]),
                      (small, fastest, [1e-5]),  # small: 10 us tuned
                      (large, split_inner(large, 8), [9e-5])])  # large: 90 us tuned
    store = TuningStore(tmp_path)
    store.save_manifest({"tasks": {task_key(small): {"default_us": 30.0}, task_key(large): {"default_us": 50.0}}})
    folder = _winners(store)
    assert folder == tmp_path / APPLIED
    subset = TuningStore(folder)
    assert subset.record_counts() == {task_key(small): 1}  # large's default (50 us) beats its tuned kernel
    assert structural_equal(applied_schedule(folder, small), fastest.mod)  # the fastest record only
    assert applied_schedule(folder, large) is None

    store.save_manifest({"tasks": {}})  # a database tuned elsewhere: applied as it is
    assert _winners(store) == tmp_path
