"""Tuning bookkeeping without running MetaSchedule: trial shares, the torn-line repair that makes
the JSON database survive kill -9, record counting, and batch sizes."""
import json

import pytest

from canao.codegen.tuning.store import TuningStore
from canao.codegen.tuning.tasks import TuningTask, allocate_trials
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


def _write_db(tmp_path, records_text):
    (tmp_path / "database_workload.json").write_text('["111","AAA"]\n["222","BBB"]\n')
    (tmp_path / "database_tuning_record.json").write_text(records_text)


def test_torn_last_line_is_dropped_and_records_are_counted(tmp_path):
    good = [json.dumps([0, [["trace"], [1e-5], {"kind": "llvm"}, []]]),
            json.dumps([1, [["trace"], [2e-5], {"kind": "llvm"}, []]]),
            json.dumps([0, [["trace"], None, {"kind": "llvm"}, []]])]
    torn = json.dumps([1, [["trace"], [3e-5]]])[:-7]  # what kill -9 mid-append leaves
    _write_db(tmp_path, "\n".join(good) + "\n" + torn)
    store = TuningStore(tmp_path)
    assert store.repair() == 1
    assert store.records_path.read_text() == "\n".join(good) + "\n"
    assert store.record_counts() == {"111": 2, "222": 1}
    assert store.repair() == 0  # idempotent


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
    from canao.codegen.tuning.apply import APPLIED, _winners

    records = [json.dumps([0, [["t"], [4e-5], {"kind": "llvm"}, []]]),
               json.dumps([0, [["t"], [1e-5], {"kind": "llvm"}, []]]),  # task 111: 10 us tuned
               json.dumps([1, [["t"], [9e-5], {"kind": "llvm"}, []]])]  # task 222: 90 us tuned
    _write_db(tmp_path, "\n".join(records) + "\n")
    store = TuningStore(tmp_path)
    store.save_manifest({"tasks": {"111": {"default_us": 30.0}, "222": {"default_us": 50.0}}})
    folder = _winners(store)
    assert folder == tmp_path / APPLIED
    subset = TuningStore(folder)
    assert subset.record_counts() == {"111": 1}  # 222's default (50 us) beats its tuned kernel
    assert json.loads(subset.records_path.read_text())[1][1] == [1e-5]  # the fastest record only

    store.save_manifest({"tasks": {}})  # a database tuned elsewhere: applied as it is
    assert _winners(store) == tmp_path
