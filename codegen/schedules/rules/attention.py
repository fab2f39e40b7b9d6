"""Fused attention: scores GEMM -> softmax -> P·V GEMM in one kernel, per head and row block.

What LP-Fusion's attention groups (``canao.fusion.planner.attention``) produce: a PrimFunc with two
GEMM blocks, the second reading (through element-wise / layout steps) a softmax over the first's
rows. Schedule:

    parallel for (batch.., row block of mr rows):
        S[mr, n] = Q[rows] x K^T          # mr x nr register tiles, k = head dim
        softmax over each row of S        # max and sum as vector partial reductions
        O[mr, d] = P x V                  # mr x d register tile, k = the row length
        epilogue (head merge / transpose) written from the tile

so a row block's scores and probabilities live in a few KB of L1 and never go to memory.

Preconditions: exactly two blocks ``match_matmul`` accepts, the second's broadcast operand derived
from the first through spatial steps and at least one row reduction; the row block mr divides both
GEMMs' rows; static shapes. Anything else: not this rule (returns None, the Matmul rule takes the kernel). Each
row's whole score vector is computed (no online softmax), which is what short sequences want;
the row block is sized so S fits in L1 (mr x n x 4 bytes <= 16 KB).
"""
from typing import Optional

from tvm import s_tir

from .base import CPURule
from .common import (attempt, dtype_bits, extent, inline_spatial_blocks, is_reduction, is_spatial, largest_divisor,
                     root_blocks, schedule_injective, vectorize_innermost)
from .matmul import _column_tile, match_matmul
from .reduction import _lanes_innermost, _vector_partial_sums

L1_SCORE_BYTES = 16 * 1024


