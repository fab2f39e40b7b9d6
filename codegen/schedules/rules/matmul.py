"""Matmul / batch-matmul with fused prologue and epilogue blocks (bias, GELU, residual, LayerNorm).

Recognised by structure: a reduction block whose body is ``C[..] = C[..] + A[..] * B[..]`` with
one reduction var read by both operands; the operand whose innermost index is C's innermost
spatial var is the "vector" operand B (loads of nr consecutive values), the other is broadcast.

Schedule (the classic outer-product micro-kernel):
    parallel for (batch.., n_outer, m_outer):            # or (batch.., m_task) / n_outer / m_mid
        for k:                                            #   if an epilogue reduces along n
            unroll mi < mr: unroll nv: vector nl < lanes:  C_tile[mi, nv*lanes+nl] += A * B
        epilogue blocks, computed on the tile and vectorised
The mr x nr accumulator tile (e.g. 8 x 32 fp32 = 16 zmm registers on AVX-512) lives in registers
for the whole k loop; n_outer outside m_outer keeps the K x nr panel of B hot in L1/L2. When an
epilogue reduces along n, each parallel task owns whole rows (one task per core) and loops
n_outer over its row tiles, so B is still read once per task.
"""
from dataclasses import dataclass
from typing import List, Optional

from tvm import s_tir, tirx
from tvm.ir.expr import TensorLoad

from ..prepack import is_preproc, pack_weight_panels
from .base import CPURule
from .common import (attempt, dtype_bits, extent, is_costly, largest_divisor, root_blocks, schedule_injective,
                     vectorize_innermost, is_spatial, is_reduction, writes_output, _realize)


@dataclass
class MatmulShape:
    block: object  # SBlockRV
    m: Optional[int]  # index of the m iter var (None for a matrix-vector product)
    n: int  # index of the n iter var (vectorised)
    k: int  # index of the reduction iter var
    outer: List[int]  # other spatial iter vars (batch, unit dims)
    vector_operand: int  # 0 or 1: which multiplicand is loaded as vectors


def _loads_from(expr, buffer) -> bool:
    return isinstance(expr, TensorLoad) and expr.source.same_as(buffer)


def _strip_casts(expr):
    while isinstance(expr, tirx.Cast):
        expr = expr.value
    return expr


@dataclass
class GemmUpdate:
    """The multiply-accumulate ``C[..] = C[..] + A[..] * B[..]`` of a GEMM-like TIR block."""

    store: object  # the tirx.BufferStore into C
    a: TensorLoad  # the two multiplicands, in the product's order (casts stripped)
    b: TensorLoad
    reduce_vars: List[int]  # indices of the block's CommReduce iter vars (at least one)

    @property
    def two_inputs(self) -> bool:
        """The multiplicands are loads of two different buffers (A x B, not A x A^T or a sum of squares)."""
        return not self.a.source.same_as(self.b.source)


def match_gemm_update(block) -> Optional[GemmUpdate]:
    """The GEMM-like update of a TIR block (an SBlock, e.g. ``sch.get(block_rv)``), else None.

    CANAO's one test of "this block is a matmul": the default Matmul schedule (``match_matmul``,
    which adds the loop-structure conditions its schedule needs) and LP-Fusion's mapping types
    (``canao.fusion.planner.mapping``) both ask it. Read off the block: at least one CommReduce
    iter var, and a body that stores into C a load of C plus the product of two loads, casts
    allowed around the product and each multiplicand (int8 x int8 -> int32, mixed precision).
    """
    reduce_vars = [i for i, iv in enumerate(block.iter_vars) if iv.iter_type == tirx.IterVar.CommReduce]
    if not reduce_vars:
        return None
    store = block.body
    if not isinstance(store, tirx.BufferStore) or not isinstance(store.value, tirx.Add):
        return None
    lhs, rhs = store.value.a, store.value.b
    acc, prod = (lhs, rhs) if _loads_from(lhs, store.buffer) else (rhs, lhs)
    if not _loads_from(acc, store.buffer):
        return None
    prod = _strip_casts(prod)
    if not isinstance(prod, tirx.Mul):
        return None
    a, b = _strip_casts(prod.a), _strip_casts(prod.b)
    if not (isinstance(a, TensorLoad) and isinstance(b, TensorLoad)):
        return None
    return GemmUpdate(store, a, b, reduce_vars)


def _vars(indices):
    out = set()
    for idx in indices:
        out |= {v for v in tirx.analysis.undefined_vars(idx)}
    return out


def _contains(var_set, var):
    return any(v.same_as(var) for v in var_set)


