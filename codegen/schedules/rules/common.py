"""Small schedule idioms shared by the rules: block structure queries, safe primitives, vector loops."""
import logging
from typing import Optional

from tvm import s_tir, tirx
from tvm.ir.expr import TensorLoad

log = logging.getLogger("canao.codegen.schedules")

# Below this many iterations a parallel loop costs more (thread wake-up) than it saves.
MIN_PARALLEL_WORK = 4096


def attempt(primitive, *args, **kwargs) -> bool:
    """Run a schedule primitive; False (schedule unchanged) when TVM refuses it."""
    try:
        primitive(*args, **kwargs)
        return True
    except Exception as exc:  # tvm.error.TVMError and friends: the primitive's own legality checks
        log.debug("%s refused: %s", getattr(primitive, "__name__", primitive), str(exc).splitlines()[0][:200])
        return False


def root_blocks(sch: s_tir.Schedule) -> list:
    from tvm.s_tir.dlight.analysis import get_root_block

    return list(sch.get_child_blocks(get_root_block(sch)))


def iter_kinds(sch, block_rv) -> str:
    """'S' spatial / 'R' reduction / 'O' other, one letter per block iter var."""
    kinds = {tirx.IterVar.DataPar: "S", tirx.IterVar.CommReduce: "R"}
    return "".join(kinds.get(iv.iter_type, "O") for iv in sch.get(block_rv).iter_vars)


def loop_kinds(sch, block_rv) -> str:
    """'S' / 'R' per loop above the block: whether the loop drives only spatial iter vars."""
    return "".join("S" if _loop_is_spatial(sch, block_rv, lp) else "R" for lp in sch.get_loops(block_rv))


def is_spatial(sch, block_rv) -> bool:
    return set(iter_kinds(sch, block_rv)) <= {"S"}


def is_reduction(sch, block_rv) -> bool:
    return "R" in iter_kinds(sch, block_rv)


def extent(sch, loop_rv) -> Optional[int]:
    ext = sch.get(loop_rv).extent
    return int(ext.value) if isinstance(ext, tirx.IntImm) else None


def writes_output(sch, block_rv, func) -> bool:
    """Whether the block writes one of the function's parameters (so it cannot be inlined away)."""
    return any(any(w.source.same_as(p) for p in func.params) for w in sch.get(block_rv).writes)


def expression_size(expr) -> int:
    """Number of nodes in an expression (a proxy for how costly it is to recompute)."""
    count = [0]

    def visit(e):
        count[0] += 1
        for child in ("a", "b", "value", "condition", "true_value", "false_value", "body"):
            sub = getattr(e, child, None)
            if sub is not None and not isinstance(sub, (int, float, str)) and hasattr(sub, "same_as"):
                visit(sub)
        for arg in getattr(e, "args", None) or []:
            visit(arg)

    visit(expr)
    return count[0]


# An inlined expression larger than this is recomputed by every consumer: keep it materialised.
CHEAP_EXPRESSION = 24


def is_costly(block) -> bool:
    """Whether recomputing a block per consumer would cost real work (calls, long polynomials)."""
    from tvm.ir import Call

    body = block.body
    if not isinstance(body, tirx.BufferStore):
        return True
    if expression_size(body.value) > CHEAP_EXPRESSION:
        return True
    found = []

    def visit(e):
        if isinstance(e, Call) and not isinstance(e, TensorLoad) and getattr(e.op, "name", "") not in CHEAP_CALLS:
            found.append(e)
        for arg in getattr(e, "args", None) or []:
            visit(arg)
        for child in ("a", "b", "value", "condition", "true_value", "false_value"):
            sub = getattr(e, child, None)
            if sub is not None and hasattr(sub, "same_as"):
                visit(sub)

    visit(body.value)
    return bool(found)


CHEAP_CALLS = ("tirx.reinterpret", "tirx.isnan", "tirx.floor", "tirx.if_then_else", "tirx.shift_left", "tirx.likely")


def inline_spatial_blocks(sch, func, keep=()) -> int:
    """Inline spatial (injective) blocks into their consumers, or into their producer when they come
    last, until nothing moves; a block computed with intrinsics and read by several consumers is
    kept so its value is computed once. Returns how many blocks were inlined."""
    keep_names = {sch.get(b).name_hint for b in keep}
    inlined = 0
    progress = True
    while progress:
        progress = False
        for block in root_blocks(sch):
            stmt = sch.get(block)
            if stmt.name_hint in keep_names or not is_spatial(sch, block):
                continue
            if not writes_output(sch, block, func):
                if is_costly(stmt) and len(sch.get_consumers(block)) > 1:
                    continue
                if attempt(sch.compute_inline, block):
                    inlined += 1
                    progress = True
                    break
            elif sch.get_producers(block) and attempt(sch.reverse_compute_inline, block):
                inlined += 1
                progress = True
                break
    return inlined


