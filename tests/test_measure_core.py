"""The measurement core's statistics, gate and load check, with injected fake timings (no real
timing is asserted anywhere)."""
import itertools
import warnings

import time

import pytest

from canao.errors import CanaoError
from canao.measure import (Gate, Row, assert_quiet_machine, measure, measure_rounds, reference_drift, robust_stats)
from canao.measure.report import BuildReport, CanaoWarning, collecting, record


class Fake:
    """A candidate that reports its own milliseconds from a fixed sequence (reports_ms)."""
    reports_ms = True

    def __init__(self, values, key="fake"):
        self.values = itertools.cycle(values)
        self.key = key
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return next(self.values)


def quiet_load():
    return (0.25, 0.2, 0.1)


def test_robust_stats_and_drift():
    s = robust_stats([5, 1, 2, 3, 4, 100, 3, 3, 2, 4])
    assert s["n"] == 10 and s["min_ms"] == 1 and s["max_ms"] == 100
    assert s["p50_ms"] == 3.0
    assert s["trimmed_kept"] == 8 and s["trimmed_mean_ms"] == pytest.approx((2 + 2 + 3 + 3 + 3 + 4 + 4 + 5) / 8)
    assert s["spread"] == pytest.approx((4 - 2.25) / 3)
    assert robust_stats([]) == {"n": 0}
    assert reference_drift([1, 1, 1, 2, 2, 2]) == pytest.approx(1.0)
    assert reference_drift([1, 1, 1]) == 0.0


def test_gate_reasons():
    gate = Gate(max_spread=0.1, max_drift=0.2, max_tries=3)
    assert gate.check([1.0] * 8, baseline_ms=1.0)[0] == []
    reasons, figures = gate.check([1.0, 1.0, 1.0, 1.0, 3.0, 3.0, 3.0, 3.0], baseline_ms=1.0)
    assert any("spread" in r for r in reasons) and any("drifted" in r for r in reasons)
    assert any("slower than the quietest" in r for r in reasons)
    reasons, _ = Gate(max_spread=1, max_drift=0.2).check([2.0] * 6, baseline_ms=1.0)
    assert len(reasons) == 1 and "slower" in reasons[0]


def test_clean_reference_measures_once_and_stores_ratio_and_load():
    ref = Fake([2.0], key="fake-clean")
    row = measure({"a": Fake([4.0, 6.0]), "b": Fake([1.0])}, rounds=6, warmup=2, reference=ref,
                  gate=Gate(0.1, 0.1, 3), baseline_ms=2.0, load=quiet_load)
    assert row.tries == 1 and not row.flagged and row.reasons == []
    assert row.samples_ms["b"] == [1.0] * 6 and len(row.samples_ms["a"]) == 6
    assert row.ratio("b") == pytest.approx(0.5) and row.ratio("a") == pytest.approx(2.5)
    noise = row.noise()
    assert noise["reference_ms"] == 2.0 and noise["load_avg_1m"] == 0.25 and noise["tries"] == 1
    assert ref.calls == 2 + 6  # warm-up + one per round: timed in the same rounds


def test_noisy_reference_remeasures_then_flags():
    ref = Fake([1.0, 5.0], key="fake-noisy")  # spread far beyond any threshold, every try
    cand = Fake([3.0])
    row = measure({"x": cand}, rounds=8, warmup=0, reference=ref, gate=Gate(0.2, 0.2, 3), baseline_ms=1.0,
                  load=quiet_load)
    assert row.tries == 3 and row.flagged
    assert sum(r.startswith("try ") for r in row.reasons) >= 3
    assert cand.calls == 3 * 8  # measured again on every try
    assert row.noise()["flagged"] is True