def match_matmul(sch, block_rv) -> Optional[MatmulShape]:
    """The matmul this rule schedules: a ``match_gemm_update`` block with one reduction var and an
    init, one trivially bound loop per iter var, and a multiplicand loadable as vectors along n."""
    block = sch.get(block_rv)
    update = match_gemm_update(block)
    if update is None or len(update.reduce_vars) != 1 or block.init is None:
        return None
    store, a, b = update.store, update.a, update.b
    # loop structure: one loop per iter var, in order, bound trivially
    loops = sch.get_loops(block_rv)
    realize = _realize(sch, block_rv)
    if realize is None or len(loops) != len(block.iter_vars):
        return None
    for lp, value in zip(loops, realize.iter_values):
        if not (isinstance(value, tirx.Var) and value.same_as(sch.get(lp).loop_var)):
            return None
    iv = [v.var for v in block.iter_vars]
    k = update.reduce_vars[0]
    va, vb, vc = _vars(a.indices), _vars(b.indices), _vars(store.indices)
    if not (_contains(va, iv[k]) and _contains(vb, iv[k])):
        return None
    last_c = store.indices[-1]
    if not isinstance(last_c, tirx.Var):
        return None
    n = next((i for i, v in enumerate(iv) if v.same_as(last_c)), None)
    if n is None:
        return None
    loads = [a, b]
    vector = None
    for which, load in enumerate(loads):
        last = load.indices[-1]
        other = loads[1 - which]
        if isinstance(last, tirx.Var) and last.same_as(iv[n]) and not _contains(_vars(other.indices), iv[n]):
            vector = which
    if vector is None:  # e.g. B stored [n, k]: vectors would be gathers; leave to another rule
        return None
    broadcast_vars = _vars(loads[1 - vector].indices)
    vector_vars = _vars(loads[vector].indices)
    m = None
    outer = []
    for i, v in enumerate(iv):
        if i in (n, k):
            continue
        if not _contains(vc, v):
            return None
        if _contains(broadcast_vars, v) and not _contains(vector_vars, v):
            m = i if m is None or i > m else m
    outer = [i for i in range(len(iv)) if i not in (n, k, m)]
    return MatmulShape(block_rv, m, n, k, outer, vector)


def find_matmul(sch):
    """The matmul-like block doing the most multiply-adds, or None."""
    best, best_work = None, -1
    for blk in root_blocks(sch):
        shape = match_matmul(sch, blk)
        if shape is None:
            continue
        work = 1
        for lp in sch.get_loops(blk):
            work *= extent(sch, lp) or 1
        if work > best_work:
            best, best_work = shape, work
    return best


