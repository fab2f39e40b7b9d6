"""Element-wise / injective groups: transposes, reshapes, take (gathers), casts, broadcasts.

All blocks spatial. Intermediate blocks are inlined into the output block (a chain of reshape /
transpose becomes one index expression), then each output block runs its outer loops in
parallel and its innermost (output-contiguous) loop as vectors.
"""
from tvm import s_tir

from .base import CPURule
from .common import inline_spatial_blocks, is_spatial, root_blocks, schedule_injective


class Injective(CPURule):
    name = "injective"

    def schedule(self, func, target, traits):
        sch = s_tir.Schedule(func)
        blocks = root_blocks(sch)
        if not blocks or not all(is_spatial(sch, b) for b in blocks):
            return None
        inline_spatial_blocks(sch, func)
        for blk in root_blocks(sch):
            schedule_injective(sch, blk, traits)
        return sch
