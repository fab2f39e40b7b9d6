"""Where the fusion-aware predictor's error comes from, by kernel kind (issue 14).

The predictor's latency is ``a·Σ calls·t_k + b`` over the compiled plan, ``t_k`` looked up (the
signature was measured in the training rows) or guessed by XGBoost. On a held-out architecture whose
kernels were timed in its own per-kernel pass, the whole-model error splits exactly into

    error = Σ_kinds Σ_k calls·(t_k − m_k)  +  [(a−1)·Σ calls·t_k + b]  −  [M − Σ calls·m_k]
            kernel-time error per kind          calibration                 residual

with ``m_k`` the kernel's own measured time per call and ``M`` the measured whole-model latency: the
residual is what no kernel explains (VM dispatch between calls, minus the instrument hook's own cost,
which the per-kernel times include, plus whatever differed between the whole-model timing and the
kernel pass), and the calibration absorbs its mean, not its spread across architectures.

Truth per kernel: a row's ``ms_per_call`` is *not* its own measurement but the running median of the
kernel cache (``<data>.kernels.json``) when the row was written, and rows without a kernel pass
(``kernel_pass: false``) measured no kernel at all. The cache keeps every sample in write order, so
:func:`own_kernel_times` recovers each kernel-pass row's own sample (checked against the stored
running medians); rows without one are left out of the per-kind table and counted.

Kinds are the ones the plan rows carry (``nas.kernels.kernel_table``: the LP-Fusion planner's
DNNFusion mapping type of the fused group, read from the PrimFunc's op pattern and block structure;
"other" is kernel_table's name fallback when the PrimFunc's name is not a planner group name)."""
from typing import Dict, List, Optional

import numpy as np

from canao.errors import CanaoError

from .predictor import (LABELS, FusionPredictor, fit_kernel_model, holdout_split, in_reference_units,
                        kernel_features, median_reference_ms, training_kernels)

CALIBRATION, OVERHEAD = "calibration (a·sum+b − sum)", "own kernels − whole (−residual)"


