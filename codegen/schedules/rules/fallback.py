"""Last resort for shapes no other rule recognises: outer spatial loops in parallel, nothing else.

Keeps the stock loop nest (so it is as correct as the unscheduled function) but uses the cores.
"""
from tvm import s_tir

from .base import CPURule
from .common import attempt, extent, iter_kinds, root_blocks, MIN_PARALLEL_WORK, _loop_is_spatial


class ParallelFallback(CPURule):
    name = "parallel-fallback"

    def schedule(self, func, target, traits):
        if traits.num_cores <= 1:
            return None
        sch = s_tir.Schedule(func)
        changed = False
        for blk in root_blocks(sch):
            loops = sch.get_loops(blk)
            if not loops or not iter_kinds(sch, blk).startswith("S"):
                continue
            work = 1
            for lp in loops:
                work *= extent(sch, lp) or 1
            if work >= MIN_PARALLEL_WORK and _loop_is_spatial(sch, blk, loops[0]):
                changed |= attempt(sch.parallel, loops[0])
        return sch if changed else None
