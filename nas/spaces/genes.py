"""Gene encoding shared by every space: stacks of layers with stack-wide and per-layer genes.

Genes are plain JSON-able dicts, one entry per stack::

    {"encoder": {"embed": 640, "layers": 6, "ffn": [3072, ...], "heads": [8, ...], "type": [...]},
     "decoder": {...}}

Per-layer lists are exactly ``layers`` long (canonical form: no padding for absent layers), so
two equal architectures always have the same JSON text, which the search uses as a cache key.
"""
import json
import random
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from canao.errors import CanaoError

Genes = Dict[str, Dict[str, object]]


@dataclass(frozen=True)
class StackSchema:
    """The choices of one stack: its depth, stack-wide widths and per-layer genes."""

    name: str
    depth: Tuple[int, ...]
    widths: Dict[str, Tuple] = field(default_factory=dict)
    per_layer: Dict[str, Tuple] = field(default_factory=dict)

    def keys(self) -> List[str]:
        return list(self.widths) + ["layers"] + list(self.per_layer)


def to_json(genes: Genes) -> str:
    """The stable text form: sorted keys, no spaces. Equal architectures give equal text."""
    return json.dumps(genes, sort_keys=True, separators=(",", ":"))


def from_json(text: str) -> Genes:
    try:
        genes = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CanaoError(f"genes are not valid JSON ({exc.msg} at char {exc.pos})",
                         "pass the text printed by `canao space sample`") from exc
    if not isinstance(genes, dict):
        raise CanaoError("genes must be a JSON object with one entry per stack", "e.g. {\"encoder\": {...}}")
    return genes


def sample(schemas: List[StackSchema], rng: random.Random) -> Genes:
    genes = {}
    for s in schemas:
        depth = rng.choice(s.depth)
        stack = {k: rng.choice(v) for k, v in s.widths.items()}
        stack["layers"] = depth
        stack.update({k: [rng.choice(v) for _ in range(depth)] for k, v in s.per_layer.items()})
        genes[s.name] = stack
    return genes


def extreme(schemas: List[StackSchema], pick) -> Genes:
    """Every gene at ``pick`` (max or min) of its choices; layer types keep their first choice."""
    genes = {}
    for s in schemas:
        depth = pick(s.depth)
        stack = {k: pick(v) for k, v in s.widths.items()}
        stack["layers"] = depth
        for k, v in s.per_layer.items():
            value = v[0] if isinstance(v[0], str) else pick(v)
            stack[k] = [value] * depth
        genes[s.name] = stack
    return genes


def mutate(schemas: List[StackSchema], genes: Genes, prob: float, rng: random.Random) -> Genes:
    """HAT's mutation: every gene (each layer's entry separately) is resampled with ``prob``.

    A deeper stack gets fresh random entries for its new layers; a shallower one drops the tail.
    """
    out = {}
    for s in schemas:
        old = genes[s.name]
        stack = {k: (rng.choice(v) if rng.random() < prob else old[k]) for k, v in s.widths.items()}
        depth = rng.choice(s.depth) if rng.random() < prob else old["layers"]
        stack["layers"] = depth
        for k, v in s.per_layer.items():
            values = list(old[k][:depth]) + [rng.choice(v) for _ in range(depth - len(old[k]))]
            stack[k] = [rng.choice(v) if rng.random() < prob else x for x in values]
        out[s.name] = stack
    return out


def crossover(schemas: List[StackSchema], a: Genes, b: Genes, rng: random.Random) -> Genes:
    """HAT's crossover: each gene (each layer's entry separately) comes from either parent.

    Where only the deeper parent has a layer, that parent's entry is taken.
    """
    out = {}
    for s in schemas:
        pa, pb = a[s.name], b[s.name]
        stack = {k: rng.choice((pa[k], pb[k])) for k in s.widths}
        depth = rng.choice((pa["layers"], pb["layers"]))
        stack["layers"] = depth
        for k in s.per_layer:
            row = []
            for i in range(depth):
                have = [p[k][i] for p in (pa, pb) if i < len(p[k])]
                row.append(rng.choice(have))
            stack[k] = row
        out[s.name] = stack
    return out


def validate(schemas: List[StackSchema], genes: Genes) -> Genes:
    """Return a clean copy of ``genes`` or raise a one-line error naming the first bad value."""
    if not isinstance(genes, dict):
        raise CanaoError(f"genes must be a dict of stacks, got {type(genes).__name__}", "use space.sample() output")
    names = [s.name for s in schemas]
    extra = sorted(set(genes) - set(names))
    if extra:
        raise CanaoError(f"unknown stack(s) {extra} in genes", f"this space has stacks {names}")
    out = {}
    for s in schemas:
        if s.name not in genes:
            raise CanaoError(f"genes have no '{s.name}' stack", f"this space has stacks {names}")
        stack = genes[s.name]
        if not isinstance(stack, dict):
            raise CanaoError(f"genes['{s.name}'] must be a dict", f"give keys {s.keys()}")
        unknown = sorted(set(stack) - set(s.keys()))
        missing = [k for k in s.keys() if k not in stack]
        if unknown or missing:
            what = f"unknown gene(s) {unknown}" if unknown else f"missing gene(s) {missing}"
            raise CanaoError(f"{what} in stack '{s.name}'", f"the stack's genes are {s.keys()}")
        clean = {}
        for k, choices in list(s.widths.items()) + [("layers", s.depth)]:
            clean[k] = _check_value(s.name, k, stack[k], choices)
        depth = clean["layers"]
        for k, choices in s.per_layer.items():
            row = stack[k]
            if not isinstance(row, (list, tuple)):
                raise CanaoError(f"gene {s.name}.{k} must be a list (one value per layer), got {row!r}",
                                 f"give {depth} values")
            if len(row) != depth:
                raise CanaoError(f"gene {s.name}.{k} has {len(row)} values but {s.name}.layers is {depth}",
                                 f"give exactly one value per layer ({depth})")
            clean[k] = [_check_value(s.name, f"{k}[{i}]", v, choices) for i, v in enumerate(row)]
        out[s.name] = clean
    return out


def _check_value(stack: str, key: str, value, choices):
    if isinstance(value, bool) or value not in choices or type(value) is not type(choices[0]):
        raise CanaoError(f"gene {stack}.{key} = {value!r} is not in the space's choices {list(choices)}",
                         "pick one of those values, or widen the space in its YAML config")
    return value