def test_noise_that_passes_keeps_the_clean_try():
    # first try: reference slow (a burst of load); second: quiet
    values = iter([5.0] * 4 + [1.0] * 4)
    class Burst(Fake):
        def __call__(self):
            return next(values)

    row = measure({"x": Fake([3.0])}, rounds=4, warmup=0, reference=Burst([0], key="fake-burst"), gate=Gate(0.2, 0.2, 3),
                  baseline_ms=1.0, load=quiet_load)
    assert row.tries == 2 and not row.flagged
    assert len(row.reasons) == 1 and row.reasons[0].startswith("try 1")
    assert row.reference_ms == [1.0] * 4


def test_measure_rounds_batches_and_failures():
    ref = Fake([1.0], key="fake-batch")
    rounds = []

    def run_round(r):
        rounds.append(r)
        return {"a": [2.0, 2.5], "b": None if r == 1 else 4.0}

    row = measure_rounds(run_round, ["a", "b"], 3, reference=ref, gate=Gate(0.1, 0.1, 2), baseline_ms=1.0,
                         load=quiet_load)
    assert rounds == [0, 1, 2] and row.tries == 1
    assert row.samples_ms["a"] == [2.0, 2.5] * 3 and row.failed == ["b"]
    assert len(row.reference_ms) == 6  # before and after each batch
    assert row.best_ms("a") == 2.0 and row.median_ms("a") == pytest.approx(2.25)


def test_max_seconds_lets_a_slow_candidate_leave_early():
    row = measure({"slow": Fake([1000.0]), "fast": Fake([1.0])}, rounds=10, warmup=0, max_seconds=1.0,
                  reference=Fake([1.0], key="fake-slow"), gate=Gate(1, 1, 1), baseline_ms=1.0, load=quiet_load)
    assert len(row.samples_ms["slow"]) == 3 and len(row.samples_ms["fast"]) == 10


def test_assert_quiet_machine(monkeypatch):
    monkeypatch.delenv("CANAO_ALLOW_BUSY", raising=False)
    with pytest.raises(CanaoError, match="load average"):
        assert_quiet_machine(load=lambda: (7.0, 3.0, 1.0), max_load=1.0)
    assert assert_quiet_machine(override=True, load=lambda: (7.0, 3.0, 1.0), max_load=1.0) == 7.0
    assert assert_quiet_machine(load=lambda: (0.5, 0.5, 0.5), max_load=1.0) == 0.5
    monkeypatch.setenv("CANAO_ALLOW_BUSY", "1")
    assert assert_quiet_machine(load=lambda: (7.0, 3.0, 1.0), max_load=1.0) == 7.0


def test_quiet_check_discounts_this_process_own_compile_work(monkeypatch):
    """A command's own compile raises the load average; only the rest counts as another job."""
    from canao.measure.core import own_load

    monkeypatch.delenv("CANAO_ALLOW_BUSY", raising=False)
    assert assert_quiet_machine(load=lambda: (1.8, 1.0, 0.5), max_load=1.0, own=lambda: 1.5) == 1.8
    with pytest.raises(CanaoError, match="1.30 of it not ours"):
        assert_quiet_machine(load=lambda: (1.8, 1.0, 0.5), max_load=1.0, own=lambda: 0.5)
    start = time.process_time()
    while time.process_time() - start < 0.5:  # burn CPU: the estimate must see it
        pass
    assert own_load() > 0.0


def test_record_collects_into_nested_reports_and_warns_once():
    with collecting() as outer:
        with collecting() as inner:
            with pytest.warns(CanaoWarning, match="schedule-rule at k1"):
                record("schedule-rule", "k1", ValueError("boom\nmore"))
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                record("schedule-rule", "k1", ValueError("boom"))  # the same again: no second warning
    assert inner.schedule_rule_errors == outer.schedule_rule_errors
    assert inner.schedule_rule_errors[0].why == "ValueError: boom"
    assert isinstance(inner, BuildReport) and not inner.ok
    assert inner.to_json()["schedule_rule_errors"][0]["where"] == "k1"
    assert isinstance(Row({}, []).noise(), dict)
