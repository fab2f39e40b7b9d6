"""Schedules for the quantize rewrite's integer GEMMs (canao.fusion.quantize.kernels).

On x86 with AVX-512 VNNI the 16 x 4 inner panel is tensorized with a ``vpdpbusd`` intrinsic
(16 int32 lanes += 4 u8 x s8 products each; TVM's ``dot_16x4_vnni`` description, an
implementation with the operand types current LLVM declares). Elsewhere (aarch64 ``+dotprod``,
AVX2) the same register tile is left to LLVM's vectorizer. The register tile is ``mr`` rows x 2 panels
(16 int32 accumulators at mr = 8) held in a local buffer across the k loop; output panels run in
parallel, so each task reads its weight panels once. The dequantize epilogue LP-Fusion fused into
the kernel is inlined into one block computed per tile straight from the accumulators, so the
int32 result never reaches memory. The w4 unpack runs per panel inside the parallel loop.

Registered in the "schedule" slot at order 80, before the default schedules (90); it only looks
at PrimFuncs that contain the GEMM block (found by its name, the contract with kernels.py) and
marks what it schedules so later stages leave it alone.
"""
from typing import Optional

from canao.codegen.pipeline import register_stage

from .apply import is_scheduled
from .rules.common import attempt, extent, iter_kinds, log, root_blocks
from .target_traits import _has

GEMM_BLOCK = "canao_int8_matmul"  # = canao.fusion.quantize.kernels.GEMM_BLOCK (no import: codegen
UNPACK_BLOCK = "canao_w4_unpack"  # must not depend on fusion)
LANES, KPACK = 16, 4
PANELS = 2  # 16-wide output panels per register tile


VNNI_INTRIN = "canao_dot_16x4_vnni"


