"""What the polynomial pass did, as data: one record per rewritten chain, printable and JSON-ready.

The fusion report shows these records; they are plain dataclasses of strings and numbers so a plan
can be saved with ``json.dumps(log.to_json())`` and diffed.
"""
from dataclasses import dataclass, field
from typing import List

from .cost import Cost


@dataclass
class RewriteRecord:
    """One element-wise DAG rewritten: its roots' expressions before and after, and the costs."""
    function: str
    roots: List[str]
    before: List[str]  # "root = expression" per root, leaves by their Relax names
    after: List[str]
    cost_before: Cost
    cost_after: Cost
    relax_ops_before: int  # Relax bindings the DAG had
    relax_ops_after: int  # Relax bindings emitted for it (compile-time ones included)

    def to_json(self):
        return {"function": self.function, "roots": list(self.roots), "before": list(self.before),
                "after": list(self.after), "cost_before": self.cost_before.to_json(),
                "cost_after": self.cost_after.to_json(), "relax_ops_before": self.relax_ops_before,
                "relax_ops_after": self.relax_ops_after}

    def to_text(self) -> str:
        lines = [f"[{self.function}] {', '.join(self.roots)}: relax ops {self.relax_ops_before} -> "
                 f"{self.relax_ops_after}, runtime ops {self.cost_before.ops} -> {self.cost_after.ops}, "
                 f"FLOPs {self.cost_before.flops} -> {self.cost_after.flops}, "
                 f"bytes {self.cost_before.bytes} -> {self.cost_after.bytes}"]
        lines += [f"    before: {b}" for b in self.before]
        lines += [f"    after:  {a}" for a in self.after]
        return "\n".join(lines)


@dataclass
class RewriteLog:
    """Side channel of ``PolynomialSimplify``: pass one in, read the records after the pass ran."""
    records: List[RewriteRecord] = field(default_factory=list)
    functions: List[dict] = field(default_factory=list)  # per function: DAGs seen/kept, saturation stats

    def totals(self) -> dict:
        before, after = Cost(), Cost()
        for r in self.records:
            for total, part in ((before, r.cost_before), (after, r.cost_after)):
                total.flops += part.flops
                total.bytes += part.bytes
                total.ops += part.ops
                total.static_ops += part.static_ops
        return {"rewrites": len(self.records), "cost_before": before.to_json(), "cost_after": after.to_json(),
                "relax_ops_before": sum(r.relax_ops_before for r in self.records),
                "relax_ops_after": sum(r.relax_ops_after for r in self.records)}

    def to_json(self):
        return {"totals": self.totals(), "functions": list(self.functions),
                "records": [r.to_json() for r in self.records]}

    def to_text(self) -> str:
        t = self.totals()
        head = (f"polynomial rewrites: {t['rewrites']}; relax ops {t['relax_ops_before']} -> {t['relax_ops_after']}; "
                f"runtime FLOPs {t['cost_before']['flops']} -> {t['cost_after']['flops']}")
        return "\n".join([head] + [r.to_text() for r in self.records])
