"""The Rotten Tomatoes split: stored, deterministic, disjoint, stratified."""
import pytest

from canao.errors import CanaoError
from canao.nas.data_split import load_split, make_split, split_rows
from canao.text import review_sentences


def test_stored_split_is_the_seeded_split_and_partitions_the_rows():
    rows = review_sentences("rotten_tomatoes")
    doc = load_split()
    again = make_split(rows, seed=doc["seed"], **doc["fractions"])
    for part in ("train", "dev", "test"):
        assert doc[part] == again[part]
    all_idx = doc["train"] + doc["dev"] + doc["test"]
    assert sorted(all_idx) == list(range(len(rows)))
    pos = sum(r[1] for r in rows) / len(rows)
    for part in ("dev", "test"):
        share = sum(rows[i][1] for i in doc[part]) / len(doc[part])
        assert abs(share - pos) < 0.002  # stratified: same label balance as the whole


def test_another_seed_gives_another_split_and_bad_fractions_fail():
    rows = review_sentences("rotten_tomatoes")
    assert make_split(rows, seed=1)["dev"] != make_split(rows, seed=0)["dev"]
    with pytest.raises(CanaoError):
        make_split(rows, dev=0.6, test=0.5)


def test_changed_csv_is_refused(tmp_path):
    import json

    doc = load_split()
    doc["rows_sha256"] = "0" * 64
    bad = tmp_path / "split.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(CanaoError):
        load_split(bad)


def test_split_rows_limit_is_deterministic():
    a, la = split_rows("dev", limit=20)
    b, lb = split_rows("dev", limit=20)
    assert a == b and la.tolist() == lb.tolist() and len(a) == 20