class Matmul(CPURule):
    name = "matmul"

    def schedule(self, func, target, traits):
        sch = s_tir.Schedule(func)
        shape = find_matmul(sch)
        if shape is None:
            return None
        main = shape.block
        main_name = sch.get(main).name_hint
        order = [sch.get(b).name_hint for b in root_blocks(sch)]
        pos = order.index(main_name)
        before, after = order[:pos], order[pos + 1:]
        # Producers that only feed the epilogue (reshapes of the residual, bias broadcasts) are
        # inlined; producers of the operands stay materialised (inlining a transpose into the
        # vector operand would turn vector loads into gathers) and get an injective schedule.
        for name in before:
            blk = sch.get_sblock(name)
            if is_spatial(sch, blk) and not any(sch.get(c).name_hint == main_name for c in sch.get_consumers(blk)):
                attempt(sch.compute_inline, blk)
        # Element-wise epilogue steps (bias, reshape, GELU's multiplies) are inlined into the next
        # one, so the tile goes from the accumulator to the output in registers. Left as blocks,
        # each wrote its own full-size buffer (measured on MiniLM's FFN-up + GELU: 2.9 ms per call
        # vs 2.1 for the GEMM + bias alone). A costly step read twice stays materialised.
        for name in after:
            blk = sch.get_sblock(name)
            if not is_spatial(sch, blk) or writes_output(sch, blk, func):
                continue
            if is_costly(sch.get(blk)) and len(sch.get_consumers(blk)) > 1:
                continue
            attempt(sch.compute_inline, blk)
        order = [sch.get(b).name_hint for b in root_blocks(sch)]
        after = order[order.index(main_name) + 1:]
        row_mode = any(is_reduction(sch, sch.get_sblock(name)) for name in after)
        # An output written straight by the reduction gets a tile-sized accumulator.
        if _writes_param(sch.get(main), func):
            sch.cache_write(main, 0, "global")
            main = sch.get_sblock(main_name)
            after = [sch.get(b).name_hint for b in root_blocks(sch)][pos + 1:]
        lanes = traits.lanes(dtype_bits(sch, main))
        mr_pref, nr_pref = traits.matmul_tile(dtype_bits(sch, main))
        loops = sch.get_loops(main)
        n_ext = extent(sch, loops[shape.n])
        m_ext = extent(sch, loops[shape.m]) if shape.m is not None else 1
        if n_ext is None or m_ext is None:
            return None
        nr = _column_tile(n_ext, nr_pref, lanes)
        mr = largest_divisor(m_ext, mr_pref)
        update = match_gemm_update(sch.get(main))
        iv = [v.var for v in sch.get(main).iter_vars]
        vector_load = update.b if shape.vector_operand == 1 else update.a
        pack_weight_panels(sch, main, func, vector_load, iv[shape.k], iv[shape.n], nr)
        n_outer, n_inner = sch.split(loops[shape.n], factors=[None, nr])
        if shape.m is not None:
            m_outer, m_inner = sch.split(loops[shape.m], factors=[None, mr])
        else:
            m_outer = m_inner = None
        if nr % lanes == 0 and nr > lanes:
            n_vec, n_lane = sch.split(n_inner, factors=[None, lanes])
        else:
            n_vec, n_lane = None, n_inner
        outer = [loops[i] for i in shape.outer]
        inner = [lp for lp in (m_inner, n_vec, n_lane) if lp is not None]
        if row_mode and m_outer is not None:
            # Whole rows per task: one task per core, its row tiles inside the n loop so each
            # K x nr panel of B is read once per task (not once per row tile).
            tasks = largest_divisor(m_ext // mr, max(traits.num_cores, 1))
            m_task, m_mid = sch.split(m_outer, factors=[tasks, None])
            sch.reorder(*outer, m_task, n_outer, m_mid, loops[shape.k], *inner)
            par_loops = outer + [m_task]
        else:
            tiles = [lp for lp in (n_outer, m_outer) if lp is not None]
            sch.reorder(*outer, *tiles, loops[shape.k], *inner)
            par_loops = outer + tiles
        par = sch.fuse(*par_loops) if len(par_loops) > 1 else par_loops[0]
        if traits.num_cores > 1:
            sch.parallel(par)
        for lp in inner[:-1]:
            sch.unroll(lp)
        sch.vectorize(n_lane)
        init = sch.decompose_reduction(main, loops[shape.k])
        init_loops = sch.get_loops(init)
        sch.vectorize(init_loops[-1])
        placed = {main_name, sch.get(init).name_hint}
        # Epilogue blocks follow the tile: each is computed right after its tile is accumulated.
        # Only blocks that iterate exactly the matmul's output space (spatial x reduced, as a
        # LayerNorm row does) may follow it: a block over a larger space (a concat of this
        # output with another tensor) would be computed only where the tile is.
        out_space = _iteration_space(sch, main, spatial_only=True)
        for name in after:
            blk = sch.get_sblock(name)
            if _iteration_space(sch, blk) != out_space:
                continue
            if is_spatial(sch, blk) and not _tile_maps_to_a_box(sch, blk, main, nr, m_ext):
                continue
            if attempt(sch.reverse_compute_at, blk, par, preserve_unit_loops=True):
                placed.add(name)
                if is_spatial(sch, blk):
                    vectorize_innermost(sch, blk, lanes, unroll_outer=8)
        # Whatever is still at the root (operand producers, unattachable consumers).
        for blk in root_blocks(sch):
            if sch.get(blk).name_hint not in placed and is_spatial(sch, blk) and not is_preproc(sch, blk):
                schedule_injective(sch, blk, traits)
        return sch


def _column_tile(n: int, preferred: int, lanes: int) -> int:
    """Columns per register tile: the preferred width if it divides n, else the widest multiple
    of the vector width that does, else the widest divisor (scalar tail-free)."""
    if n % preferred == 0:
        return preferred
    for width in range(preferred - preferred % lanes, lanes - 1, -lanes):
        if width and n % width == 0:
            return width
    return largest_divisor(n, preferred)


def _iteration_space(sch, blk, spatial_only: bool = False):
    """Product of the block's iteration extents (spatial ones only if asked); None if symbolic."""
    total = 1
    for iv in sch.get(blk).iter_vars:
        if spatial_only and int(iv.iter_type) != 0:
            continue
        try:
            total *= int(iv.dom.extent)
        except TypeError:
            return None
    return total


def _spatial_extents(sch, blk):
    """Extents of the block's spatial iteration vars in order; None if one is symbolic."""
    try:
        return [int(iv.dom.extent) for iv in sch.get(blk).iter_vars if int(iv.iter_type) == 0]
    except TypeError:
        return None


def _tile_maps_to_a_box(sch, blk, main, nr: int, m_ext: int) -> bool:
    """Whether an epilogue over a reshaped output (e.g. [S, 96] written as [S, 2, 48]) reads each
    mr x nr tile as a box of its own iteration space, so ``reverse_compute_at`` under the tile
    computes exactly the tile. Required: its innermost extent is a multiple of nr (a 32-column tile
    of 96 columns split as 2 x 48 straddles the 48 boundary) and the rows are not split (M is one
    of its extents). Why: a straddling tile gave wrong results (DeBERTa's Q projection on AVX-512,
    nr = 32, max rel err 0.3; with AVX2's nr = 16 the tiles happened to align)."""
    extents = _spatial_extents(sch, blk)
    if extents is not None and extents == _spatial_extents(sch, main):
        return True  # the output's own shape: the tile is a box of it
    if not extents:
        return False
    return extents[-1] % nr == 0 and (m_ext <= 1 or m_ext in extents)


def _writes_param(block, func) -> bool:
    return any(any(w.source.same_as(p) for p in func.params) for w in block.writes)
