"""DNNFusion's operator mapping types, read off TVM's OpPatternKind of each legalized PrimFunc.

ElemWise -> One-to-One, Broadcast -> One-to-Many, Injective -> Reorganize (or Shuffle when it
permutes axes), CommReduce -> Many-to-Many (reduce), OutEWiseFusable -> Many-to-Many (GEMM-like),
Opaque -> a barrier nothing fuses across.
"""
import enum

from tvm import tirx


class Mapping(enum.IntEnum):
    # ordered by how much a group's loop structure is dictated by its members (the group's kind
    # is its highest member)
    ONE_TO_ONE = 0
    ONE_TO_MANY = 1
    REORGANIZE = 2
    SHUFFLE = 3
    REDUCE = 4  # Many-to-Many, reduction (softmax, LayerNorm, max)
    GEMM = 5  # Many-to-Many, output-elementwise-fusable (matmul, conv)
    OPAQUE = 6

    @property
    def label(self) -> str:
        return {0: "One-to-One", 1: "One-to-Many", 2: "Reorganize", 3: "Shuffle",
                4: "Many-to-Many (reduce)", 5: "Many-to-Many (GEMM)", 6: "Opaque"}[int(self)]


_SHUFFLE_HINTS = ("transpose", "permute")


def _block_structure(func):
    """(has a reduction block, has a GEMM-like one, number of blocks).

    GEMM-like: what the default Matmul schedule's detector (``match_gemm_update``, the one GEMM
    test in CANAO) accepts, with the two multiplicands read from different buffers.
    """
    from tvm import s_tir

    from canao.codegen.schedules.rules.matmul import match_gemm_update

    sch = s_tir.Schedule(func)
    blocks, stack = [], list(sch.get_child_blocks(sch.get_sblock("root")))
    while stack:
        rv = stack.pop()
        blocks.append(sch.get(rv))
        stack.extend(sch.get_child_blocks(rv))
    reduction = gemm = False
    for block in blocks:
        if not any(iv.iter_type == tirx.IterVar.CommReduce for iv in block.iter_vars):
            continue
        reduction = True
        update = match_gemm_update(block)
        if update is not None and update.two_inputs:
            gemm = True
    return reduction, gemm, len(blocks)


def classify(func: "tirx.PrimFunc", name: str) -> Mapping:
    """Mapping type of a legalized PrimFunc.

    TVM's ``op_pattern`` is the starting point, but it calls LayerNorm and softmax
    OutEWiseFusable like a matmul and a gather Opaque, so the block structure decides those: a
    reduction of products of two inputs is a GEMM, any other reduction is a reduce, and an opaque
    function made only of spatial blocks (a gather such as ``take``) reorganizes data.
    """
    attrs = func.attrs if func.attrs is not None else {}
    pattern = int(attrs["op_pattern"]) if "op_pattern" in attrs else 8
    try:
        reduction, gemm, nblocks = _block_structure(func)
    except Exception:  # noqa: BLE001 - unusual TIR: trust op_pattern alone
        reduction = gemm = None
        nblocks = 0
    if gemm:
        return Mapping.GEMM
    if reduction:
        return Mapping.REDUCE
    if reduction is False and pattern >= 3:
        return Mapping.REORGANIZE if pattern == 8 and nblocks == 1 else Mapping.OPAQUE if pattern == 8 else Mapping.REORGANIZE
    if pattern == 0:
        return Mapping.ONE_TO_ONE
    if pattern == 1:
        return Mapping.ONE_TO_MANY
    if pattern == 2:
        return Mapping.SHUFFLE if any(h in name for h in _SHUFFLE_HINTS) else Mapping.REORGANIZE
    if pattern == 3:
        return Mapping.REDUCE
    if pattern == 4:
        return Mapping.GEMM
    return Mapping.OPAQUE
