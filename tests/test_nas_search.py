"""The search keeps the latency constraint for every candidate it reports, and resumes after an interrupt."""
import json

import pytest

from canao.nas.evolution import Search, SearchSettings, random_search
from canao.nas.spaces import load_space

SETTINGS = SearchSettings(population=10, parents=3, mutations=4, crossovers=3, iterations=4, seed=3)


def latency(space):
    return lambda g: space.count(g)["macs"] / 1e6  # a stand-in for the predictor: deterministic, monotone


def fitness(g):
    enc = g["encoder"]
    return enc["hidden"] * enc["layers"] + sum(enc["ffn"]) / 100  # deterministic, prefers big models


@pytest.fixture(scope="module")
def space():
    return load_space("bert_minilm")


def test_every_reported_candidate_meets_the_limit(space, tmp_path):
    limit = latency(space)(space.largest()) / 4
    res = Search(space, latency(space), fitness, limit, SETTINGS, tmp_path / "s.json", progress=False).run()
    assert res["candidates"] and all(c["latency_ms"] <= limit for c in res["candidates"])
    assert res["latency_ms"] <= limit
    rnd = random_search(space, latency(space), fitness, limit, budget=10)
    assert all(c["latency_ms"] <= limit for c in rnd["candidates"])


class Killed(Exception):
    pass


def test_resume_after_interrupt_gives_the_uninterrupted_result(space, tmp_path):
    limit = latency(space)(space.largest()) / 4
    full = Search(space, latency(space), fitness, limit, SETTINGS, tmp_path / "full.json", progress=False).run()
    calls = {"n": 0}

    def dying(g):
        calls["n"] += 1
        if calls["n"] > 25:  # dies in the middle of iteration 1 or 2
            raise Killed
        return fitness(g)

    path = tmp_path / "cut.json"
    with pytest.raises(Killed):
        Search(space, latency(space), dying, limit, SETTINGS, path, progress=False).run()
    saved = json.loads(path.read_text())
    assert 0 <= saved["iteration"] < SETTINGS.iterations
    resumed = Search(space, latency(space), fitness, limit, SETTINGS, path, progress=False).run()
    assert space.to_json(resumed["best"]) == space.to_json(full["best"])
    assert len(resumed["candidates"]) == SETTINGS.parents + SETTINGS.mutations + SETTINGS.crossovers