def _median(values: List[float]) -> float:
    """The cache's running median (``nas.latency_dataset._kernel_rows``): upper middle, no averaging."""
    s = sorted(values)
    return s[len(s) // 2]


def own_kernel_times(rows: List[dict], cache: Dict[str, dict]) -> List[Optional[Dict[str, float]]]:
    """Per row (file order): signature -> the row's own measured ms per call, or None for a row with
    no kernel pass or whose samples cannot be attributed.

    Why replay the cache: rows store running medians, so a held-out row's ``ms_per_call`` mixes in
    earlier rows' samples; its own sample is the next one in the cache's list for that signature.
    A sample counts only when the replayed running median equals the stored ``ms_per_call`` and the
    sample count per signature matches the cache (a cache from another run is never trusted)."""
    pos: Dict[str, int] = {}
    out: List[Optional[Dict[str, float]]] = []
    for r in rows:
        own: Optional[Dict[str, float]] = {} if r.get("kernel_pass") else None
        for k in r["kernels"]:
            sig, samples = k["signature"], cache.get(k["signature"], {}).get("samples_ms", [])
            n = pos.get(sig, 0) + (1 if r.get("kernel_pass") else 0)
            ok = n <= len(samples) and (n == 0 or _median(samples[:n]) == k.get("ms_per_call"))
            if own is not None:
                own = {**own, sig: samples[n - 1]} if ok else None
            pos[sig] = n
        out.append(own)
    bad = {s for s, n in pos.items() if n != len(cache.get(s, {}).get("samples_ms", []))}
    return [None if o is None or bad & set(o) else o for o in out]


def kernel_records(pred: FusionPredictor, row: dict, own: Dict[str, float], factor: float) -> List[dict]:
    """One record per kernel of ``row``'s plan: kind, calls, predicted and measured ms per call, source.
    ``factor`` puts the row's own kernel times in the label's units (1 for ms; the row's reference
    factor for ``--label reference``, the same factor its whole-model latency got)."""
    return [{"kind": k.get("kind") or "other", "calls": k["calls"], "pred": t, "true": own[k["signature"]] * factor,
             "source": src, "signature": k["signature"]}
            for k, (t, src) in zip(row["kernels"], pred.kernel_times(row["kernels"]))]


def error_terms(pred: FusionPredictor, records: List[dict], measured: float) -> Dict[str, float]:
    """The exact split of one architecture's error (module docstring): kind -> Σ calls·(t−m), plus the
    calibration and overhead terms; they add up to ``predicted − measured``."""
    terms: Dict[str, float] = {}
    for r in records:
        terms[r["kind"]] = terms.get(r["kind"], 0.0) + r["calls"] * (r["pred"] - r["true"])
    s_pred = sum(r["calls"] * r["pred"] for r in records)
    terms[CALIBRATION] = (pred.a - 1.0) * s_pred + pred.b
    terms[OVERHEAD] = -(measured - sum(r["calls"] * r["true"] for r in records))
    return terms


def kind_rows(records: List[List[dict]], terms: List[Dict[str, float]], errors: List[float], measured: List[float],
              measured_in_train: set, cache: Dict[str, dict]) -> Dict[str, dict]:
    """The per-kind table over the analysed architectures, kinds by predicted time, then the
    calibration and residual rows (error figures only)."""
    flat = [r for recs in records for r in recs]
    total_pred = sum(r["calls"] * r["pred"] for r in flat) or 1.0
    time_of = {k: sum(r["calls"] * r["pred"] for r in flat if r["kind"] == k) for k in {r["kind"] for r in flat}}
    out = {k: kernel_figures([r for r in flat if r["kind"] == k], total_pred, measured_in_train, cache)
           for k in sorted(time_of, key=lambda k: -time_of[k])}
    for name in list(out) + [CALIBRATION, OVERHEAD]:
        out.setdefault(name, {}).update(error_figures([t.get(name, 0.0) for t in terms], errors, measured))
    return out


def kernel_figures(ks: List[dict], total_pred: float, measured_in_train: set, cache: Dict[str, dict]) -> dict:
    """One kind's kernels: counts by source, share of the predicted kernel sum, per-kernel MAPE (all,
    and XGBoost's alone), the repeat spread to read it against, and time-weighted WAPE and bias."""
    ape = [abs(r["pred"] - r["true"]) / r["true"] for r in ks if r["true"] > 0]
    xgb = [abs(r["pred"] - r["true"]) / r["true"] for r in ks if r["true"] > 0 and r["source"] == "xgboost"]
    true_sum = sum(r["calls"] * r["true"] for r in ks) or 1.0
    return {
        "kernels": len(ks), "calls": int(sum(r["calls"] for r in ks)),
        "lookup": sum(r["source"] == "lookup" for r in ks), "xgboost": sum(r["source"] == "xgboost" for r in ks),
        "lookup_not_measured_in_train": sum(r["source"] == "lookup" and r["signature"] not in measured_in_train
                                            for r in ks),
        "share_of_predicted": sum(r["calls"] * r["pred"] for r in ks) / total_pred,
        "mape": 100 * float(np.mean(ape)) if ape else None,
        "mape_xgboost": 100 * float(np.mean(xgb)) if xgb else None,
        "repeat_spread_pct": repeat_spread(cache, {r["signature"] for r in ks}),
        "wape": 100 * sum(r["calls"] * abs(r["pred"] - r["true"]) for r in ks) / true_sum,
        "bias_pct": 100 * sum(r["calls"] * (r["pred"] - r["true"]) for r in ks) / true_sum}


def error_figures(vals: List[float], errors: List[float], measured: List[float]) -> dict:
    """One term's part of the whole-model error: mean signed and absolute ms per architecture, and
    ``error_share`` = Σ_arch sign(error)·term / Σ_arch |error|.

    Why projected on each architecture's own error direction: signs then do not cancel across
    architectures, and the shares of the kinds, the calibration and the residual add up to 1 (a
    share above 1 or below 0 means that term pushed the error further or pulled against it). With
    no error to split (float noise of the measured latencies) the share is None, not a ratio of
    rounding errors."""
    abs_err = sum(abs(e) for e in errors)
    splittable = abs_err > 1e-9 * sum(abs(m) for m in measured)
    share = float(sum(np.sign(e) * v for e, v in zip(errors, vals)) / abs_err) if splittable else None
    return {"error_ms": float(np.mean(vals)), "abs_error_ms": float(np.mean(np.abs(vals))), "error_share": share}


def repeat_spread(cache: Dict[str, dict], signatures) -> Optional[float]:
    """Mean |sample − median| / sample (%) over the cache samples of ``signatures`` with 3 or more:
    how far one timing of a kernel strays from its usual time. A looked-up kernel cannot be predicted
    closer than that to one row's own timing, so it is the floor to read the per-kernel MAPE against."""
    dev = [abs(x - float(np.median(v))) / x for s in signatures
           for v in [cache.get(s, {}).get("samples_ms", [])] if len(v) >= 3 for x in v if x > 0]
    return 100 * float(np.mean(dev)) if dev else None


def xgboost_unseen(train: List[dict], folds: int = 5, seed: int = 0) -> Dict[str, dict]:
    """The XGBoost half scored on kernels it has not seen: the training rows' signatures in ``folds``
    seeded folds, each predicted by a model fitted (as the predictor fits it) on the other folds,
    against the looked-up median. Why: held-out architectures reuse almost every kernel of the
    training ones, so on them XGBoost predicts a handful of kernels at most and says little."""
    import xgboost as xgb

    known, feats = training_kernels(train)
    sigs = sorted(known)
    if len(sigs) < folds:
        return {}
    fold = np.random.default_rng(seed).permutation(len(sigs)) % folds
    guess: Dict[str, float] = {}
    for f in range(folds):
        fit_on = {s: known[s] for s, g in zip(sigs, fold) if g != f}
        test = [s for s, g in zip(sigs, fold) if g == f]
        model = fit_kernel_model(fit_on, feats)
        X = np.array([kernel_features(feats[s]) for s in test])
        guess.update(zip(test, np.exp(model.predict(xgb.DMatrix(X)))))
    out: Dict[str, dict] = {}
    for kind in sorted({feats[s].get("kind") or "other" for s in sigs}):
        ks = [s for s in sigs if (feats[s].get("kind") or "other") == kind]
        err = [abs(float(guess[s]) - known[s]) / known[s] for s in ks]
        out[kind] = {"signatures": len(ks), "mape": 100 * float(np.mean(err)),
                     "median_ape": 100 * float(np.median(err)),
                     "wape": 100 * sum(abs(float(guess[s]) - known[s]) for s in ks) / sum(known[s] for s in ks)}
    return out


def _label_rows(train: List[dict], test: List[dict], label: str):
    """(train, test, per-test-row factor) in the label's units, as ``predictor.evaluate`` converts."""
    if label == "ms":
        return train, test, [1.0] * len(test)
    scale = median_reference_ms(train)
    factors = [scale / r["latency"]["reference_ms"] for r in test]
    return in_reference_units(train, scale), in_reference_units(test, scale), factors


def per_kind(rows: List[dict], cache: Dict[str, dict], heldout: float = 0.2, seed: int = 0,
             label: str = "ms") -> dict:
    """The fusion-aware predictor's held-out error by kernel kind, on the split ``evaluate`` uses
    (same ``holdout_split``, seed and label). See the module docstring for the terms."""
    if label not in LABELS:
        raise CanaoError(f"unknown label {label!r}", f"use one of {', '.join(LABELS)}")
    own_of = {id(r): o for r, o in zip(rows, own_kernel_times(rows, cache))}
    train_raw, test_raw = holdout_split(rows, heldout, seed)
    train, test, factors = _label_rows(train_raw, test_raw, label)
    pred = FusionPredictor().fit(train)
    analysed = [(row, own_of[id(raw)], f) for raw, row, f in zip(test_raw, test, factors) if own_of[id(raw)]]
    if not analysed:
        raise CanaoError(f"none of the {len(test)} held-out architectures has its own per-kernel times "
                         "(kernel_pass rows with a matching <data>.kernels.json)",
                         "give the dataset's kernel cache, or a larger --heldout")
    records = [kernel_records(pred, row, own, f) for row, own, f in analysed]
    measured = [row["latency"]["mean_ms"] for row, _, _ in analysed]
    errors = [pred.predict_kernels(row["kernels"]) - m for (row, _, _), m in zip(analysed, measured)]
    terms = [error_terms(pred, recs, m) for recs, m in zip(records, measured)]
    residual = [-t[OVERHEAD] / m for t, m in zip(terms, measured)]
    measured_in_train = {s for r in train_raw for s in (own_of[id(r)] or {})}
    return {"label": label, "seed": seed, "n_heldout": len(test), "n_analysed": len(analysed),
            "calibration": {"a": float(pred.a), "b_ms": float(pred.b)},
            "mape_analysed": 100 * float(np.mean([abs(e) / m for e, m in zip(errors, measured)])),
            "mean_abs_error_ms": float(np.mean(np.abs(errors))),
            "overhead_ms": float(np.mean([-t[OVERHEAD] for t in terms])),
            "overhead_pct": 100 * float(np.mean(residual)), "overhead_sd_pct": 100 * float(np.std(residual)),
            "kinds": kind_rows(records, terms, errors, measured, measured_in_train, cache),
            "xgboost_unseen": xgboost_unseen(train, seed=seed)}


def _cell(v, spec: str) -> str:
    """``v`` formatted with ``spec``; a dash of the same width when the row has no such figure."""
    width = int("".join(c for c in spec.split(".")[0] if c.isdigit()))
    return "-".rjust(width) if v is None else format(v, spec)


def format_table(report: dict) -> str:
    """The per-kind report as text (what ``canao predictor eval --per-kind`` prints)."""
    lines = [f"fusion-aware predictor, error by kernel kind (label {report['label']}, seed {report['seed']}): "
             f"{report['n_analysed']} of {report['n_heldout']} held-out architectures have their own kernel "
             f"times; on them MAPE {report['mape_analysed']:.1f}%, mean |error| {report['mean_abs_error_ms']:.3f} ms; "
             f"a = {report['calibration']['a']:.3f}, b = {report['calibration']['b_ms']:.3f} ms",
             f"{'kind':<38} {'kernels':>7} {'xgb':>4} {'pred%':>6} {'MAPE%':>6} {'spread%':>7} {'WAPE%':>6} "
             f"{'bias%':>6} {'err ms':>7} {'|err| ms':>8} {'err share':>9}"]
    for kind, r in report["kinds"].items():
        pred = 100 * r["share_of_predicted"] if "share_of_predicted" in r else None
        lines.append(f"{kind:<38} {_cell(r.get('kernels'), '7d')} {_cell(r.get('xgboost'), '4d')} "
                     f"{_cell(pred, '6.1f')} {_cell(r.get('mape'), '6.1f')} "
                     f"{_cell(r.get('repeat_spread_pct'), '7.1f')} {_cell(r.get('wape'), '6.1f')} "
                     f"{_cell(r.get('bias_pct'), '+6.1f')} {r['error_ms']:>+7.3f} {r['abs_error_ms']:>8.3f} "
                     f"{_cell(r['error_share'], '+9.2f')}")
    lines.append(f"residual no kernel explains (whole-model time minus the row's own kernel times: VM dispatch, "
                 f"less the instrument hook's cost, plus whatever differed between the two timings): "
                 f"mean {report['overhead_ms']:+.3f} ms per architecture, {report['overhead_pct']:+.1f}% "
                 f"± {report['overhead_sd_pct']:.1f}% (sd) of the measured latency")
    leaked = sum(r.get("lookup_not_measured_in_train", 0) for r in report["kinds"].values())
    if leaked:
        lines.append(f"{leaked} looked-up kernels have signatures timed only on held-out rows (training rows store "
                     "running medians of the cache, which include those samples)")
    xg = report.get("xgboost_unseen") or {}
    if xg:
        lines.append("XGBoost on kernel signatures it has not seen (5 folds over the training signatures): "
                     + "; ".join(f"{k} n={v['signatures']} MAPE {v['mape']:.0f}% (median {v['median_ape']:.0f}%)"
                                 for k, v in xg.items()))
    return "\n".join(lines)
