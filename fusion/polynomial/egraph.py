"""Equality saturation over element-wise algebra with egglog, and cost-based extraction.

The e-graph holds every chain of a function at once (so equal sub-expressions of different chains
share one e-class); rules are grouped in families so tests and the docs can name them. Saturation is
bounded by iterations, e-graph size and wall time; egglog's back-off scheduler keeps associativity
and commutativity from crowding out the rules that pay. Extraction runs in Python over the
serialised e-graph with the broadcast-aware cost of ``cost.py`` (egglog's own extractor calls a
Python cost model once per e-node *per root*, which is far slower for hundreds of roots).
"""
from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from egglog import (EGraph, Expr, String, StringLike, back_off, birewrite, f64, f64Like, i64, i64Like,
                    relation, rewrite, rule, ruleset, run, seq, eq)

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


# ---- semantics -----------------------------------------------------------------------------------
# A term denotes an IEEE value: any float, +-inf or NaN. Every rule below is an identity over the
# extended reals (R with +-inf and NaN, IEEE's rules for inf*0, inf-inf, sqrt(-1)...): it holds for
# *every* input, including +-inf and NaN, or it carries a condition that the analysis relations prove.
# The only differences left are finite-precision ones: rounding (reassociation, folding in f64) and
# overflow/underflow of intermediate results, as with -ffast-math's -fassociative-math; signed zeros
# are identified (-0 = +0, -fno-signed-zeros). Non-finite constants never enter the e-graph as numbers
# (they are opaque leaves), and constant folding only creates numbers that are finite in the narrowest
# float dtype of the function (see ``_constant_folding``), so every ``E(x)`` is a finite value.

# Value-range facts about an e-class, derived bottom-up by the ``analysis`` ruleset, which always runs.
# Each is exact in float arithmetic (not only over the reals), so it survives rounding and overflow.
finite = relation("finite", E)   # never +-inf, never NaN
noinf = relation("noinf", E)     # never +-inf (may be NaN)
nonneg = relation("nonneg", E)   # >= 0, +inf or NaN: never negative, never -inf

analysis = ruleset(name="analysis")


@analysis.register
def _analysis(e: E, a: E, b: E, c: E, x: f64):
    yield rule(eq(e).to(E(x))).then(finite(e))
    yield rule(eq(e).to(E(x)), x >= f64(0.0)).then(nonneg(e))
    yield rule(finite(e)).then(noinf(e))
    # finite in, finite out: negation and the bounded functions
    for unary in ("neg", "tanh", "erf"):
        yield rule(eq(e).to(getattr(a, unary)()), finite(a)).then(finite(e))
    yield rule(eq(e).to(a.neg()), noinf(a)).then(noinf(e))
    yield rule(eq(e).to(a.tanh())).then(noinf(e))  # in [-1, 1] or NaN
    yield rule(eq(e).to(a.erf())).then(noinf(e))
    yield rule(eq(e).to(a.sqrt()), noinf(a)).then(noinf(e))  # sqrt(finite) is finite or NaN
    for fact in (finite, noinf, nonneg):
        yield rule(eq(e).to(c.where(a, b)), fact(a), fact(b)).then(fact(e))
    # never negative: exp, squares, sqrt/sum/product/quotient/reciprocal of never-negative values
    yield rule(eq(e).to(a.exp())).then(nonneg(e))
    yield rule(eq(e).to(a.mul(a))).then(nonneg(e))
    yield rule(eq(e).to(a.sqrt()), nonneg(a)).then(nonneg(e))
    yield rule(eq(e).to(a.recip()), nonneg(a)).then(nonneg(e))
    yield rule(eq(e).to(a.rsqrt()), nonneg(a)).then(nonneg(e))
    for binary in ("add", "mul", "div"):
        yield rule(eq(e).to(getattr(a, binary)(b)), nonneg(a), nonneg(b)).then(nonneg(e))


# ---- rule families -------------------------------------------------------------------------------

