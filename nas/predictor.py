"""Latency predictors trained on a latency dataset, and the metrics they report about themselves.

* ``FusionPredictor`` (CANAO's): the compiled plan's kernels, each timed from the dataset when its
  structural signature was measured, else predicted by XGBoost from its features (op kinds, mapping
  kind, FLOPs, bytes, shapes); the per-call sum times calls, then a linear calibration fitted on
  whole-model measurements (the sum misses the VM's own overhead between calls).
* ``ArchMLP`` (HAT's): a small MLP on architecture features (hidden, depth, mean FFN, mean heads,
  LSRA layers, params, MACs) -> latency."""
import math
import os
import pickle
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from canao.errors import CanaoError

from .kernels import OP_KINDS

KINDS = ["One-to-One", "One-to-Many", "Reorganize", "Shuffle", "Many-to-Many (GEMM)", "Many-to-Many (reduce)", "other"]


def metrics(pred: Sequence[float], true: Sequence[float]) -> Dict[str, float]:
    """rmse_ms, mape (%), within_5pct / within_10pct (shares 0..1) of |pred-true|/true, n_heldout."""
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if len(p) != len(t) or len(t) == 0:
        raise CanaoError(f"{len(p)} predictions for {len(t)} measurements", "evaluate on a non-empty held-out set")
    rel = np.abs(p - t) / t
    return {"rmse_ms": float(np.sqrt(np.mean((p - t) ** 2))), "mape": float(100 * rel.mean()),
            "within_5pct": float(np.mean(rel <= 0.05)), "within_10pct": float(np.mean(rel <= 0.10)),
            "n_heldout": int(len(t))}


def holdout_split(rows: List[dict], heldout: float = 0.2, seed: int = 0):
    """Held-out architectures: a seeded share of the rows (never fewer than 1, never all)."""
    if len(rows) < 2:
        raise CanaoError(f"{len(rows)} measured architectures cannot be split", "measure at least 2 (-n 2)")
    idx = np.random.default_rng(seed).permutation(len(rows))
    k = min(len(rows) - 1, max(1, int(round(len(rows) * heldout))))
    return [rows[i] for i in sorted(idx[k:])], [rows[i] for i in sorted(idx[:k])]


def kernel_features(k: dict) -> List[float]:
    dims = [d for s in k["shapes"] for d in s] or [1]
    return ([1.0 if o in k["ops"] else 0.0 for o in OP_KINDS] + [1.0 if k["kind"] == c else 0.0 for c in KINDS]
            + [math.log1p(k["flops"]), math.log1p(k["bytes"]), float(len(k["shapes"])), math.log1p(max(dims)),
               math.log1p(float(np.prod([max(1, d) for d in (k["shapes"][-1] if k["shapes"] else [1])])))])


def training_kernels(rows: List[dict]) -> Tuple[Dict[str, float], Dict[str, dict]]:
    """signature -> median of the rows' ``ms_per_call``, and signature -> one kernel row (its features).
    What the fusion-aware predictor looks up; shared with the per-kind analysis, which refits the
    XGBoost half on part of these signatures to score it on kernels it has not seen."""
    samples: Dict[str, list] = {}
    feats: Dict[str, dict] = {}
    for r in rows:
        for k in r["kernels"]:
            if k.get("ms_per_call"):
                samples.setdefault(k["signature"], []).append(k["ms_per_call"])
                feats[k["signature"]] = k
    return {s: float(np.median(v)) for s, v in samples.items()}, feats


def fit_kernel_model(known: Dict[str, float], feats: Dict[str, dict]):
    """XGBoost on log ms per call from :func:`kernel_features`: the guess for a kernel never measured."""
    import xgboost as xgb

    X = np.array([kernel_features(feats[s]) for s in known])
    y = np.log(np.array([known[s] for s in known]) + 1e-6)
    return xgb.train({"max_depth": 4, "eta": 0.1, "seed": 0, "nthread": 1, "objective": "reg:squarederror"},
                     xgb.DMatrix(X, label=y), num_boost_round=200)


class FusionPredictor:
    name = "fusion-aware (kernel sum + XGBoost + calibration)"

    def fit(self, rows: List[dict]) -> "FusionPredictor":
        self.known, feats = training_kernels(rows)
        if not self.known:
            raise CanaoError("the fusion-aware predictor needs per-kernel times, and no row of this dataset has "
                             "any (rows measured over RPC carry none)",
                             "train --kind mlp on a device dataset, or measure a --target x86 dataset here")
        self.model = fit_kernel_model(self.known, feats)
        sums = np.array([self.plan_sum(r["kernels"]) for r in rows])
        lat = np.array([r["latency"]["mean_ms"] for r in rows])
        self.a, self.b = (np.polyfit(sums, lat, 1) if len(rows) >= 2 and np.ptp(sums) > 0 else (1.0, 0.0))
        return self

    def kernel_times(self, kernels: List[dict]) -> List[Tuple[float, str]]:
        """(ms per call, source) for each kernel of a plan; source "lookup" (signature measured in the
        training rows) or "xgboost". Separate from :meth:`plan_sum` so the per-kind error analysis
        (``nas.predictor_kinds``) can tell which half of the predictor each kernel's error comes from."""
        unknown = [k for k in kernels if k["signature"] not in self.known]
        guessed = {}
        if unknown:
            import xgboost as xgb

            pred = np.exp(self.model.predict(xgb.DMatrix(np.array([kernel_features(k) for k in unknown]))))
            guessed = {k["name"]: float(p) for k, p in zip(unknown, pred)}
        return [(self.known[k["signature"]], "lookup") if k["signature"] in self.known
                else (guessed.get(k["name"], 0.0), "xgboost") for k in kernels]

    def plan_sum(self, kernels: List[dict]) -> float:
        return float(sum(k["calls"] * t for k, (t, _) in zip(kernels, self.kernel_times(kernels))))

    def predict_kernels(self, kernels: List[dict]) -> float:
        return float(self.a * self.plan_sum(kernels) + self.b)

    def predict_rows(self, rows: List[dict]) -> List[float]:
        """Held-out rows: their kernels' own measurements are not used (only their plan)."""
        return [self.predict_kernels(r["kernels"]) for r in rows]


