"""Row reductions: softmax, LayerNorm (also behind a residual add or a mask), max/sum reductions.

Recognised by structure: at least one reduction block, no matmul block, and blocks that share
leading spatial axes (the "rows"). Cheap element-wise blocks are inlined first; the last block's
row loops are fused and run in parallel, every other block is computed per row under that loop
(so a row's exp / centred values stay in L1), spatial blocks are vectorised along the row.
"""
from tvm import s_tir

from .base import CPURule
from .common import (attempt, dtype_bits, extent, inline_spatial_blocks, iter_kinds, loop_kinds, parallelize_outer,
                     root_blocks, vectorize_innermost, MIN_PARALLEL_WORK)
from .matmul import find_matmul


def _leading_spatial(kinds: str) -> int:
    return len(kinds) - len(kinds.lstrip("S"))


class RowReduction(CPURule):
    name = "row-reduction"

    def schedule(self, func, target, traits):
        sch = s_tir.Schedule(func)
        blocks = root_blocks(sch)
        if not any("R" in iter_kinds(sch, b) for b in blocks) or find_matmul(sch) is not None:
            return None
        inline_spatial_blocks(sch, func)
        partials = [name for blk in root_blocks(sch) for name in [_vector_partial_sums(sch, blk, traits)] if name]
        blocks = root_blocks(sch)
        leads = [_leading_spatial(loop_kinds(sch, b)) for b in blocks]
        if min(leads) == 0:
            return None
        anchor = blocks[-1]
        lead = _row_loops(sch, blocks, leads)
        if not lead:
            return None
        loops = sch.get_loops(anchor)
        rows = sch.fuse(*loops[:lead]) if lead > 1 else loops[0]
        work = 1
        for lp in sch.get_loops(anchor):
            work *= extent(sch, lp) or 1
        if traits.num_cores > 1 and work >= MIN_PARALLEL_WORK:
            sch.parallel(rows)
        placed = {sch.get(anchor).name_hint}
        for blk in reversed(blocks[:-1]):
            if attempt(sch.compute_at, blk, rows, preserve_unit_loops=True):
                placed.add(sch.get(blk).name_hint)
        for name in partials:
            _lanes_innermost(sch, sch.get_sblock(name), traits)
        for blk in root_blocks(sch):
            lanes = traits.lanes(dtype_bits(sch, blk))
            if "R" not in iter_kinds(sch, blk):
                vectorize_innermost(sch, blk, lanes)
            if sch.get(blk).name_hint not in placed:
                parallelize_outer(sch, blk, traits)
        return sch


def _row_loops(sch, blocks, leads) -> int:
    """How many leading loops of the last block enumerate the rows the reductions run over.

    The last block may have another shape than the reductions (a reshape folded into it), so
    match the number of rows, not the number of loops: the longest prefix whose trip count
    divides the reductions' row count (equal in the common case).
    """
    reductions = [(b, n) for b, n in zip(blocks, leads) if "R" in loop_kinds(sch, b)]
    block, n = reductions[0] if reductions else (blocks[0], leads[0])
    rows = 1
    for lp in sch.get_loops(block)[:n]:
        rows *= extent(sch, lp) or 1
    anchor_loops = sch.get_loops(blocks[-1])
    anchor_kinds = loop_kinds(sch, blocks[-1])
    count, product = 0, 1
    for lp, kind in zip(anchor_loops, anchor_kinds):
        ext = extent(sch, lp)
        if kind != "S" or ext is None or rows % (product * ext):
            break
        product *= ext
        count += 1
        if product == rows:
            break
    # keep at least one loop of the last block inside the row loop (the one vectorised)
    return min(count, len(anchor_loops) - 1) if len(anchor_loops) > 1 else count


def _lanes_innermost(sch, block, traits) -> bool:
    """After compute_at a partial-sum block's loops follow its iter vars (lanes first, then the
    row's k chunks), so the vectorised lane loop ends up outside and the sums run scalar with a
    stride. Put the lane loop innermost again and vectorise it."""
    loops = sch.get_loops(block)
    kinds = loop_kinds(sch, block)
    lanes = traits.lanes(dtype_bits(sch, block))
    lane = next((lp for lp, kind in zip(loops, kinds) if kind == "S" and extent(sch, lp) == lanes), None)
    reduce = [lp for lp, kind in zip(loops, kinds) if kind == "R"]
    if lane is None or len(reduce) != 1 or loops.index(lane) == len(loops) - 1:
        return False
    if not attempt(sch.reorder, reduce[0], lane):
        return False
    return attempt(sch.vectorize, sch.get_loops(block)[-1]) if extent(sch, sch.get_loops(block)[-1]) == lanes else False


def _vector_partial_sums(sch, block, traits) -> str:
    """(The partial-sum block's name, or "" when not done.) Turn ``acc = f(acc, x[k])`` over a row into ``lanes`` independent partial accumulators
    updated as one vector (rfactor on the inner split of k), then a short final reduction.

    LLVM will not reorder a float reduction itself, so without this a row sum / max is a scalar
    dependency chain. Done before compute_at: rfactor needs the block at the top of its loop nest.
    """
    kinds = iter_kinds(sch, block)
    loops = sch.get_loops(block)
    if kinds.count("R") != 1 or loop_kinds(sch, block) != "S" * (len(loops) - 1) + "R":
        return ""
    lanes = traits.lanes(dtype_bits(sch, block))
    k_len = extent(sch, loops[-1])
    if k_len is None or lanes < 2 or k_len % lanes or k_len < 2 * lanes:
        return ""
    name = sch.get(block).name_hint
    _, k_inner = sch.split(loops[-1], factors=[None, lanes])
    try:
        partial = sch.rfactor(k_inner, factor_axis=len(kinds) - 1)
    except Exception:  # not a recognised commutative reducer: undo by re-reading the block
        sch.fuse(*sch.get_loops(sch.get_sblock(name))[-2:])
        return ""
    sch.vectorize(sch.get_loops(partial)[-1])
    return sch.get(partial).name_hint