commutativity = ruleset(name="commutativity")
associativity = ruleset(name="associativity")
distributivity = ruleset(name="distributivity")
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
def _distributivity(a: E, b: E, c: E, x: f64, y: f64):
    # a*b + a*c = a*(b+c) is false for a = inf, b = 2, c = -1 (NaN vs inf) and for a = inf, b = 0
    # (NaN vs inf). It holds when the common factor is never +-inf, or when b and c are numbers of one
    # strict sign (then a*b and a*c have the same sign, and inf stays inf). Factoring saves work;
    # expanding lets constants meet.
    yield birewrite(a.mul(b).add(a.mul(c))).to(a.mul(b.add(c)), noinf(a))
    yield birewrite(a.mul(E(x)).add(a.mul(E(y)))).to(a.mul(E(x).add(E(y))), x > f64(0.0), y > f64(0.0))
    yield birewrite(a.mul(E(x)).add(a.mul(E(y)))).to(a.mul(E(x).add(E(y))), x < f64(0.0), y < f64(0.0))
    yield rewrite(a.add(a)).to(E(2.0).mul(a))  # exact, overflow included
    # a*b + a = a*(b+1): same precondition (b = -2, a = inf: NaN vs -inf); b > 0 keeps the sign
    yield rewrite(a.mul(b).add(a)).to(a.mul(b.add(E(1.0))), noinf(a))
    yield rewrite(a.mul(E(x)).add(a)).to(a.mul(E(x).add(E(1.0))), x > f64(0.0))


@identities.register
def _identities(a: E, b: E):
    yield birewrite(a.sub(b)).to(a.add(b.neg()))  # exact in IEEE
    yield birewrite(a.neg()).to(E(-1.0).mul(a))
    yield rewrite(a.neg().neg()).to(a)
    yield rewrite(a.add(E(0.0))).to(a)
    yield rewrite(E(0.0).add(a)).to(a)
    yield rewrite(a.mul(E(1.0))).to(a)
    yield rewrite(E(1.0).mul(a)).to(a)
    yield rewrite(a.sub(E(0.0))).to(a)
    yield rewrite(a.div(E(1.0))).to(a)
    # cancellation is false for a = +-inf or NaN (inf*0 and inf-inf are NaN): only for finite a
    yield rewrite(a.mul(E(0.0))).to(E(0.0), finite(a))
    yield rewrite(E(0.0).mul(a)).to(E(0.0), finite(a))
    yield rewrite(a.sub(a)).to(E(0.0), finite(a))


@division.register
def _division(a: E, b: E):
    # all exact over the extended reals: a/0 = a*inf, a/inf = a*0, 1/(1/0) = 0, 1/(0*inf) = inf*0
    yield birewrite(a.div(b)).to(a.mul(b.recip()))
    yield rewrite(a.recip().recip()).to(a)
    yield birewrite(a.mul(b).recip()).to(a.recip().mul(b.recip()))
    yield birewrite(a.rsqrt()).to(a.sqrt().recip())


@powers.register
def _powers(a: E):
    yield rewrite(a.pow(1.0)).to(a)
    yield rewrite(a.pow(2.0)).to(a.mul(a))
    yield rewrite(a.pow(3.0)).to(a.mul(a).mul(a))
    yield rewrite(a.pow(-1.0)).to(a.recip())  # pow(-inf, -1) = -0 = 1/-inf
    # pow(-inf, 0.5) = +inf but sqrt(-inf) = NaN, and pow(-inf, -0.5) = 0 but rsqrt(-inf) = NaN (C99
    # pow): these hold only where a is never -inf
    for fact in (nonneg, noinf):
        yield rewrite(a.pow(0.5)).to(a.sqrt(), fact(a))
        yield rewrite(a.pow(-0.5)).to(a.rsqrt(), fact(a))
    # sqrt(a)*sqrt(a) is NaN for a < 0: only for never-negative a
    yield rewrite(a.sqrt().mul(a.sqrt())).to(a, nonneg(a))


@selects.register
def _selects(c: E, a: E, b: E, d: E):
    # exact: an element-wise op applied after a select equals the select of the op's results
    for method in ("add", "sub", "mul", "div"):
        yield birewrite(getattr(c.where(a, b), method)(d)).to(c.where(getattr(a, method)(d), getattr(b, method)(d)))
        yield birewrite(getattr(d, method)(c.where(a, b))).to(c.where(getattr(d, method)(a), getattr(d, method)(b)))
    yield birewrite(c.where(a, b).neg()).to(c.where(a.neg(), b.neg()))
    yield rewrite(c.where(a, a)).to(a)


# Largest finite value and smallest normal magnitude of each float dtype: a folded number must be
# finite there, and not a denormal or a flush to zero of a non-zero value (x*1e30*1e30 folded to
# x*inf would turn x = 0 into NaN; x*1e-30*1e-30 folded to x*0 would turn x = inf into NaN).
DTYPE_RANGE = {"float64": (1.7976931348623157e308, 2.2250738585072014e-308),
               "float32": (3.4028234663852886e38, 1.1754943508222875e-38),
               "bfloat16": (3.3895313892515355e38, 1.1754943508222875e-38),
               "float16": (65504.0, 6.103515625e-05)}


