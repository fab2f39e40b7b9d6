"""The polynomial engine's own expression tree: what a chain of element-wise Relax ops *means*.

A ``Term`` is an immutable, hash-consed node: structural equality is identity of meaning, which is
what common sub-expression sharing and the rewrite records rely on. Leaves stand for anything the
engine does not look inside (matmul outputs, reductions, params, tensor constants); scalar constants
are numbers so they can be folded at compile time.
"""
from typing import Dict, Iterable, Tuple

# op -> arity. "leaf" carries a leaf id, "num" a float, "pow" a float exponent besides its child.
ARITY = {
    "leaf": 0, "num": 0,
    "add": 2, "sub": 2, "mul": 2, "div": 2, "where": 3,
    "neg": 1, "recip": 1, "sqrt": 1, "rsqrt": 1, "exp": 1, "erf": 1, "tanh": 1, "pow": 1,
}
UNARY_FUNCS = ("neg", "recip", "sqrt", "rsqrt", "exp", "erf", "tanh")


class Term:
    """One node: ``op``, child terms ``args`` and a payload ``value`` (leaf id / number / exponent)."""

    __slots__ = ("op", "args", "value", "_hash")

    def __init__(self, op: str, args: Tuple["Term", ...] = (), value=None):
        if op not in ARITY or len(args) != ARITY[op]:
            raise ValueError(f"bad term {op}/{len(args)}")
        self.op, self.args, self.value = op, tuple(args), value
        self._hash = hash((op, self.args, value))

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        return (self is other) or (isinstance(other, Term) and self._hash == other._hash
                                   and self.op == other.op and self.value == other.value
                                   and self.args == other.args)

    def __repr__(self):
        return f"Term({to_text(self)})"


def leaf(leaf_id: str) -> Term:
    return Term("leaf", (), leaf_id)


def num(value: float) -> Term:
    return Term("num", (), float(value))


def op(name: str, *args: Term) -> Term:
    return Term(name, args)


def power(base: Term, exponent: float) -> Term:
    return Term("pow", (base,), float(exponent))


def walk(roots: Iterable[Term]):
    """Every distinct node reachable from ``roots``, children before parents."""
    seen, order = set(), []

    def visit(t):
        if t in seen:
            return
        seen.add(t)
        for a in t.args:
            visit(a)
        order.append(t)

    for r in roots:
        visit(r)
    return order


def leaves_of(t: Term) -> set:
    return {n.value for n in walk([t]) if n.op == "leaf"}


_INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
_PREC = {"add": 1, "sub": 1, "mul": 2, "div": 2}


def to_text(t: Term, names: Dict[str, str] = None, _parent_prec: int = 0) -> str:
    """Readable infix text, e.g. ``x * (0.5 * (erf(x * 0.7071) + 1))``; leaves shown by ``names``."""
    names = names or {}
    if t.op == "leaf":
        return names.get(t.value, t.value)
    if t.op == "num":
        return f"{t.value:.6g}"
    if t.op in _INFIX:
        prec = _PREC[t.op]
        left = to_text(t.args[0], names, prec)
        right = to_text(t.args[1], names, prec + 1)  # left-associative printing
        text = f"{left} {_INFIX[t.op]} {right}"
        return f"({text})" if prec < _parent_prec else text
    if t.op == "neg":
        return f"-{to_text(t.args[0], names, 3)}"
    if t.op == "pow":
        return f"{to_text(t.args[0], names, 3)}^{t.value:g}"
    if t.op == "recip":
        return f"1/{to_text(t.args[0], names, 3)}"
    return f"{t.op}({', '.join(to_text(a, names) for a in t.args)})"