def largest_divisor(n: int, at_most: int) -> int:
    for d in range(min(n, at_most), 0, -1):
        if n % d == 0:
            return d
    return 1


def vectorize_innermost(sch, block_rv, lanes: int, unroll_outer: int = 0) -> bool:
    """Vectorise the innermost loop of a block when it is spatial and a clean multiple of a vector
    (or shorter than one); split it to ``lanes`` first. Unrolls the next loop up to ``unroll_outer``."""
    loops = sch.get_loops(block_rv)
    if not loops:
        return False
    inner = loops[-1]
    n = extent(sch, inner)
    if n is None or n < 2 or len(sch.get_child_blocks(inner)) != 1:  # only a loop around this block alone
        return False
    kinds = iter_kinds(sch, block_rv)
    if "R" in kinds and not _loop_is_spatial(sch, block_rv, inner):
        return False
    if n <= lanes:
        return attempt(sch.vectorize, inner)
    width = largest_divisor(n, lanes)
    if width < max(2, lanes // 2):
        return False
    outer, vec = sch.split(inner, factors=[None, width])
    if unroll_outer and n // width <= unroll_outer:
        sch.unroll(outer)
    return attempt(sch.vectorize, vec)


def _loop_is_spatial(sch, block_rv, loop_rv) -> bool:
    """Whether ``loop_rv`` only drives spatial iter vars of the block."""
    realize = _realize(sch, block_rv)
    if realize is None:
        return False
    loop_var = sch.get(loop_rv).loop_var
    for iv, value in zip(realize.block.iter_vars, realize.iter_values):
        if iv.iter_type != tirx.IterVar.DataPar and any(v.same_as(loop_var) for v in tirx.analysis.undefined_vars(value)):
            return False
    return True


def _realize(sch, block_rv):
    """The SBlockRealize of a block (holds the loop -> iter var bindings)."""
    sref = sch.get_sref(block_rv)
    target = sref.stmt
    parent = sref.parent
    stack = [parent.stmt.body] if parent is not None and isinstance(parent.stmt, tirx.For) else \
        [parent.stmt.body] if parent is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, s_tir.SBlockRealize):
            if node.block.same_as(target):
                return node
        elif isinstance(node, tirx.SeqStmt):
            stack.extend(node.seq)
        elif isinstance(node, (tirx.For, tirx.AttrStmt, tirx.LetStmt)) and hasattr(node, "body"):
            stack.append(node.body)
        elif isinstance(node, tirx.IfThenElse):
            stack.extend([s for s in (node.then_case, node.else_case) if s is not None])
    return None


def parallelize_outer(sch, block_rv, traits, keep_inner: int = 1):
    """Fuse the block's loops except the last ``keep_inner`` and make them parallel when the work
    is large enough; returns the fused loop (or None)."""
    loops = sch.get_loops(block_rv)
    if len(loops) <= keep_inner:
        return None
    outer = loops[: len(loops) - keep_inner]
    total = 1
    for lp in loops:
        n = extent(sch, lp)
        total *= n if n else 1
    fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
    if traits.num_cores > 1 and total >= MIN_PARALLEL_WORK and _loop_is_spatial(sch, block_rv, fused):
        attempt(sch.parallel, fused)
    return fused


def schedule_injective(sch, block_rv, traits) -> None:
    """Parallel outer loops + vectorised innermost loop for a spatial block at the root."""
    loops = sch.get_loops(block_rv)
    if not loops:
        return
    lanes = traits.lanes(_dtype_bits(sch, block_rv))
    vectorize_innermost(sch, block_rv, lanes)
    loops = sch.get_loops(block_rv)
    keep = 1 if len(loops) > 1 and sch.get(loops[-1]).kind == tirx.ForKind.VECTORIZED else 0
    if len(loops) > keep:
        parallelize_outer(sch, block_rv, traits, keep_inner=keep)


def _dtype_bits(sch, block_rv) -> int:
    writes = sch.get(block_rv).writes
    try:
        return int(writes[0].source.dtype.bits) if writes else 32
    except Exception:
        return 32


dtype_bits = _dtype_bits

