"""The fusion plan as data: groups, their mapping types and ops, every edge decision and every
rewrite. Printed by `canao inspect --fusion`, saved as JSON with the compiled artifact."""
from dataclasses import dataclass, field
from typing import List, Optional


@dataclass
class FusionPlan:
    groups: List[dict] = field(default_factory=list)
    edges: List[dict] = field(default_factory=list)
    rewrites: List[dict] = field(default_factory=list)
    kernels_before: Optional[int] = None
    kernels_after: Optional[int] = None
    target: str = ""
    # parts of the model left unfused on purpose, and why: {"members": [vars], "reason": str}
    unfused: List[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        colours = {}
        for e in self.edges:
            key = f"{e['decision']}{'-fused' if e['fused'] else '-kept'}"
            colours[key] = colours.get(key, 0) + 1
        return {"target": self.target, "kernels_before": self.kernels_before, "kernels_after": self.kernels_after,
                "summary": {"groups": len(self.groups), "edges": colours,
                            "rewrites": sum(r.get("count", 1) for r in self.rewrites)},
                "rewrites": self.rewrites, "groups": self.groups, "edges": self.edges, "unfused": self.unfused}

    @classmethod
    def from_json(cls, obj: dict, target: str = "") -> "FusionPlan":
        """The plan back from ``to_json`` (e.g. a build report or fusion_plan.json)."""
        return cls(obj.get("groups", []), obj.get("edges", []), obj.get("rewrites", []), obj.get("kernels_before"),
                   obj.get("kernels_after"), target or obj.get("target", ""), obj.get("unfused", []))

    def to_text(self, max_groups: int = 40) -> str:
        lines = [f"LP-Fusion plan for {self.target}: {len(self.groups)} kernels "
                 f"(from {self.kernels_before} legalized ops)", "", "Rewrites:"]
        merged = {}
        for r in self.rewrites:  # identical rewrites (one per layer) print once with their count
            key = (r["rule"], r["before"], r["after"])
            merged[key] = merged.get(key, 0) + r.get("count", 1)
        for (rule, before, after), count in merged.items():
            lines.append(f"  [{rule}] x{count}: {before}  =>  {after}")
        lines += ["", "Groups (kernel: mapping type: ops):"]
        for g in self.groups[:max_groups]:
            lines.append(f"  {g['name']}: {g['kind']}: {' + '.join(g['ops'])}")
        if len(self.groups) > max_groups:
            lines.append(f"  ... {len(self.groups) - max_groups} more (see the JSON)")
        if self.unfused:
            lines += ["", "Left unfused:"]
            for u in self.unfused:
                members = ", ".join(u["members"][:8]) + (" ..." if len(u["members"]) > 8 else "")
                lines.append(f"  {members or 'the whole function'}: {u['reason']}")
        lines += ["", "Edge decisions (producer -> consumer):"]
        for e in self.edges:
            if e["decision"] == "green" and e["fused"]:
                continue  # the common case; listed in the JSON
            m = e.get("measured")
            timing = f" [fused {m['fused_ms']:.3f} ms vs split {m['split_ms']:.3f} ms]" if m else ""
            lines.append(f"  {e['decision']:6s} {'FUSED' if e['fused'] else 'kept '} {e['producer']} -> {e['consumer']}: "
                         f"{e['reason']}{timing}")
        return "\n".join(lines)
