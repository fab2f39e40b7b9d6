"""The fusion-aware predictor's error by kernel kind (nas/predictor_kinds.py), on a synthetic dataset
written through the dataset's own row/cache writer, so the replay of each row's own kernel samples is
tested against the real format. No compiling, no timing."""
import json
from types import SimpleNamespace

import pytest

from canao.nas.latency_dataset import _kernel_rows
from canao.nas.predictor import holdout_split
from canao.nas.predictor_kinds import CALIBRATION, OVERHEAD, own_kernel_times, per_kind

GEMM, REDUCE, ELEM, SHUFFLE = "Many-to-Many (GEMM)", "Many-to-Many (reduce)", "One-to-One", "Shuffle"
HELDOUT, SEED, N, OVERHEAD_MS = 0.3, 0, 20, 0.3


def _table(i: int) -> dict:
    """The plan of architecture ``i``: depth 1-4 and one of two widths pick the kernels and their calls."""
    depth, wide = 1 + i % 4, (i // 4) % 2
    width = 256 if wide else 128
    kernels = {"matmul_qkv": (GEMM, ["matmul", "add"], 3 * depth), "matmul_ffn": (GEMM, ["matmul", "gelu"], depth),
               "softmax": (REDUCE, ["softmax"], depth), "layer_norm": (REDUCE, ["layer_norm"], 2 * depth),
               "gelu": (ELEM, ["gelu"], depth), "transpose": (SHUFFLE, ["transpose", "reshape"], 2 * depth)}
    out = {}
    for name, (kind, ops, calls) in kernels.items():
        sig = f"{name}-{width}"
        flops = float(width * width * (64 if kind == GEMM else 1))
        out[name] = {"name": name, "signature": sig, "ops": ops, "shapes": [[1, 64, width]], "flops": flops,
                     "bytes": 4 * 64 * width, "kind": kind, "calls": calls}
    return out


def _true_ms(k: dict) -> float:
    return 1e-6 * k["flops"] + 0.01


def dataset(inject_kind=None, factor=0.5, no_pass=()):
    """(rows, cache): every row measured with a kernel pass (except those in ``no_pass``), whole-model
    time = Σ calls·kernel time + a fixed overhead. The held-out rows of (HELDOUT, SEED) time the kernels of
    ``inject_kind`` ``factor`` times their training value, so the predictor's lookup is off for that
    kind only (factor < 1: injected samples never win the cache's upper running median)."""
    _, test = holdout_split(list(range(N)), HELDOUT, SEED)
    cache, rows = {}, []
    for i in range(N):
        table = _table(i)
        scale = {n: (factor if i in test and k["kind"] == inject_kind else 1.0) for n, k in table.items()}
        per_call = {n: _true_ms(k) * scale[n] for n, k in table.items()}
        passed = i not in no_pass
        m = SimpleNamespace(kernel_ms={n: per_call[n] * k["calls"] for n, k in table.items()} if passed else {},
                            kernel_calls={n: k["calls"] for n, k in table.items()} if passed else {})
        kernels = _kernel_rows(table, m, cache, None)
        whole = sum(per_call[n] * k["calls"] for n, k in table.items()) + OVERHEAD_MS
        ref = 1.0 + 0.01 * i  # a machine slowly getting slower: reference units differ from ms
        rows.append(json.loads(json.dumps({
            "genes": {"encoder": {"hidden": 128, "layers": 1 + i % 4, "ffn": [512], "heads": [4], "type": []}},
            "count": {"params": 1e6, "macs": 1e7}, "kernel_pass": passed, "kernels": kernels,
            "latency": {"mean_ms": whole, "reference_ms": ref, "ratio_to_reference": whole / ref}})))
    return rows, json.loads(json.dumps(cache))


def _kinds_only(report):
    return {k: v for k, v in report["kinds"].items() if k not in (CALIBRATION, OVERHEAD)}


def test_kinds_reported_and_shares_add_up():
    rows, cache = dataset()
    report = per_kind(rows, cache, HELDOUT, SEED)
    kinds = _kinds_only(report)
    assert set(kinds) == {GEMM, REDUCE, ELEM, SHUFFLE}
    assert report["n_analysed"] == report["n_heldout"] == 6
    assert sum(v["share_of_predicted"] for v in kinds.values()) == pytest.approx(1.0, abs=1e-9)
    assert all(v["error_share"] is None for v in report["kinds"].values())  # no error to split
    for v in kinds.values():  # every kernel was measured in training: looked up, and right
        assert v["xgboost"] == 0 and v["mape"] == pytest.approx(0.0, abs=1e-9)
    assert report["overhead_ms"] == pytest.approx(OVERHEAD_MS, abs=1e-9)


@pytest.mark.parametrize("kind", [REDUCE, SHUFFLE])
def test_injected_error_shows_in_that_kinds_row(kind):
    rows, cache = dataset(inject_kind=kind, factor=0.5)
    report = per_kind(rows, cache, HELDOUT, SEED)
    kinds = _kinds_only(report)
    assert kinds[kind]["mape"] == pytest.approx(100.0, rel=1e-6)  # predicted t, measured t/2
    assert kinds[kind]["error_ms"] > 0 and kinds[kind]["error_share"] == pytest.approx(1.0, abs=1e-6)
    for other, v in kinds.items():
        if other != kind:
            assert v["mape"] == pytest.approx(0.0, abs=1e-9) and abs(v["error_share"]) < 1e-6
    assert sum(v["error_share"] for v in report["kinds"].values()) == pytest.approx(1.0, abs=1e-6)


def test_reference_label_keeps_the_split_exact():
    rows, cache = dataset(inject_kind=GEMM, factor=0.5)
    report = per_kind(rows, cache, HELDOUT, SEED, label="reference")
    assert sum(v["error_share"] for v in report["kinds"].values()) == pytest.approx(1.0, abs=1e-6)
    assert max(_kinds_only(report).items(), key=lambda kv: kv[1]["error_share"])[0] == GEMM


def test_rows_without_their_own_kernel_pass_are_left_out():
    _, test = holdout_split(list(range(N)), HELDOUT, SEED)
    rows, cache = dataset(no_pass=(test[0],))
    own = own_kernel_times(rows, cache)
    assert own[test[0]] is None and all(own[i] is not None for i in range(N) if i != test[0])
    assert per_kind(rows, cache, HELDOUT, SEED)["n_analysed"] == 5
    tampered = json.loads(json.dumps(cache))
    tampered["softmax-128"]["samples_ms"].append(1.0)  # a cache from another run: never trusted
    own = own_kernel_times(rows, tampered)
    assert all(own[i] is None for i in range(N) if any(k["signature"] == "softmax-128" for k in rows[i]["kernels"]))


def test_cli_per_kind_prints_table_and_stores_it(tmp_path, monkeypatch, capsys):
    import canao.nas.predictor as predictor
    from canao.cli import main

    rows, cache = dataset(inject_kind=REDUCE)
    data = tmp_path / "lat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "lat.jsonl.kernels.json").write_text(json.dumps(cache))
    # the MLP's fit takes long and is not what this tests
    monkeypatch.setitem(predictor.PREDICTORS, "mlp", predictor.FusionPredictor)
    out = tmp_path / "report.json"
    assert main(["predictor", "eval", "--data", str(data), "--heldout", str(HELDOUT), "--per-kind",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "error by kernel kind" in printed and REDUCE in printed and "residual" in printed
    stored = json.loads(out.read_text())["fusion"]["per_kind"]
    assert stored["kinds"][REDUCE]["error_share"] == pytest.approx(1.0, abs=1e-6)
    (tmp_path / "lat.jsonl.kernels.json").unlink()
    assert main(["predictor", "eval", "--data", str(data), "--per-kind"]) == 2
    assert "kernels.json" in capsys.readouterr().err
