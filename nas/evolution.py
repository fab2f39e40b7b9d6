"""HAT's evolutionary search with the latency constraint as a hard filter, and a random-search baseline.

Every candidate the search keeps has a predicted latency <= the limit; fitness is the dev accuracy of
the SubTransformer inheriting the supernet's weights. The state (population, scores, caches, next
iteration) is written atomically after every iteration, so a kill -9 costs at most one iteration."""
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from canao.atomic import write_json
from canao.errors import CanaoError


@dataclass
class SearchSettings:
    population: int = 125
    parents: int = 25
    mutations: int = 50
    crossovers: int = 50
    mutation_prob: float = 0.3
    iterations: int = 30
    seed: int = 0
    max_tries: int = 200  # attempts per child to meet the constraint


class Search:
    """``latency(genes) -> ms`` (predicted) and ``fitness(genes) -> float`` (higher is better)."""

    def __init__(self, space, latency: Callable[[dict], float], fitness: Callable[[dict], float],
                 limit_ms: float, settings: SearchSettings, state_path, progress: bool = True):
        if settings.parents > settings.population:
            raise CanaoError(f"{settings.parents} parents exceed the population {settings.population}",
                             "give --parents <= --population")
        self.space, self._latency, self._fitness = space, latency, fitness
        self.limit, self.s, self.path, self.progress = limit_ms, settings, Path(state_path), progress
        self.state = {"settings": asdict(settings), "limit_ms": limit_ms, "iteration": 0, "population": [],
                      "latency": {}, "fitness": {}, "history": [], "rng": None}
        if self.path.exists():
            saved = json.loads(self.path.read_text())
            if saved["settings"] != self.state["settings"] or saved["limit_ms"] != limit_ms:
                raise CanaoError(f"{self.path} holds a search with other settings",
                                 "use another --state file or the same settings to resume")
            self.state = saved
        self.rng = random.Random(settings.seed)
        if self.state["rng"] is not None:
            self.rng.setstate(_tuplify(self.state["rng"]))

    def latency(self, genes) -> float:
        key = self.space.to_json(genes)
        if key not in self.state["latency"]:
            self.state["latency"][key] = float(self._latency(genes))
        return self.state["latency"][key]

    def fitness(self, genes) -> float:
        key = self.space.to_json(genes)
        if key not in self.state["fitness"]:
            self.state["fitness"][key] = float(self._fitness(genes))
        return self.state["fitness"][key]

    def _feasible(self, make) -> dict:
        for _ in range(self.s.max_tries):
            g = make()
            if self.latency(g) <= self.limit:
                return g
        raise CanaoError(f"no SubTransformer within {self.limit} ms after {self.s.max_tries} tries",
                         "raise --latency-ms (see the predicted latency of the space's smallest model)")

    def _save(self):
        self.state["rng"] = self.rng.getstate()
        write_json(self.path, self.state)

    def run(self) -> dict:
        from tqdm import tqdm

        s = self.s
        if not self.state["population"]:
            self.state["population"] = [self._feasible(lambda: self.space.sample(self.rng)) for _ in range(s.population)]
            self._save()
        bar = tqdm(total=s.iterations, initial=self.state["iteration"], desc="evolution", disable=not self.progress)
        while self.state["iteration"] < s.iterations:
            pop = sorted(self.state["population"], key=self.fitness, reverse=True)
            parents = pop[:s.parents]
            kids = [self._feasible(lambda: self.space.mutate(self.rng.choice(parents), s.mutation_prob, self.rng))
                    for _ in range(s.mutations)]
            kids += [self._feasible(lambda: self.space.crossover(self.rng.choice(parents), self.rng.choice(parents),
                                                                 self.rng)) for _ in range(s.crossovers)]
            self.state["population"] = parents + kids
            best = max(self.state["population"], key=self.fitness)
            self.state["history"].append({"iteration": self.state["iteration"], "best_fitness": self.fitness(best),
                                          "best_latency_ms": self.latency(best)})
            self.state["iteration"] += 1
            self._save()
            bar.update(1)
        bar.close()
        return self.result()

    def result(self) -> dict:
        pop = self.state["population"]
        best = max(pop, key=self.fitness)
        return {"best": best, "fitness": self.fitness(best), "latency_ms": self.latency(best),
                "candidates": [{"genes": g, "fitness": self.fitness(g), "latency_ms": self.latency(g)} for g in pop]}


def random_search(space, latency, fitness, limit_ms: float, budget: int, seed: int = 0) -> dict:
    """The baseline: ``budget`` feasible random samples, best fitness wins."""
    rng = random.Random(seed + 1)
    cands = []
    tries = 0
    while len(cands) < budget and tries < 50 * budget:
        tries += 1
        g = space.sample(rng)
        lat = float(latency(g))
        if lat <= limit_ms:
            cands.append({"genes": g, "latency_ms": lat, "fitness": float(fitness(g))})
    if not cands:
        raise CanaoError(f"random search found nothing within {limit_ms} ms", "raise --latency-ms")
    best = max(cands, key=lambda c: c["fitness"])
    return {"best": best["genes"], "fitness": best["fitness"], "latency_ms": best["latency_ms"], "candidates": cands}


def _tuplify(x):
    return tuple(_tuplify(v) for v in x) if isinstance(x, list) else x