def arch_features(genes: dict, count: dict) -> List[float]:
    enc = genes["encoder"]
    return [enc["hidden"], enc["layers"], float(np.mean(enc["ffn"])), float(np.mean(enc["heads"])),
            float(sum(t == "lsra" for t in enc.get("type", []))), count["params"] / 1e6, count["macs"] / 1e6]


class ArchMLP:
    name = "HAT arch-feature MLP"

    def fit(self, rows: List[dict], steps: int = 2000, seed: int = 0) -> "ArchMLP":
        import torch

        torch.manual_seed(seed)
        X = np.array([arch_features(r["genes"], r["count"]) for r in rows], dtype=np.float32)
        y = np.array([r["latency"]["mean_ms"] for r in rows], dtype=np.float32)
        self.scale = np.maximum(np.abs(X).max(0), 1.0)
        self.y_scale = float(y.max())
        self.floor_ms = float(y.min())
        self.net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], 400), torch.nn.ReLU(), torch.nn.Linear(400, 400),
                                       torch.nn.ReLU(), torch.nn.Linear(400, 1))
        opt = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        xt, yt = torch.tensor(X / self.scale), torch.tensor(y / self.y_scale)
        for _ in range(steps):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(self.net(xt).squeeze(-1), yt)
            loss.backward()
            opt.step()
        return self

    def predict_features(self, feats: List[List[float]]) -> List[float]:
        import torch

        with torch.no_grad():
            x = torch.tensor(np.asarray(feats, dtype=np.float32) / self.scale)
            pred = self.net(x).squeeze(-1).numpy() * self.y_scale
        # An MLP extrapolates freely (it predicted -0.32 ms for a 7.4 ms winner, which the search
        # then accepted); nothing is faster than the fastest architecture it was trained on.
        return np.maximum(pred, getattr(self, "floor_ms", 0.0)).astype(float).tolist()

    def predict_rows(self, rows: List[dict]) -> List[float]:
        return self.predict_features([arch_features(r["genes"], r["count"]) for r in rows])


PREDICTORS = {"fusion": FusionPredictor, "mlp": ArchMLP}


LABELS = ("ms", "reference")


def in_reference_units(rows: List[dict], reference_ms: float) -> List[dict]:
    """Copies of ``rows`` whose ``mean_ms`` is their ratio to the reference workload times
    ``reference_ms``: each latency as if measured while the reference took ``reference_ms``.

    Why: rows are timed minutes apart on a shared machine; the reference timed in the same rounds
    slows with the host, so the ratio removes what the machine did meanwhile (docs/nas.md). Rows
    without a ratio (measured over RPC) cannot be converted: one-line error."""
    import copy

    missing = sum(1 for r in rows if not r["latency"].get("ratio_to_reference"))
    if missing:
        raise CanaoError(f"{missing} of {len(rows)} rows have no ratio to the reference workload (rows measured over "
                         "RPC or before the measurement core)", "use --label ms for this dataset")
    out = copy.deepcopy(rows)
    for r in out:
        r["latency"]["mean_ms"] = r["latency"]["ratio_to_reference"] * reference_ms
    return out


def median_reference_ms(rows: List[dict]) -> float:
    values = [r["latency"]["reference_ms"] for r in rows if r["latency"].get("reference_ms")]
    if not values:
        raise CanaoError("no row records the reference workload's time", "use --label ms for this dataset")
    return float(np.median(values))


def evaluate(rows: List[dict], heldout: float = 0.2, seed: int = 0, label: str = "ms") -> Dict[str, dict]:
    """Train both predictors on the training architectures, report metrics on the held-out ones.
    ``label="reference"``: train and score on latencies in reference units (:func:`in_reference_units`,
    scaled by the training rows' median reference time)."""
    if label not in LABELS:
        raise CanaoError(f"unknown label {label!r}", f"use one of {', '.join(LABELS)}")
    train, test = holdout_split(rows, heldout, seed)
    if label == "reference":
        scale = median_reference_ms(train)
        train, test = in_reference_units(train, scale), in_reference_units(test, scale)
    true = [r["latency"]["mean_ms"] for r in test]
    out = {}
    for key, cls in PREDICTORS.items():
        p = cls().fit(train)
        out[key] = {"name": cls.name, "n_train": len(train), "label": label, **metrics(p.predict_rows(test), true)}
    return out


def save(predictor, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(predictor, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path):
    if not Path(path).exists():
        raise CanaoError(f"no predictor at {path}", "train one with canao predictor train --data DATASET --out FILE")
    with open(path, "rb") as f:
        return pickle.load(f)