class Attention(CPURule):
    name = "attention"

    def schedule(self, func, target, traits):
        sch = s_tir.Schedule(func)
        gemms = [b for b in root_blocks(sch) if match_matmul(sch, b) is not None]
        if len(gemms) != 2:
            return None
        names = [sch.get(b).name_hint for b in root_blocks(sch)]
        first, second = (sch.get(b).name_hint for b in gemms)
        between = names[names.index(first) + 1:names.index(second)]
        if not any(is_reduction(sch, sch.get_sblock(n)) for n in between):
            return None
        # The probabilities' normalisation stays a block (vectorised per row): inlined, the P·V
        # loop would divide once per multiply-add.
        # Everything from it to the P·V GEMM (the mask's select, layout steps) is folded into it, so
        # the GEMM still reads plain loads.
        last_reduction = max(i for i, n in enumerate(between) if is_reduction(sch, sch.get_sblock(n)))
        norm = next((n for n in between[last_reduction + 1:] if _is_normalisation(sch, sch.get_sblock(n), between)),
                    None)
        if norm is None:
            return None
        tail = between[between.index(norm):]
        # Operand producers outside the chain (a transpose of K) stay materialised, as in the Matmul
        # rule: inlined into the GEMM they would turn its vector loads into gathers.
        operands = [sch.get(p).name_hint for g in (first, second) for p in sch.get_producers(sch.get_sblock(g))
                    if sch.get(p).name_hint not in between]
        inline_spatial_blocks(sch, func, keep=[sch.get_sblock(n) for n in tail + operands])
        for name in tail[1:]:
            norm = _fold_into_normalisation(sch, norm, name, second)
            if norm is None:
                return None
        order = [sch.get(b).name_hint for b in root_blocks(sch)]
        if first not in order or second not in order:
            return None
        partials = [p for n in order[order.index(first) + 1:order.index(second)]
                    for p in [_vector_partial_sums(sch, sch.get_sblock(n), traits)] if p]
        order = [sch.get(b).name_hint for b in root_blocks(sch)]
        chain = order[order.index(first):order.index(second)]
        after = order[order.index(second) + 1:]
        shape1, shape2 = match_matmul(sch, sch.get_sblock(first)), match_matmul(sch, sch.get_sblock(second))
        if shape1 is None or shape2 is None or shape1.m is None or shape2.m is None:
            return None
        lanes = traits.lanes(dtype_bits(sch, sch.get_sblock(second)))
        mr_pref, nr_pref = traits.matmul_tile(dtype_bits(sch, sch.get_sblock(second)))
        row_len = extent(sch, sch.get_loops(sch.get_sblock(first))[shape1.n])
        if row_len is None:
            return None
        mr = largest_divisor(extent(sch, sch.get_loops(sch.get_sblock(second))[shape2.m]) or 1,
                             max(1, min(mr_pref, L1_SCORE_BYTES // (4 * row_len))))
        par = _tile_gemm(sch, second, shape2, mr, nr_pref, lanes, outer_parallel=True, traits=traits)
        if par is None:
            return None
        # The epilogue follows the tile where TVM can place it there; an index it cannot invert
        # (a reshape's floor-mod) leaves it a separate parallel loop over the [.., rows, d] result.
        at_root = []
        for name in after:
            blk = sch.get_sblock(name)
            if not is_spatial(sch, blk):
                return None
            if attempt(sch.reverse_compute_at, blk, par, preserve_unit_loops=True):
                vectorize_innermost(sch, sch.get_sblock(name), lanes, unroll_outer=8)
            else:
                at_root.append(name)
        for name in reversed(chain):
            if not attempt(sch.compute_at, sch.get_sblock(name), par, preserve_unit_loops=True):
                return None
        # (compute_at bound the first GEMM's rows to the row block: its loops keep the iter vars'
        # order under ``par``, so the shape matched before still says which loop is which)
        if _tile_gemm(sch, first, shape1, mr, nr_pref, lanes, outer_parallel=False, traits=traits) is None:
            return None
        for name in partials:
            _lanes_innermost(sch, sch.get_sblock(name), traits)
        for name in at_root + operands:
            schedule_injective(sch, sch.get_sblock(name), traits)
        for name in chain[1:]:
            blk = sch.get_sblock(name)
            if name not in partials and is_spatial(sch, blk):
                vectorize_innermost(sch, blk, lanes, unroll_outer=0)
        return sch


def _fold_into_normalisation(sch, norm: str, name: str, gemm: str) -> Optional[str]:
    """Fold block ``name`` (between the normalisation and the P·V GEMM) away; returns the block that
    is the normalisation afterwards, or None when neither way works.

    Into the normalisation when that is its sole reader and TVM substitutes every load of it;
    else into its own consumers (into the GEMM only if ``name`` is a plain copy, so the GEMM still
    reads loads); else the normalisation is inlined into ``name``, which takes its place. Why the
    checks: ONNX's ``where(isnan(p), 0, p)`` reads the probabilities twice, and reverse-inlining it
    replaced one load only, leaving a read of a buffer nothing wrote (the build failed)."""
    blk = sch.get_sblock(name)
    if len(sch.get_consumers(sch.get_sblock(norm))) == 1 and _reverse_inline_whole(sch, norm, name):
        return norm
    feeds_gemm = any(sch.get(c).name_hint == gemm for c in sch.get_consumers(blk))
    if (not feeds_gemm or _is_copy(sch, blk)) and attempt(sch.compute_inline, blk):
        return norm
    return name if attempt(sch.compute_inline, sch.get_sblock(norm)) else None


def _reverse_inline_whole(sch, producer: str, consumer: str) -> bool:
    """``reverse_compute_inline`` of ``consumer`` into ``producer``, only if afterwards the merged
    block no longer reads the producer's own buffer (tried on a copy of the schedule first)."""
    trial = sch.copy()
    written = trial.get(trial.get_sblock(producer)).writes[0].source
    if not attempt(trial.reverse_compute_inline, trial.get_sblock(consumer)):
        return False
    if any(r.source.same_as(written) for r in trial.get(trial.get_sblock(producer)).reads):
        return False
    sch.reverse_compute_inline(sch.get_sblock(consumer))
    return True


def _is_copy(sch, blk) -> bool:
    """A block whose value is one load (a reshape or transpose): inlined, its consumer still reads a load."""
    from tvm.ir.expr import TensorLoad

    body = sch.get(blk).body
    return hasattr(body, "value") and isinstance(body.value, TensorLoad)


def _is_normalisation(sch, blk, between) -> bool:
    """A spatial block that reads a row reduction's result (softmax's exp / sum)."""
    if not is_spatial(sch, blk):
        return False
    return any(is_reduction(sch, p) and sch.get(p).name_hint in between for p in sch.get_producers(blk))


def _tile_gemm(sch, name, shape, mr, nr_pref, lanes, outer_parallel, traits):
    """Register-tile one GEMM block: (.. m_outer | n_outer, k, m_inner, n_vec, lane). Returns the loop
    the rest of the kernel attaches to (the fused parallel row-block loop with ``outer_parallel``, else
    the tile's n_outer), or None when the rows do not split into ``mr``."""
    blk = sch.get_sblock(name)
    loops = sch.get_loops(blk)
    offset = len(loops) - len(sch.get(blk).iter_vars)  # loops of an enclosing compute_at
    n_ext = extent(sch, loops[offset + shape.n])
    m_ext = extent(sch, loops[offset + shape.m])
    if n_ext is None or m_ext is None or m_ext % mr:
        return None
    nr = _column_tile(n_ext, nr_pref, lanes)
    n_outer, n_inner = sch.split(loops[offset + shape.n], factors=[None, nr])
    m_outer, m_inner = sch.split(loops[offset + shape.m], factors=[None, mr])
    if nr % lanes == 0 and nr > lanes:
        n_vec, n_lane = sch.split(n_inner, factors=[None, lanes])
    else:
        n_vec, n_lane = None, n_inner
    outer = [loops[offset + i] for i in shape.outer]
    inner = [lp for lp in (m_inner, n_vec, n_lane) if lp is not None]
    sch.reorder(*outer, m_outer, n_outer, loops[offset + shape.k], *inner)
    par = None
    if outer_parallel:
        par = sch.fuse(*outer, m_outer) if outer else m_outer
        if traits.num_cores > 1:
            sch.parallel(par)
    for lp in inner[:-1]:
        sch.unroll(lp)
    sch.vectorize(n_lane)
    init = sch.decompose_reduction(sch.get_sblock(name), loops[offset + shape.k])
    sch.vectorize(sch.get_loops(init)[-1])
    return par if outer_parallel else n_outer