@functools.lru_cache(maxsize=None)
def _constant_folding(dtype: str = "float32"):
    """Numbers combine in f64; a result is kept only if it is representable in ``dtype``."""
    hi, lo = (f64(v) for v in DTYPE_RANGE[dtype])
    rules = ruleset(name=f"constant_folding_{dtype}")

    @rules.register
    def _fold(x: f64, y: f64):
        def fits(r, zero_ok=True):
            # two alternatives (egglog conditions are conjunctions): exactly zero, or a normal number
            yield (abs(r) >= lo, abs(r) <= hi)
            if zero_ok:
                yield (eq(r).to(f64(0.0)),)

        # a zero from +, -, * or / of representable numbers is exact (no f64 underflow at these sizes)
        for lhs, r in ((E(x).add(E(y)), x + y), (E(x).sub(E(y)), x - y), (E(x).mul(E(y)), x * y)):
            for cond in fits(r):
                yield rewrite(lhs).to(E(r), *cond)
        for cond in fits(x / y):
            yield rewrite(E(x).div(E(y))).to(E(x / y), y != f64(0.0), *cond)
        yield rewrite(E(x).neg()).to(E(-x))
        for cond in fits(f64(1.0) / x, zero_ok=False):
            yield rewrite(E(x).recip()).to(E(f64(1.0) / x), x != f64(0.0), *cond)
        yield rewrite(E(x).sqrt()).to(E(x ** f64(0.5)), x >= f64(0.0))
        for cond in fits(x ** y, zero_ok=False):  # x > 0: a zero power is an underflow
            yield rewrite(E(x).pow(y)).to(E(x ** y), x > f64(0.0), *cond)

    return rules


constant_folding = _constant_folding("float32")

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
             limits: Optional[Limits] = None, dtype: str = "float32", finite_leaves: Sequence[str] = ()):
    """Load ``roots`` into a fresh e-graph and run the rule ``families`` within ``limits``.

    ``dtype`` is the narrowest float dtype the terms are computed in: constant folding only keeps
    numbers that are finite (and not flushed to zero) there. The value-range ``analysis`` runs to
    saturation before every round of rules, so guarded rules see the facts of the current e-graph.
    ``finite_leaves`` are leaf ids whose values are known to be finite (never +-inf or NaN).
    """
    limits = limits or Limits()
    names = list(families) if families is not None else list(FAMILIES)
    egraph = EGraph()
    memo: Dict[tm.Term, E] = {}
    for i, r in enumerate(roots):
        egraph.register(Root(i64(i), _to_egg(r, memo)))
    for leaf_id in finite_leaves:
        egraph.register(finite(E.leaf(String(leaf_id))))
    stats = SaturationStats(enodes_start=_enode_count(egraph))
    if not names:
        stats.enodes_end = stats.enodes_start
        return egraph, stats
    family = dict(FAMILIES, constant_folding=_constant_folding(dtype))
    rules = family[names[0]]
    for name in names[1:]:
        rules = rules | family[name]
    budget = max(limits.min_nodes, limits.node_factor * stats.enodes_start)
    match_limit = max(limits.min_match_limit, limits.match_limit_per_enode * stats.enodes_start)
    schedule = seq(run(analysis).saturate(), run(rules, scheduler=back_off(match_limit=match_limit)))
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
UNFOLDED_PENALTY = 1e18


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
        if name not in tm.ARITY and name != "num":
            continue  # the analysis relations (finite, noinf, nonneg) are facts, not terms
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

    # An op on numbers alone whose e-class holds no number is one that constant folding refused (its
    # value is not representable in the dtype: 1e30 * 1e30 is inf in float32). Extracting it would let
    # reassociation compute that overflow at run time (x * (1e30 * 1e30) = x * inf, NaN for x = 0), so
    # it is only taken where nothing else is left.
    number_classes = {eclass for eclass, enodes in classes.items() if any(e[0] == "num" for e in enodes)}

    def unfolded(eclass, enode):
        kids = [nodes[ch]["eclass"] for ch in enode[1] if not ch.startswith(_PRIM)]
        return enode[0] not in ("leaf", "num") and eclass not in number_classes and \
            all(k in number_classes for k in kids)

    def relax(eclass, enode):
        res = node_cost(*enode)
        if res is None:
            return False
        if unfolded(eclass, enode):
            res = (res[0] + UNFOLDED_PENALTY, res[1], res[2])
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
