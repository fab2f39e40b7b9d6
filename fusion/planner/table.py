"""The producer x consumer fusion table (after DNNFusion): green = fuse, yellow = legal but
decide by measuring both versions on the target, red = never.

Rows and columns are the mapping types of the two *groups* an edge joins (a group's type is its
dominant member's), so the table also speaks for already-fused chains.
"""
from typing import Tuple

from .mapping import Mapping as M

GREEN, YELLOW, RED = "green", "yellow", "red"

_LIGHT = (M.ONE_TO_ONE, M.ONE_TO_MANY, M.REORGANIZE, M.SHUFFLE)


def decide(producer: M, consumer: M) -> Tuple[str, str]:
    """(colour, why) for fusing a producer group into a consumer group."""
    if M.OPAQUE in (producer, consumer):
        return RED, "opaque operator: its loops are unknown to the compiler"
    if consumer in (M.ONE_TO_ONE,):
        return GREEN, "element-wise consumer: fused as an epilogue, no intermediate written"
    if consumer in (M.ONE_TO_MANY, M.REORGANIZE, M.SHUFFLE):
        if producer in _LIGHT:
            return GREEN, "data-movement chain: index arithmetic composes, one pass over memory"
        if producer == M.GEMM and consumer == M.REORGANIZE:
            return GREEN, "GEMM writes its output through a reshape: same memory order, index arithmetic only"
        if producer == M.GEMM:
            # measured on MiniLM (Zen 4, same schedules): Q/K/V GEMMs writing the head-split layout
            # from their tiles ran slower than plain GEMMs plus a separate transpose
            return YELLOW, "GEMM writes its output in the consumer's layout: strided stores from the tile vs one copy"
        if consumer == M.REORGANIZE:
            return GREEN, "a reshape after a reduction reads its output in the same memory order"
        return YELLOW, "layout change after a reduction: changes how the reduction is tiled"
    if consumer == M.REDUCE:
        if producer in (M.ONE_TO_ONE, M.ONE_TO_MANY):
            return YELLOW, "element-wise prologue of a reduction (e.g. residual add + LayerNorm): saves a round trip, may recompute"
        if producer in (M.REORGANIZE, M.SHUFFLE):
            return YELLOW, "reduction reads through a layout change: strided reads vs one copy"
        if producer == M.GEMM:
            return YELLOW, "reduction epilogue of a GEMM (e.g. matmul + LayerNorm): needs whole rows per tile"
        return RED, "two reductions: their loop nests do not align"
    if consumer == M.GEMM:
        if producer in (M.REORGANIZE, M.SHUFFLE):
            return YELLOW, "GEMM reads its operand through a layout change (e.g. the K transpose)"
        if producer in (M.ONE_TO_ONE, M.ONE_TO_MANY):
            return YELLOW, "element-wise prologue of a GEMM: recomputed once per output tile"
        return RED, "two Many-to-Many operators: the second needs all of the first's output"
    return RED, "no rule"
