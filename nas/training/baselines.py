"""Two cheap reference points for the teacher's RT accuracy: TF-IDF + logistic regression, and logistic
regression on frozen all-MiniLM-L6-v2 sentence embeddings.

A fine-tuned teacher's accuracy means little alone: if a bag of n-grams or the frozen encoder plus a
linear layer come close, fine-tuning (and every student distilled from it) adds little. Both use the
same split as the teacher (train to fit, dev to pick the regularization C, test reported once).

    python -m canao.nas.training.baselines [--out FILE.json]
"""
import argparse
import hashlib
import time
from functools import lru_cache
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from . import checkpoint

# Inverse regularization strengths tried on dev (a small log grid; both features are unit-norm rows).
C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
# RT sentences are at most 78 MiniLM tokens, so 128 truncates nothing: the same embeddings as
# sentence-transformers' max_seq_length of 256.
EMBED_SEQ_LEN = 128
EMBED_BATCH = 64


def _pick_c(fit, x_train, y_train, x_dev, y_dev, grid: Sequence[float]):
    """Fit one model per C, keep the best dev accuracy (the smallest C on ties): (model, C, dev acc per C)."""
    best, best_c, by_c = None, None, {}
    for c in grid:
        model = fit(c, x_train, y_train)
        by_c[c] = float((model.predict(x_dev) == y_dev).mean())
        if best is None or by_c[c] > by_c[best_c]:
            best, best_c = model, c
    return best, best_c, by_c


def _logreg(c, x, y):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=5000).fit(x, y)


def _report(model, c, by_c, parts: Dict[str, tuple], seconds: float, **extra) -> dict:
    acc = {f"{name}_accuracy": float((model.predict(x) == y).mean()) for name, (x, y) in parts.items()}
    return {**acc, "C": c, "dev_accuracy_by_C": {str(k): v for k, v in by_c.items()},
            "rows": {name: int(len(y)) for name, (_, y) in parts.items()}, "seconds": round(seconds, 2), **extra}


