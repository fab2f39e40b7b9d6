"""Equality saturation over element-wise algebra with egglog, and cost-based extraction.

The e-graph holds every chain of a function at once (so equal sub-expressions of different chains
share one e-class); rules are grouped in families so tests and the docs can name them. Saturation is
bounded by iterations, e-graph size and wall time; egglog's back-off scheduler keeps associativity
and commutativity from crowding out the rules that pay. Extraction runs in Python over the
serialised e-graph with the broadcast-aware cost of ``cost.py`` (egglog's own extractor calls a
Python cost model once per e-node *per root*, which is far slower for hundreds of roots).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from egglog import (EGraph, Expr, String, StringLike, back_off, birewrite, f64, f64Like, i64, i64Like,
                    rewrite, rule, ruleset, run, union, eq)

from . import term as tm
from .cost import LeafInfo, broadcast, op_cost


class E(Expr):
    """An element-wise expression (the e-graph's term language; mirrors term.Term)."""

    def __init__(self, value: f64Like) -> None: ...

    @classmethod
    def leaf(cls, name: StringLike) -> E: ...

    def add(self, other: E) -> E: ...

    def sub(self, other: E) -> E: ...

    def mul(self, other: E) -> E: ...

    def div(self, other: E) -> E: ...

    def neg(self) -> E: ...

    def recip(self) -> E: ...

    def sqrt(self) -> E: ...

    def rsqrt(self) -> E: ...

    def exp(self) -> E: ...

    def erf(self) -> E: ...

    def tanh(self) -> E: ...

    def pow(self, exponent: f64Like) -> E: ...

    def where(self, then: E, otherwise: E) -> E: ...  # self is the (boolean) condition


class Root(Expr):
    """Marks a root term so it can be found in the serialised e-graph."""

    def __init__(self, index: i64Like, expr: E) -> None: ...


# ---- rule families -------------------------------------------------------------------------------
# Values are assumed finite (as -ffast-math does for reassociation); non-finite constants never enter
# the e-graph as numbers: they are opaque leaves. Pushing an op into both branches of a where is exact.

commutativity = ruleset(name="commutativity")
associativity = ruleset(name="associativity")
distributivity = ruleset(name="distributivity")
constant_folding = ruleset(name="constant_folding")
identities = ruleset(name="identities")
division = ruleset(name="division")
powers = ruleset(name="powers")
selects = ruleset(name="where")


@commutativity.register
def _commutativity(a: E, b: E):
    yield rewrite(a.add(b)).to(b.add(a))
    yield rewrite(a.mul(b)).to(b.mul(a))


@associativity.register
def _associativity(a: E, b: E, c: E):
    yield birewrite(a.add(b).add(c)).to(a.add(b.add(c)))
    yield birewrite(a.mul(b).mul(c)).to(a.mul(b.mul(c)))


@distributivity.register
def _distributivity(a: E, b: E, c: E):
    # factoring (a*b + a*c -> a*(b+c)) is the direction that saves work; expanding lets constants meet
    yield birewrite(a.mul(b).add(a.mul(c))).to(a.mul(b.add(c)))
    yield rewrite(a.add(a)).to(E(2.0).mul(a))
    yield rewrite(a.mul(b).add(a)).to(a.mul(b.add(E(1.0))))


@identities.register
def _identities(a: E, b: E):
    yield birewrite(a.sub(b)).to(a.add(b.neg()))
    yield birewrite(a.neg()).to(E(-1.0).mul(a))
    yield rewrite(a.neg().neg()).to(a)
    yield rewrite(a.add(E(0.0))).to(a)
    yield rewrite(E(0.0).add(a)).to(a)
    yield rewrite(a.mul(E(1.0))).to(a)
    yield rewrite(E(1.0).mul(a)).to(a)
    yield rewrite(a.sub(E(0.0))).to(a)
    yield rewrite(a.div(E(1.0))).to(a)
    yield rewrite(a.mul(E(0.0))).to(E(0.0))  # cancellation: x - x -> 0 (finite values)
    yield rewrite(E(0.0).mul(a)).to(E(0.0))
    yield rewrite(a.sub(a)).to(E(0.0))


@division.register
def _division(a: E, b: E, x: f64):
    yield birewrite(a.div(b)).to(a.mul(b.recip()))
    yield rewrite(a.recip().recip()).to(a)
    yield birewrite(a.mul(b).recip()).to(a.recip().mul(b.recip()))
    yield birewrite(a.rsqrt()).to(a.sqrt().recip())


@powers.register
def _powers(a: E):
    yield rewrite(a.pow(1.0)).to(a)
    yield rewrite(a.pow(2.0)).to(a.mul(a))
    yield rewrite(a.pow(3.0)).to(a.mul(a).mul(a))
    yield rewrite(a.pow(0.5)).to(a.sqrt())
    yield rewrite(a.pow(-0.5)).to(a.rsqrt())
    yield rewrite(a.pow(-1.0)).to(a.recip())
    yield rewrite(a.sqrt().mul(a.sqrt())).to(a)


@selects.register
def _selects(c: E, a: E, b: E, d: E):
    # exact: an element-wise op applied after a select equals the select of the op's results
    for method in ("add", "sub", "mul", "div"):
        yield birewrite(getattr(c.where(a, b), method)(d)).to(c.where(getattr(a, method)(d), getattr(b, method)(d)))
        yield birewrite(getattr(d, method)(c.where(a, b))).to(c.where(getattr(d, method)(a), getattr(d, method)(b)))
    yield birewrite(c.where(a, b).neg()).to(c.where(a.neg(), b.neg()))
    yield rewrite(c.where(a, a)).to(a)


@constant_folding.register
def _constant_folding(x: f64, y: f64):
    yield rewrite(E(x).add(E(y))).to(E(x + y))
    yield rewrite(E(x).sub(E(y))).to(E(x - y))
    yield rewrite(E(x).div(E(y))).to(E(x / y), y != f64(0.0))
    yield rewrite(E(x).neg()).to(E(-x))
    yield rewrite(E(x).mul(E(y))).to(E(x * y))
    yield rewrite(E(x).recip()).to(E(f64(1.0) / x), x != f64(0.0))
    yield rewrite(E(x).sqrt()).to(E(x ** f64(0.5)), x >= f64(0.0))
    yield rewrite(E(x).pow(y)).to(E(x ** y), x > f64(0.0))


FAMILIES = {
    "commutativity": commutativity, "associativity": associativity, "distributivity": distributivity,
    "constant_folding": constant_folding, "identities": identities, "division": division,
    "powers": powers, "where": selects,
}


@dataclass
class Limits:
    """Bounds on saturation so compile time stays small (all of them are checked every iteration)."""
    iterations: int = 12
    node_factor: int = 60  # stop when the e-graph holds this many times the e-nodes it started with
    min_nodes: int = 5000
    seconds: float = 5.0
    match_limit_per_enode: int = 8  # egglog back-off: a rule matching more often than this many
    min_match_limit: int = 1000     # times the starting e-graph size is banned for a while


@dataclass
class SaturationStats:
    iterations: int = 0
    enodes_start: int = 0
    enodes_end: int = 0
    seconds: float = 0.0
    saturated: bool = False
    stop_reason: str = ""

    def to_json(self):
        return dict(self.__dict__, seconds=round(self.seconds, 3))


def _to_egg(t: tm.Term, memo: Dict[tm.Term, E]) -> E:
    hit = memo.get(t)
    if hit is not None:
        return hit
    if t.op == "leaf":
        out = E.leaf(String(t.value))
    elif t.op == "num":
        out = E(f64(t.value))
    elif t.op == "pow":
        out = _to_egg(t.args[0], memo).pow(f64(t.value))
    else:
        kids = [_to_egg(a, memo) for a in t.args]
        out = getattr(kids[0], t.op)(*kids[1:])
    memo[t] = out
    return out


def _enode_count(egraph: EGraph) -> int:
    return sum(size for _, size in egraph.all_function_sizes())


def saturate(roots: Sequence[tm.Term], families: Optional[Sequence[str]] = None,
             limits: Optional[Limits] = None):
    """Load ``roots`` into a fresh e-graph and run the rule ``families`` within ``limits``."""
    limits = limits or Limits()
    names = list(families) if families is not None else list(FAMILIES)
    egraph = EGraph()
    memo: Dict[tm.Term, E] = {}
    for i, r in enumerate(roots):
        egraph.register(Root(i64(i), _to_egg(r, memo)))
    stats = SaturationStats(enodes_start=_enode_count(egraph))
    if not names:
        stats.enodes_end = stats.enodes_start
        return egraph, stats
    rules = FAMILIES[names[0]]
    for name in names[1:]:
        rules = rules | FAMILIES[name]
    budget = max(limits.min_nodes, limits.node_factor * stats.enodes_start)
    match_limit = max(limits.min_match_limit, limits.match_limit_per_enode * stats.enodes_start)
    schedule = run(rules, scheduler=back_off(match_limit=match_limit))
    start = time.perf_counter()
    stats.stop_reason = "iterations"
    for it in range(limits.iterations):
        report = egraph.run(schedule)
        stats.iterations = it + 1
        size = _enode_count(egraph)
        if not report.updated:
            stats.saturated, stats.stop_reason = True, "saturated"
            break
        if size > budget:
            stats.stop_reason = "node limit"
            break
        if time.perf_counter() - start > limits.seconds:
            stats.stop_reason = "time limit"
            break
    stats.seconds = time.perf_counter() - start
    stats.enodes_end = _enode_count(egraph)
    return egraph, stats


# ---- extraction ------------------------------------------------------------------------------------

_PRIM = ("primitive-",)


def _op_name(raw: str) -> str:
    """'E.leaf' / '·.add' / 'E' / 'Root' -> leaf / add / num / Root."""
    if raw == "E":
        return "num"
    return raw.split(".")[-1]


def extract(egraph: EGraph, n_roots: int, leaves: Dict[str, LeafInfo], itemsize: int) -> List[tm.Term]:
    """The cheapest term of every root's e-class under the broadcast-aware tree cost."""
    graph = json.loads(egraph._serialize().to_json())
    nodes = graph["nodes"]
    prim_value = {nid: n["op"] for nid, n in nodes.items() if nid.startswith(_PRIM)}
    classes: Dict[str, list] = {}
    root_class: Dict[int, str] = {}
    for nid, n in nodes.items():
        if nid.startswith(_PRIM):
            continue
        name = _op_name(n["op"])
        if name == "Root":
            index_node, expr_node = n["children"]
            root_class[int(prim_value[index_node])] = nodes[expr_node]["eclass"]
            continue
        classes.setdefault(n["eclass"], []).append((name, n["children"]))

    # best[eclass] = (score, shape, static, enode): a worklist relaxation from the leaves upwards
    best: Dict[str, tuple] = {}
    parents: Dict[str, list] = {}
    for eclass, enodes in classes.items():
        for enode in enodes:
            for child in enode[1]:
                if not child.startswith(_PRIM):
                    parents.setdefault(nodes[child]["eclass"], []).append((eclass, enode))

    leaf_cost = {}
    for nid, value in prim_value.items():
        if nid.startswith("primitive-String"):
            info = leaves.get(json.loads(value))
            if info is not None:
                leaf_cost[nid] = (0.0, tuple(info.shape), info.static)

    def node_cost(name, children):
        if name == "leaf":
            return leaf_cost[children[0]]
        if name == "num":
            return 0.0, (), True
        kids = []
        for child in children:
            if child.startswith(_PRIM):
                continue  # the exponent of pow
            hit = best.get(nodes[child]["eclass"])
            if hit is None:
                return None
            kids.append(hit)
        shape = broadcast(*(k[1] for k in kids))
        static = all(k[2] for k in kids)
        return op_cost(name, shape, itemsize, static) + sum(k[0] for k in kids), shape, static

    def relax(eclass, enode):
        res = node_cost(*enode)
        if res is None:
            return False
        cur = best.get(eclass)
        if cur is None or res[0] < cur[0] - 1e-9 * max(1.0, abs(cur[0])):
            best[eclass] = (res[0], res[1], res[2], enode)
            return True
        return False

    work = []
    for eclass, enodes in classes.items():
        for enode in enodes:
            if enode[0] in ("leaf", "num") and relax(eclass, enode):
                work.append(eclass)
    while work:
        eclass = work.pop()
        for parent, enode in parents.get(eclass, ()):
            if relax(parent, enode):
                work.append(parent)

    memo: Dict[str, tm.Term] = {}

    def build(eclass: str, depth: int = 0) -> tm.Term:
        if eclass in memo:
            return memo[eclass]
        if depth > 10000:
            raise RecursionError("cyclic extraction")
        name, children = best[eclass][3]
        if name == "leaf":
            out = tm.leaf(json.loads(prim_value[children[0]]))
        elif name == "num":
            out = tm.num(float(prim_value[children[0]]))
        elif name == "pow":
            base = build(nodes[children[0]]["eclass"], depth + 1)
            out = tm.power(base, float(prim_value[children[1]]))
        else:
            out = tm.Term(name, tuple(build(nodes[c]["eclass"], depth + 1) for c in children))
        memo[eclass] = out
        return out

    return [build(root_class[i]) for i in range(n_roots)]
