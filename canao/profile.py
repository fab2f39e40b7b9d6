"""Per-kernel profile of a compiled model: where the time goes, kernel by kernel, against the roofline.

What a TVM user reaches for first (``tvmc run --profile``), with what CANAO knows besides: the
DNNFusion mapping type of each kernel, the operators fused into it, its FLOPs and its share of the
FMA roofline measured on the same machine. Per-kernel times come from the VM's instrument hook
(``canao.nas.measurer.LocalMeasurer``: before/after every kernel call, median over runs); the
whole-model time is measured un-instrumented in the same process, so the per-kernel sum can be
compared with it (the gap is VM overhead between calls plus the instrument's own cost).

Limits: host CPU only (a device over RPC has no instrument hook from the host); FLOPs are TVM's
estimate of each PrimFunc (0 where the analysis cannot count, e.g. opaque calls). "% roofline" is
given for GEMM kernels only: the roofline is a multiply-add peak, and TVM counts an element-wise
kernel's transcendental steps as FLOPs (GELU showed "180%"); the whole-model figure divides the
model's matmul work (``canao.analysis.matmul_flops``, as the benchmark does), so two pipelines of
one model are compared on the same work.
"""
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional


@dataclass
class KernelRow:
    name: str
    calls: int
    ms: float            # per inference, all calls together (median over runs)
    share: float         # of the per-kernel sum
    flops: float         # per inference, all calls together
    kind: str            # DNNFusion mapping type of the fused group ("" when unknown)
    ops: List[str]       # operator kinds fused into the kernel

    @property
    def gflops(self) -> Optional[float]:
        return self.flops / self.ms / 1e6 if self.ms > 0 and self.flops > 0 else None


@dataclass
class Profile:
    model: str
    pipeline: str
    target: str
    whole_ms: float                 # un-instrumented whole-model time (trimmed mean)
    kernels: List[KernelRow]
    roofline_gflops: Optional[float] = None
    notes: List[str] = field(default_factory=list)
    model_flops: Optional[float] = None  # matmul FLOPs of the model (None: the kernels' sum)

    @property
    def kernel_sum_ms(self) -> float:
        return sum(k.ms for k in self.kernels)

    @property
    def total_flops(self) -> float:
        return sum(k.flops for k in self.kernels)

    @property
    def work_flops(self) -> float:
        """What the whole-model GFLOP/s divides: the model's matmul FLOPs when known."""
        return self.model_flops if self.model_flops else self.total_flops

    def pct_roofline(self, row: KernelRow) -> Optional[float]:
        """Share of the FMA roofline, for GEMM kernels only (see the module docstring)."""
        g = row.gflops
        if not (g and self.roofline_gflops and "matmul" in row.ops):
            return None
        return 100.0 * g / self.roofline_gflops

    def to_json(self) -> dict:
        rows = []
        for k in self.kernels:
            d = asdict(k)
            d["gflops"] = k.gflops
            d["pct_roofline"] = self.pct_roofline(k)
            rows.append(d)
        whole_gflops = self.work_flops / self.whole_ms / 1e6 if self.whole_ms > 0 else None
        return {"model": self.model, "pipeline": self.pipeline, "target": self.target,
                "whole_ms": self.whole_ms, "kernel_sum_ms": self.kernel_sum_ms,
                "kernel_sum_over_whole": self.kernel_sum_ms / self.whole_ms if self.whole_ms > 0 else None,
                "total_gflop": self.total_flops / 1e9, "model_matmul_gflop": (self.model_flops or 0) / 1e9,
                "whole_gflops": whole_gflops,
                "roofline_gflops": self.roofline_gflops,
                "whole_pct_roofline": (100.0 * whole_gflops / self.roofline_gflops
                                       if whole_gflops and self.roofline_gflops else None),
                "notes": self.notes, "kernels": rows}