def _register_vnni() -> None:
    """vpdpbusd for the 16x4 panel: C[16] (int32) += sum_4 A[4] (u8) * B[16, 4] (s8).

    Registered here rather than taken from ``tvm.s_tir.tensor_intrin.x86``: that TVM 0.27 intrinsic
    passes <16 x i32> operands, which LLVM >= 20 (the wheel has 22) rejects at module verification,
    and importing the ``tensor_intrin`` package parses every target's intrinsics (minutes on a busy
    2-core machine).
    """
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T
    from tvm.target.codegen import llvm_version_major

    a_type, b_type = ("uint8x64", "int8x64") if llvm_version_major() >= 20 else ("int32x16", "int32x16")

    @T.prim_func(s_tir=True)
    def desc(a: T.Buffer((4,), "uint8", offset_factor=1), b: T.Buffer((16, 4), "int8", offset_factor=1),
             c: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(c[0:16], a[0:4], b[0:16, 0:4])
            T.writes(c[0:16])
            for i in T.serial(0, 16):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        c[vi] = c[vi] + T.cast(a[vk], "int32") * T.cast(b[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def impl(a: T.Buffer((4,), "uint8", offset_factor=1), b: T.Buffer((16, 4), "int8", offset_factor=1),
             c: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(c[0:16], a[0:4], b[0:16, 0:4])
            T.writes(c[0:16])
            a_i32 = T.reinterpret(a.vload([0], "uint8x4"), dtype="int32")
            c[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"), c.vload([0], dtype="int32x16"),
                T.reinterpret(T.broadcast(a_i32, 16), dtype=a_type), T.reinterpret(b.vload([0, 0], dtype="int8x64"),
                                                                                    dtype=b_type),
                dtype="int32x16")

    TensorIntrin.register(VNNI_INTRIN, desc, impl, override=True)


_REGISTERED = []


def int8_intrinsic(target) -> Optional[str]:
    """The tensor intrinsic for the 16x4 u8 x s8 panel on this target, or None (vectorizer)."""
    if target.kind.name != "llvm" or not _has("avx512vnni", target):
        return None
    if not _REGISTERED:
        _register_vnni()
        _REGISTERED.append(VNNI_INTRIN)
    return VNNI_INTRIN


def _find(sch, name):
    try:
        return sch.get_sblock(name)
    except Exception:  # noqa: BLE001 - not in this function
        return None


def _pick_rows(m: int) -> int:
    for mr in (8, 4, 2, 1):
        if m % mr == 0:
            return mr
    return 1


def schedule_int8_gemm(func, target):
    """A Schedule for a PrimFunc holding the integer GEMM (and its fused epilogue), or None."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    gemm = _find(sch, GEMM_BLOCK)
    if gemm is None:
        return None
    unpack = _find(sch, UNPACK_BLOCK)
    i, j, k = sch.get_loops(gemm)[-3:]
    m, n = extent(sch, i), extent(sch, j)
    if not m or not n or n % (LANES * PANELS) and n % LANES:
        return None
    panels = PANELS if n % (LANES * PANELS) == 0 else 1
    mr = _pick_rows(m)
    epilogue = [b for b in sch.get_consumers(gemm)]
    io, ii = sch.split(i, [None, mr])
    jo, jp, j16 = sch.split(j, [None, panels, LANES])
    ko, k4 = sch.split(k, [None, KPACK])
    sch.reorder(jo, io, ko, ii, jp, j16, k4)
    if n // (LANES * panels) >= 2:
        sch.parallel(jo)  # before decompose_reduction: parallel needs one block under the loop
    if unpack is not None:  # w4: unpack this task's weight panels to int8, then run on them
        sch.compute_at(unpack, jo)
        attempt(sch.vectorize, sch.fuse(*sch.get_loops(unpack)[-2:]))
    acc = sch.cache_write(gemm, 0, "global")  # the intrinsics describe global buffers; it is a tile, compacted
    sch.reverse_compute_at(acc, io)
    init = sch.decompose_reduction(gemm, ko)
    attempt(sch.vectorize, sch.get_loops(init)[-1])
    intrin = int8_intrinsic(target)
    if not (intrin and attempt(sch.tensorize, j16, intrin, preserve_unit_iters=True)):
        attempt(sch.vectorize, j16)
    attempt(sch.unroll, jp)
    attempt(sch.unroll, ii)
    _fuse_epilogue(sch, epilogue, acc, io)
    return sch


def _fuse_epilogue(sch, consumers, acc, io):
    """Inline the element-wise epilogue into one block computed per register tile from the
    accumulators; if its shape does not allow that, give each remaining block a parallel loop."""
    pending = list(consumers)
    chain = []
    while pending:  # every block downstream of the GEMM
        blk = pending.pop(0)
        if any(sch.get(blk).same_as(sch.get(c)) for c in chain):
            continue
        chain.append(blk)
        pending += list(sch.get_consumers(blk))
    spatial = [b for b in chain if set(iter_kinds(sch, b)) <= {"S"}]
    if len(spatial) != len(chain):  # a reduction in the epilogue (e.g. LayerNorm): run it apart
        for blk in chain:
            _parallel_outer(sch, blk)
        return
    for blk in chain:  # intermediates disappear; function outputs (several with a multi-output group) stay
        attempt(sch.compute_inline, blk)
    names = {sch.get(b).name_hint for b in chain if _exists(sch, b)}
    remaining = [b for b in root_blocks(sch) if sch.get(b).name_hint in names]  # program (dataflow) order
    placed = True
    for blk in remaining:  # in dataflow order, so each block's producers are already in the tile
        if attempt(sch.reverse_compute_at, blk, io):
            loops = sch.get_loops(blk)
            attempt(sch.vectorize, loops[-1])
        else:
            placed = False
            _parallel_outer(sch, blk)
    if placed:
        attempt(sch.compute_inline, acc)  # read the accumulators straight from the tile


def _exists(sch, blk) -> bool:
    try:
        sch.get(blk)
        return True
    except Exception:  # noqa: BLE001 - inlined away
        return False


def _parallel_outer(sch, blk):
    loops = sch.get_loops(blk)
    if loops:
        attempt(sch.parallel, loops[0])


def int8_schedule_pass(fast_math: bool = True):
    """A module pass scheduling every unscheduled PrimFunc that holds the integer GEMM
    (``fast_math``: vectorisable erf/exp in its epilogue, as the default schedules do)."""
    import tvm
    from tvm import tirx

    from .fast_math import rewrite_func

    @tvm.transform.module_pass(opt_level=0, name="CanaoInt8Schedule")
    def _pass(mod, _ctx):
        target = tvm.target.Target.current(allow_none=True)
        out = None
        for gv, func in mod.functions_items():
            if not isinstance(func, tirx.PrimFunc) or is_scheduled(func):
                continue
            tgt = func.attrs["target"] if func.attrs is not None and "target" in func.attrs else target
            if tgt is None:
                continue
            try:
                if fast_math and _find(tvm.s_tir.Schedule(func), GEMM_BLOCK) is not None:
                    func = rewrite_func(func) or func
                sch = schedule_int8_gemm(func, tgt)
            except Exception as exc:  # noqa: BLE001 - leave it to the default schedules
                log.debug("int8 schedule gave up on %s: %s", gv.name_hint, str(exc).splitlines()[0][:200])
                sch = None
            if sch is None:
                continue
            if out is None:
                out = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)  # never write into the input
            out[gv] = sch.mod["main"].with_attr("tirx.is_scheduled", True)
        return out if out is not None else mod

    return _pass


def stage_factory(target, options):
    """Pipeline factory: on for quantized builds of llvm targets."""
    from canao.codegen.options import BuildOptions

    options = BuildOptions.coerce(options)
    if not options.quantize or target.kind.name != "llvm" or not options.int8_schedules:
        return None
    return int8_schedule_pass(fast_math=options.fast_math)


register_stage("schedule", "int8-schedules", stage_factory, order=80)
