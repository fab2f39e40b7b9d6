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


def test_measured_winner_holds_the_limit_on_the_measured_figure(space):
    """The predictor says every candidate fits; the target disagrees for the fittest ones. The
    reported winner is the fittest one whose *measured* latency is within the limit, and when none
    of the checked ones fits there is no winner at all."""
    from canao.nas.fitness import measured_winner

    limit = 10.0
    cands = [{"genes": {"id": i}, "fitness": float(i), "latency_ms": 9.0} for i in range(6)]
    true_ms = {5: 14.0, 4: 12.0, 3: 9.5, 2: 3.0, 1: 2.0, 0: 1.0}  # fitter = slower on the device
    calls = []

    def measure(genes):
        calls.append(genes["id"])
        return {"mean_ms": true_ms[genes["id"]]}

    got = measured_winner(cands + [cands[5]], limit, measure, max_checks=8)
    assert got["winner"]["genes"] == {"id": 3} and got["winner"]["measured"]["mean_ms"] <= limit
    assert calls == [5, 4, 3]  # fittest first, duplicates measured once, stop at the first fit
    assert [c["measured"]["mean_ms"] > limit for c in got["checked"]] == [True, True, False]

    calls.clear()
    none = measured_winner(cands, limit, measure, max_checks=2)
    assert none["winner"] is None and calls == [5, 4]
