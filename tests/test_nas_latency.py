"""Latency dataset resume after an interrupt; predictor metrics computed on held-out architectures."""
import json

import numpy as np
import pytest

from canao.codegen import resolve_target
from canao.errors import CanaoError
from canao.nas.latency_dataset import build_dataset, kernel_cache_path, read_rows
from canao.nas.measurer import LocalMeasurer, trimmed
from canao.nas.predictor import evaluate, holdout_split, metrics
from canao.nas.spaces import load_space


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """3 architectures measured with an interrupt after the first row, then resumed."""
    space = load_space("bert_minilm_small")
    out = tmp_path_factory.mktemp("ld") / "rows.jsonl"
    fast = LocalMeasurer(warmup=1, repeat=5, kernel_repeat=1, allow_busy=True)

    def stop(i, row):
        raise Interrupted

    with pytest.raises(Interrupted):
        build_dataset(space, resolve_target("x86"), 3, out, seq_len=16, measurer=fast, progress=False, on_row=stop)
    assert len(read_rows(out)) == 1
    with open(out, "ab") as f:  # a torn line, as kill -9 in the middle of a write would leave
        f.write(b'{"genes": {"enc')
    rows = build_dataset(space, resolve_target("x86"), 3, out, seq_len=16, measurer=fast, progress=False)
    return space, out, rows


def test_resume_neither_duplicates_nor_loses_rows(dataset):
    space, out, rows = dataset
    keys = [space.to_json(r["genes"]) for r in rows]
    assert len(rows) == 3 and len(set(keys)) == 3
    assert all(line.strip() for line in out.read_text().splitlines())  # the torn line was cut
    again = build_dataset(space, resolve_target("x86"), 3, out, seq_len=16,
                          measurer=LocalMeasurer(1, 5, 1, allow_busy=True), progress=False)
    assert [space.to_json(r["genes"]) for r in again] == keys  # nothing re-measured


def test_rows_carry_the_plan_and_kernels_are_cached_by_signature(dataset):
    space, out, rows = dataset
    cache = json.loads(kernel_cache_path(out).read_text())
    for r in rows:
        assert r["latency"]["mean_ms"] > 0 and r["latency"]["kept"] <= r["latency"]["n"]
        # every row carries the measurement core's noise record
        assert r["latency"]["reference_ms"] > 0 and r["latency"]["ratio_to_reference"] > 0
        assert r["latency"]["tries"] >= 1 and isinstance(r["latency"]["flagged"], bool)
        assert "load_avg_1m" in r["latency"]
        assert r["kernels"] and all(k["signature"] in cache for k in r["kernels"])
        assert all(k["calls"] >= 1 for k in r["kernels"])
    # a signature shared by two architectures is one cache entry
    sigs = [k["signature"] for r in rows for k in r["kernels"]]
    assert len(cache) <= len(set(sigs))


def test_predictors_evaluate_on_heldout_architectures(dataset):
    _, _, rows = dataset
    train, test = holdout_split(rows, 0.34, seed=0)
    assert len(test) == 1 and not {id(r) for r in train} & {id(r) for r in test}
    report = evaluate(rows, heldout=0.34, seed=0)
    for key in ("fusion", "mlp"):
        assert report[key]["n_heldout"] == 1 and report[key]["n_train"] == 2
        assert 0 <= report[key]["within_5pct"] <= report[key]["within_10pct"] <= 1


def test_reference_units_rescale_each_row_by_its_own_reference(dataset):
    """A row timed while the machine was 2x slower (model and reference alike) gets the same
    latency in reference units as when it was quiet; a row without a ratio is a one-line error."""
    from canao.nas.predictor import in_reference_units, median_reference_ms

    _, _, rows = dataset
    quiet = rows[0]
    slow = json.loads(json.dumps(quiet))
    slow["latency"].update(mean_ms=2 * quiet["latency"]["mean_ms"], reference_ms=2 * quiet["latency"]["reference_ms"])
    a, b = in_reference_units([quiet, slow], 1.0)
    assert a["latency"]["mean_ms"] == b["latency"]["mean_ms"] == quiet["latency"]["ratio_to_reference"]
    assert quiet["latency"]["mean_ms"] != a["latency"]["mean_ms"]  # copies: the input rows are untouched
    assert median_reference_ms(rows) > 0
    report = evaluate(rows, heldout=0.34, seed=0, label="reference")
    assert report["fusion"]["label"] == "reference" and report["fusion"]["n_heldout"] == 1
    blind = json.loads(json.dumps(quiet))
    blind["latency"]["ratio_to_reference"] = None
    with pytest.raises(CanaoError, match="label ms"):
        in_reference_units([blind], 1.0)


def test_local_measurer_refuses_a_busy_machine(monkeypatch):
    import canao.measure.core as core

    monkeypatch.delenv("CANAO_ALLOW_BUSY", raising=False)
    monkeypatch.setattr(core, "load_average", lambda: (99.0, 99.0, 99.0))
    with pytest.raises(CanaoError, match="another heavy job"):
        LocalMeasurer().measure(None, None, {}, kernels=False)  # refused before anything runs


def test_metrics_match_hand_computed_values():
    m = metrics([1.0, 2.15, 2.97, 5.0], [1.0, 2.0, 3.0, 4.0])
    # relative errors 0, 0.075, 0.01, 0.25
    assert m["rmse_ms"] == pytest.approx(np.sqrt((0 + 0.0225 + 0.0009 + 1.0) / 4))
    assert m["mape"] == pytest.approx(100 * (0 + 0.075 + 0.01 + 0.25) / 4)
    assert m["within_5pct"] == pytest.approx(0.5)
    assert m["within_10pct"] == pytest.approx(0.75)
    assert m["n_heldout"] == 4
    with pytest.raises(CanaoError):
        metrics([], [])


def test_trimmed_drops_the_extremes_like_hat():
    t = trimmed([100.0] + [1.0] * 8 + [0.0])
    assert t["mean_ms"] == pytest.approx(1.0) and t["kept"] == 8


def test_kernel_calls_counted_in_the_ir_match_the_vm():
    """The plan's call counts (read from the Relax IR) are what the VM really launches: rows whose
    kernels came from the cache (no per-kernel pass) and the search's predictions rely on them."""
    from canao.nas.kernels import kernel_table
    from canao.nas.measurer import compile_subnet

    space = load_space("bert_minilm_small")
    genes = space.largest()
    imported, compiled, inputs = compile_subnet(space, genes, resolve_target("x86"), 16)
    launched = LocalMeasurer(1, 3, 1, allow_busy=True).measure(compiled, imported, inputs, kernels=True).kernel_calls
    planned = {name: k["calls"] for name, k in kernel_table(compiled).items() if k["calls"]}
    assert planned == launched
    assert max(planned.values()) > 1  # a layer's kernels run once per layer