def profile_compiled(compiled, imported, inputs: Dict[str, "object"], *, repeat: int = 30, kernel_repeat: int = 7,
                     roofline_gflops: Optional[float] = None, allow_busy: bool = False) -> Profile:
    """Profile a ``canao.codegen.build`` result on this CPU (see the module docstring). Like every
    measurement it refuses to start on a machine already busy with another heavy job unless
    ``allow_busy`` (canao.measure.assert_quiet_machine)."""
    from canao.nas.kernels import kernel_table
    from canao.nas.measurer import LocalMeasurer

    measured = LocalMeasurer(warmup=5, repeat=repeat, kernel_repeat=kernel_repeat, allow_busy=allow_busy).measure(
        compiled, imported, inputs, kernels=True)
    table = kernel_table(compiled)
    total = sum(measured.kernel_ms.values()) or 1.0
    rows = []
    for name, ms in measured.kernel_ms.items():
        info = table.get(name, {})
        calls = measured.kernel_calls.get(name, 1)
        rows.append(KernelRow(name=name, calls=calls, ms=ms, share=ms / total,
                              flops=float(info.get("flops", 0.0)) * calls, kind=info.get("kind", ""),
                              ops=list(info.get("ops", []))))
    rows.sort(key=lambda r: r.ms, reverse=True)
    from canao.analysis import matmul_flops

    return Profile(model=imported.name, pipeline=compiled.pipeline, target=compiled.target.name,
                   model_flops=float(matmul_flops(imported.mod)) or None,
                   whole_ms=float(measured.latency["mean_ms"]), kernels=rows, roofline_gflops=roofline_gflops)


def markdown(profile: Profile, top: Optional[int] = None) -> str:
    """The per-kernel table (longest first), then the totals."""
    lines = [f"## {profile.model} — {profile.pipeline} pipeline ({profile.target})", "",
             "| kernel | calls | ms | share | GFLOP/s | % roofline | kind | ops |",
             "|---|---|---|---|---|---|---|---|"]
    rows = profile.kernels if top is None else profile.kernels[:top]
    for k in rows:
        g, pct = k.gflops, profile.pct_roofline(k)
        lines.append(f"| {k.name} | {k.calls} | {k.ms:.3f} | {100 * k.share:.1f}% | "
                     f"{'' if g is None else f'{g:.1f}'} | {'' if pct is None else f'{pct:.0f}%'} | "
                     f"{k.kind} | {', '.join(k.ops)} |")
    if top is not None and len(profile.kernels) > top:
        rest = profile.kernels[top:]
        lines.append(f"| … {len(rest)} more | {sum(k.calls for k in rest)} | {sum(k.ms for k in rest):.3f} | "
                     f"{100 * sum(k.share for k in rest):.1f}% | | | | |")
    j = profile.to_json()
    lines += ["", f"whole model {profile.whole_ms:.3f} ms; per-kernel sum {profile.kernel_sum_ms:.3f} ms "
              f"({100 * j['kernel_sum_over_whole']:.0f}% of the whole); kernels {j['total_gflop']:.3f} GFLOP "
              f"(TVM's count), model matmul work {j['model_matmul_gflop']:.3f} GFLOP"]
    if j["whole_pct_roofline"] is not None:
        lines.append(f"roofline {profile.roofline_gflops:.0f} GFLOP/s (FMA peak measured in this run): "
                     f"whole model at {j['whole_gflops']:.1f} GFLOP/s of matmul work = {j['whole_pct_roofline']:.0f}%")
    for note in profile.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines) + "\n"


def compare_markdown(profiles: List[Profile]) -> str:
    """Side by side by kernel kind: ms and kernel count of each pipeline."""
    kinds = sorted({k.kind or "other" for p in profiles for k in p.kernels})
    head = "| kind | " + " | ".join(f"{p.pipeline} kernels | {p.pipeline} ms" for p in profiles) + " |"
    lines = ["## by mapping type", "", head, "|---|" + "---|---|" * len(profiles)]
    for kind in kinds:
        cells = []
        for p in profiles:
            ks = [k for k in p.kernels if (k.kind or "other") == kind]
            cells.append(f"{sum(k.calls for k in ks)} | {sum(k.ms for k in ks):.3f}")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines.append("| **whole model** | " + " | ".join(f"{sum(k.calls for k in p.kernels)} | {p.whole_ms:.3f}"
                                                     for p in profiles) + " |")
    return "\n".join(lines) + "\n"


def plot(profiles: List[Profile], path, top: int = 15) -> None:
    """Horizontal bars of the ``top`` kernels of each profile (ms), labelled with % of roofline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(profiles), figsize=(7 * len(profiles), 0.35 * top + 1.5), squeeze=False,
                             sharex=True)
    for ax, p in zip(axes[0], profiles):
        rows = p.kernels[:top][::-1]
        ax.barh([r.name[:48] for r in rows], [r.ms for r in rows], color="#4477aa")
        for i, r in enumerate(rows):
            pct = p.pct_roofline(r)
            if pct is not None:
                ax.text(r.ms, i, f" {pct:.0f}%", va="center", fontsize=7)
        ax.set_xlabel("ms per inference (label: % of FMA roofline)")
        ax.set_title(f"{p.model} — {p.pipeline}: {p.whole_ms:.2f} ms whole", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
