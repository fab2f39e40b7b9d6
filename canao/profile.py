"""Per-kernel profile of a compiled model: where the time goes, kernel by kernel, against the roofline.

What a TVM user reaches for first (``tvmc run --profile``), with what CANAO knows besides: the
DNNFusion mapping type of each kernel, the operators fused into it, its FLOPs and its share of the
FMA roofline measured on the same machine. Per-kernel times come from the VM's instrument hook
(``canao.nas.measurer.LocalMeasurer``: before/after every kernel call, median over runs); the
whole-model time is measured un-instrumented in the same process, so the per-kernel sum can be
compared with it (the gap is VM overhead between calls plus the instrument's own cost).

On a device over TVM RPC (``profile_remote``, ``canao profile --rpc``) the instrument hook cannot
serve: it is a host callback, and over RPC it would time the network once per kernel call. There the
whole model is timed by TVM's time_evaluator on the VM's ``main`` (the device's clock), and each
kernel alone by time_evaluator on the device, from a second library holding only the kernels (the
VM library's kernels are its import, which time_evaluator does not search), on arguments of the
kernel's shapes; ms per inference = median per call x calls in ``main`` (counted in the Relax IR).
The device's output is fetched and checked against the host reference before anything is timed.
No roofline there: ``canao.bench.peak`` measures this host's FMA peak with a native binary run
here, not the device's ("—" in the column). Timings of an emulated device (qemu) mean nothing; the
report says so.

Limits: FLOPs are TVM's estimate of each PrimFunc (0 where the analysis cannot count, e.g. opaque
calls). "% roofline" is given for GEMM kernels only: the roofline is a multiply-add peak, and TVM
counts an element-wise kernel's transcendental steps as FLOPs (GELU showed "180%"); the whole-model
figure divides the model's matmul work (``canao.analysis.matmul_flops``, as the benchmark does), so
two pipelines of one model are compared on the same work.
"""
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

EMULATED_NOTE = ("emulated device (qemu-user): these timings mean nothing (an emulated instruction stream, "
                 "not a phone); what counts is the output check")
NO_ROOFLINE_NOTE = ("no roofline over RPC: canao.bench.peak measures this host's FMA peak with a native binary "
                    "run here, not the device's ('—' in the % roofline column)")


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
    device: Optional[str] = None    # HOST:PORT of the RPC device it was timed on (None: this CPU)
    emulated: Optional[bool] = None  # the device is the emulated one (its timings mean nothing)
    check: Optional[dict] = None    # the device's outputs vs the host reference (deploy.compare_outputs)
    kernel_timing: str = "vm-instrument"  # or "time_evaluator" (each kernel alone, on the device)

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
                "device": self.device, "emulated": self.emulated, "kernel_timing": self.kernel_timing,
                "output_check": self.check, "notes": self.notes, "kernels": rows}


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


def profile_remote(compiled, imported, inputs: Dict[str, np.ndarray], session, *, repeat: int = 30,
                   kernel_repeat: int = 7, atol: float = 1e-3, seed: int = 0) -> Profile:
    """Profile a build for a device on that device over TVM RPC (``session``: an open
    ``canao.android_runner.connect`` session; see the module docstring for how each figure is taken).

    Order: upload (ELF machine checked first), run ``main`` once and compare every output with the host
    reference (``imported.reference_outputs``, tolerance ``atol`` scaled by max|reference|, as ``canao
    deploy``), time the whole model ``repeat`` times (trimmed mean), then each kernel ``kernel_repeat``
    times (median). ``Profile.check`` holds the comparison; a mismatch is reported, not raised."""
    import tempfile

    from canao.android_runner.deploy import compare_outputs
    from canao.android_runner.remote import RemoteModel, load_library
    from canao.nas.kernels import kernel_table
    from canao.nas.measurer import trimmed

    ordered = [np.ascontiguousarray(inputs[s.name]) for s in imported.inputs]
    with tempfile.TemporaryDirectory(prefix="canao-profile-") as tmp:
        lib, kernels_lib = Path(tmp) / "lib.so", Path(tmp) / "kernels.so"
        compiled.export(str(lib))
        export_kernels(compiled, kernels_lib)
        model = RemoteModel(session, lib, compiled.params)
        kernels = load_library(session, kernels_lib)
    check = compare_outputs(model.run(ordered), imported.reference_outputs(inputs), atol)
    whole_ms = float(trimmed(model.time(ordered, repeat=repeat))["mean_ms"])
    table = kernel_table(compiled)
    rng = np.random.default_rng(seed)
    timed, untimed = {}, []
    for name, info in table.items():
        if not info["calls"]:
            continue
        ms = _time_kernel(session, kernels, compiled.mod[name], name, kernel_repeat, rng)
        if ms is None:
            untimed.append(name)
        else:
            timed[name] = ms * info["calls"]
    total = sum(timed.values()) or 1.0
    rows = [KernelRow(name=name, calls=table[name]["calls"], ms=ms, share=ms / total,
                      flops=float(table[name]["flops"]) * table[name]["calls"], kind=table[name]["kind"],
                      ops=list(table[name]["ops"])) for name, ms in timed.items()]
    rows.sort(key=lambda r: r.ms, reverse=True)
    from canao.analysis import matmul_flops

    where = "{}:{}".format(*session.address)
    emulated = is_emulated(session.address)
    notes = [f"timed on device {where} over TVM RPC: the whole model by time_evaluator on main, each kernel "
             "alone by time_evaluator on arguments of its shapes (not inside the VM: its instrument hook is a "
             "host callback), so the per-kernel sum need not match the whole model"]
    if emulated:
        notes.append(EMULATED_NOTE)
    notes.append(NO_ROOFLINE_NOTE)
    if untimed:
        notes.append(f"not timed (an argument without a static buffer shape): {', '.join(sorted(untimed))}")
    return Profile(model=imported.name, pipeline=compiled.pipeline, target=compiled.target.name,
                   model_flops=float(matmul_flops(imported.mod)) or None, whole_ms=whole_ms, kernels=rows,
                   roofline_gflops=None, notes=notes, device=where, emulated=emulated, check=check,
                   kernel_timing="time_evaluator")