def tfidf_logreg(limit: Optional[int] = None, dev_limit: Optional[int] = None, test_limit: Optional[int] = None,
                 grid: Sequence[float] = C_GRID) -> dict:
    """TF-IDF of word 1-2 grams (fitted on train; sublinear tf) + logistic regression, C picked on dev.
    Returns train/dev/test accuracy, the chosen C, dev accuracy per C and the wall seconds."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from canao.nas.data_split import split_rows

    start = time.perf_counter()
    (tr, y_tr), (dv, y_dv), (te, y_te) = (split_rows(p, n) for p, n in
                                          (("train", limit), ("dev", dev_limit), ("test", test_limit)))
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x_tr = vec.fit_transform(tr)
    x_dv, x_te = vec.transform(dv), vec.transform(te)
    model, c, by_c = _pick_c(_logreg, x_tr, y_tr, x_dv, y_dv, grid)
    return _report(model, c, by_c, {"train": (x_tr, y_tr), "dev": (x_dv, y_dv), "test": (x_te, y_te)},
                   time.perf_counter() - start, features=int(x_tr.shape[1]))


@lru_cache(maxsize=1)
def weights_digest() -> str:
    """First 16 hex digits of sha256(model.safetensors): the embedding cache key, so other weights
    under the same folder name never reuse stale embeddings."""
    from canao.zoo import minilm_dir

    h = hashlib.sha256()
    with open(minilm_dir() / "model.safetensors", "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _load_encoder():
    from transformers import AutoModel

    from canao.zoo import minilm_dir

    return AutoModel.from_pretrained(str(minilm_dir())).eval()


def encode(part: str, limit: Optional[int] = None, seq_len: int = EMBED_SEQ_LEN, batch: int = EMBED_BATCH,
           progress: bool = True) -> np.ndarray:
    """Sentence embeddings of one split part, rows aligned with ``encoded_split``: MiniLM's last hidden
    state, masked mean over tokens, L2-normalized (sentence-transformers' all-MiniLM-L6-v2 recipe)."""
    import torch
    from tqdm import tqdm

    from .data import encoded_split, ordered_batches, take

    data = encoded_split(part, seq_len, limit)
    model = _load_encoder()
    out = np.zeros((len(data), model.config.hidden_size), dtype=np.float32)
    batches = list(ordered_batches(data, batch))
    with torch.no_grad():
        for rows in tqdm(batches, desc=f"MiniLM embeddings ({part})", disable=not progress, leave=False):
            ids, mask, _ = take(data, rows)
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            out[rows] = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()
    return out


def embedding_cache_path(part: str, limit: Optional[int], seq_len: int = EMBED_SEQ_LEN) -> Path:
    return (checkpoint.cache_root() / "nas" / "baselines"
            / f"minilm-{weights_digest()}-{part}-s{seq_len}-n{limit}.npy")


def cached_embeddings(part: str, limit: Optional[int] = None, seq_len: int = EMBED_SEQ_LEN,
                      progress: bool = True) -> np.ndarray:
    """``encode`` once per (weights, part, seq_len, limit); later calls read the .npy (written atomically)."""
    from canao.atomic import write_with

    path = embedding_cache_path(part, limit, seq_len)
    if path.is_file():
        return np.load(path)
    emb = encode(part, limit, seq_len, progress=progress)
    write_with(path, lambda f: np.save(f, emb), binary=True)
    return emb


def frozen_embedding_logreg(limit: Optional[int] = None, dev_limit: Optional[int] = None,
                            test_limit: Optional[int] = None, grid: Sequence[float] = C_GRID,
                            progress: bool = True) -> dict:
    """Logistic regression on frozen, mean-pooled, L2-normalized all-MiniLM-L6-v2 embeddings, C picked
    on dev. ``seconds`` includes encoding unless the embeddings were cached (``cached`` says which)."""
    from canao.nas.data_split import split_rows

    start = time.perf_counter()
    cached = all(embedding_cache_path(p, n).is_file() for p, n in
                 (("train", limit), ("dev", dev_limit), ("test", test_limit)))
    parts = {}
    for p, n in (("train", limit), ("dev", dev_limit), ("test", test_limit)):
        parts[p] = (cached_embeddings(p, n, progress=progress), split_rows(p, n)[1])  # encoded_split's order
    encode_seconds = time.perf_counter() - start
    model, c, by_c = _pick_c(_logreg, *parts["train"], *parts["dev"], grid)
    return _report(model, c, by_c, parts, time.perf_counter() - start, encode_seconds=round(encode_seconds, 2),
                   cached=cached, weights_sha256_16=weights_digest())


def run_all(progress: bool = True, **limits) -> dict:
    return {"tfidf_logreg": tfidf_logreg(**limits),
            "frozen_embedding_logreg": frozen_embedding_logreg(progress=progress, **limits)}


NAMES = {"tfidf_logreg": "TF-IDF (1-2 grams) + LR", "frozen_embedding_logreg": "frozen MiniLM embeddings + LR"}


def table(results: dict) -> str:
    lines = [f"{'baseline':32} {'C':>6} {'dev':>7} {'test':>7} {'seconds':>8}"]
    for key, r in results.items():
        lines.append(f"{NAMES.get(key, key):32} {r['C']:>6g} {r['dev_accuracy']:>7.2%} {r['test_accuracy']:>7.2%} "
                     f"{r['seconds']:>8.1f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    import os
    import platform
    import sys

    import sklearn

    from canao.atomic import write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    results = run_all()
    print(table(results))
    if args.out:
        meta = {"command": "python -m canao.nas.training.baselines " + " ".join(argv if argv is not None else sys.argv[1:]),
                "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared)",
                "sklearn": sklearn.__version__, "C_grid": list(C_GRID), "embed_seq_len": EMBED_SEQ_LEN,
                "note": "fit on train, C picked on dev (dev accuracy is therefore optimistic), test reported once"}
        write_json(args.out, {"meta": meta, **results})
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
