"""The teacher's two reference baselines on a few hundred RT sentences: both run and give accuracies,
each fits its own training sentences better than the majority class, the frozen MiniLM embeddings are
unit-norm (and equal sentence-transformers' where that is installed), and they are encoded once then
read from the cache."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from canao.nas.data_split import split_rows
from canao.nas.training import baselines

LIMITS = dict(limit=96, dev_limit=32, test_limit=32)
GRID = (1.0, 10.0)


def majority(part, limit):
    labels = split_rows(part, limit)[1]
    return np.bincount(labels).max() / len(labels)


def check(r):
    for part in ("train", "dev", "test"):
        assert 0.0 <= r[f"{part}_accuracy"] <= 1.0
    assert r["rows"] == {"train": 96, "dev": 32, "test": 32}
    assert r["C"] in GRID and set(r["dev_accuracy_by_C"]) == {str(c) for c in GRID}
    assert r["dev_accuracy"] == r["dev_accuracy_by_C"][str(r["C"])]
    # an honest lower bound: a linear model fits its own training sentences better than a constant
    assert r["train_accuracy"] > majority("train", LIMITS["limit"])


def test_tfidf_logreg_runs_and_fits_its_train_part():
    check(baselines.tfidf_logreg(grid=GRID, **LIMITS))


def test_frozen_embeddings_are_encoded_once_then_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("CANAO_CACHE", str(tmp_path))
    calls = []
    real = baselines.encode

    def counting(part, *args, **kwargs):
        calls.append(part)
        return real(part, *args, **kwargs)

    monkeypatch.setattr(baselines, "encode", counting)
    first = baselines.frozen_embedding_logreg(grid=GRID, progress=False, **LIMITS)
    assert sorted(calls) == ["dev", "test", "train"] and not first["cached"]
    check(first)
    emb = np.load(baselines.embedding_cache_path("dev", LIMITS["dev_limit"]))
    assert emb.shape == (32, 384) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert str(tmp_path) in str(baselines.embedding_cache_path("dev", 32))

    second = baselines.frozen_embedding_logreg(grid=GRID, progress=False, **LIMITS)
    assert len(calls) == 3 and second["cached"]
    for key in ("train_accuracy", "dev_accuracy", "test_accuracy", "C"):
        assert second[key] == first[key]


def test_embeddings_match_sentence_transformers():
    st = pytest.importorskip("sentence_transformers")
    from canao.zoo import minilm_dir

    texts = split_rows("dev", 8)[0]
    ref = st.SentenceTransformer(str(minilm_dir()), device="cpu").encode(texts, convert_to_numpy=True)
    assert np.abs(baselines.encode("dev", 8, progress=False) - ref).max() < 1e-5


def test_pipeline_summary_puts_the_baselines_beside_the_teacher():
    spec = importlib.util.spec_from_file_location(
        "run_nas_pipeline", Path(__file__).parents[1] / "benchmarks" / "run_nas_pipeline.py")
    pipeline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pipeline)
    result = {"command": "x", "machine": "m", "budgets": {"seq_len": 64}, "total_seconds": 3.0,
              "stages": {"teacher": {"seconds": 1.0}, "baselines": {"seconds": 2.0}},
              "teacher_metrics": {"test_accuracy": 0.8}, "student_metrics": {},
              "baselines": {"tfidf_logreg": {"test_accuracy": 0.75},
                            "frozen_embedding_logreg": {"test_accuracy": 0.7712}}}
    text = pipeline.summary(result)
    assert "teacher 80.00% test; TF-IDF+LR 75.00%; frozen MiniLM embeddings+LR 77.12%" in text
    del result["baselines"]  # results written before the stage existed still render
    assert "TF-IDF" not in pipeline.summary(result)