def export_kernels(compiled, path) -> None:
    """Write the build's kernels alone as a shared library for the device (linked like
    ``CompiledModel.export``): the VM library holds them as an imported module, whose functions
    time_evaluator does not find by name over RPC."""
    from canao.atomic import quiet_native_stderr
    from canao.errors import CanaoError

    found = [m for m in compiled.executable.mod.imports if m.kind in ("llvm", "c", "library")]
    if len(found) != 1:
        raise CanaoError(f"the build of {compiled.pipeline} has {len(found)} kernel modules, expected one",
                         "profile it on this CPU instead (drop --rpc)")
    kwargs = {"cc": compiled.target.cross_compiler} if compiled.target.cross_compiler else {}
    with quiet_native_stderr():
        found[0].export_library(str(path), **kwargs)


def _kernel_arguments(func, rng) -> Optional[List[Tuple[Tuple[int, ...], str, Optional[np.ndarray]]]]:
    """(shape, dtype, data) per parameter of a PrimFunc: uniform floats in [-1, 1), zero integers (an index
    stays in range), data None for a dtype numpy lacks (left uninitialised on the device); None when a
    parameter is not a buffer of static shape."""
    out = []
    for param in func.params:
        if not hasattr(param, "shape") or not hasattr(param, "dtype"):
            return None
        try:
            shape = tuple(int(d) for d in param.shape)
        except (TypeError, ValueError):
            return None
        dtype = str(param.dtype)
        try:
            np_dtype = np.dtype(dtype)
        except TypeError:
            out.append((shape, dtype, None))
            continue
        data = rng.uniform(-1.0, 1.0, shape).astype(np_dtype) if np_dtype.kind == "f" else np.zeros(shape, np_dtype)
        out.append((shape, dtype, data))
    return out


def _time_kernel(session, kernels, func, name: str, repeat: int, rng) -> Optional[float]:
    """Median ms of one call of kernel ``name`` on the device, or None when it cannot be called alone."""
    import tvm

    spec = _kernel_arguments(func, rng)
    if spec is None:
        return None
    dev = session.device
    args = session.call(f"upload the arguments of {name}", lambda: [
        tvm.runtime.tensor(data, dev) if data is not None else tvm.runtime.empty(shape, dtype, dev)
        for shape, dtype, data in spec])
    evaluator = session.call(f"time_evaluator {name}", lambda: kernels.time_evaluator(
        name, dev, number=1, repeat=repeat, min_repeat_ms=0))
    result = session.call(f"time {name}", lambda: evaluator(*args),
                          timeout=session.call_timeout * max(1, repeat // 5 + 1))
    return float(np.median(result.results)) * 1e3


def is_emulated(address) -> bool:
    """Whether HOST:PORT is an emulated device on this machine: a loopback address whose listening
    process runs CANAO's device launcher or qemu (False when that cannot be told)."""
    import socket

    from canao.android_runner.emulator import DEVICE_MAIN

    host, port = address
    try:
        if not socket.gethostbyname(host).startswith("127."):
            return False
        import psutil

        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                cmd = " ".join(psutil.Process(conn.pid).cmdline())
                return DEVICE_MAIN.name in cmd or "qemu" in cmd
    except Exception:  # noqa: BLE001 - no permission to list sockets, a process that just ended: unknown
        return False
    return False


def markdown(profile: Profile, top: Optional[int] = None) -> str:
    """The per-kernel table (longest first), then the totals."""
    where = ""
    if profile.device:
        where = f" on device {profile.device}" + (" (emulated: timings mean nothing)" if profile.emulated else "")
    lines = [f"## {profile.model} — {profile.pipeline} pipeline ({profile.target}){where}", "",
             "| kernel | calls | ms | share | GFLOP/s | % roofline | kind | ops |",
             "|---|---|---|---|---|---|---|---|"]
    rows = profile.kernels if top is None else profile.kernels[:top]
    no_roofline = "—" if profile.roofline_gflops is None else ""
    for k in rows:
        g, pct = k.gflops, profile.pct_roofline(k)
        lines.append(f"| {k.name} | {k.calls} | {k.ms:.3f} | {100 * k.share:.1f}% | "
                     f"{'' if g is None else f'{g:.1f}'} | {no_roofline if pct is None else f'{pct:.0f}%'} | "
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
    if profile.check is not None:
        lines.append(check_line(profile.check))
    for note in profile.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines) + "\n"


def check_line(check: dict) -> str:
    """One line on the device's outputs vs the host reference."""
    if check.get("match"):
        return (f"outputs checked on the device: match the host reference (max abs err "
                f"{check['max_abs_err']:.3g} <= tolerance {check['tolerance']:.3g})")
    why = check.get("why") or f"max abs err {check.get('max_abs_err', float('nan')):.3g} > tolerance " \
                              f"{check.get('tolerance', float('nan')):.3g}"
    return f"outputs checked on the device: DIFFER from the host reference ({why})"


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
        ax.set_xlabel("ms per inference" + (" (label: % of FMA roofline)" if p.roofline_gflops else ""))
        where = f"\non device {p.device}" + (" — emulated: timings mean nothing" if p.emulated else "") \
            if p.device else ""
        ax.set_title(f"{p.model} — {p.pipeline}: {p.whole_ms:.2f} ms whole{where}", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
