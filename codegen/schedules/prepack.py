"""Weight prepacking: a GEMM's weight read in the panel layout its register tile streams.

The Matmul rule's inner loop loads, per k, one row of nr consecutive weights ([K, N] row-major:
a stride of N floats between k steps, so each tile walks K scattered cache lines of B). Packed
as [N / nr, K, nr] panels the same loads are one contiguous stream per tile, which the hardware
prefetcher follows and no two panels share a cache line.

Mechanism (TVM's own, as MetaSchedule's RewriteLayout postprocessor uses it):
  1. ``relax.transform.AttachAttrLayoutFreeBuffers`` marks the PrimFunc params that are model
     weights (``layout_free_buffers``): the schedule slot's "mark-weights" stage (order 85: after
     a tuning database, whose records must still match the unmarked kernels, before the default
     schedules);
  2. :func:`pack_weight_panels` (called by the Matmul rule) adds a ``cache_read`` of the weight
     in the packed layout (the GEMM alone reads it), annotated ``meta_schedule.layout_rewrite_preproc``;
  3. ``relax.transform.SplitLayoutRewritePreproc`` moves that block into its own PrimFunc called
     from main on the weight, ``LiftTransformParams`` lifts the call into the weight transform,
     and the build runs it once at compile time (``codegen.build``): the shipped weights are packed.

Preconditions: the weight is a 2-D [K, N] param listed in ``layout_free_buffers``, read by
the GEMM as ``B[k, n]``, and nr divides N. Anything else keeps its layout (the rule's schedule is
otherwise unchanged). Without step 3 the packing block would run inside the kernel on every call: whoever
runs the canao schedule slot with ``prepack_weights`` on must lift as ``codegen.build`` does
(``tuning.apply.compile_fused``, which cannot, switches it off). ``default_schedule_pass`` alone
never marks anything.
"""
from tvm import tirx

LAYOUT_FREE_ATTR = "layout_free_buffers"
PREPROC_ANNOTATION = "meta_schedule.layout_rewrite_preproc"


def layout_free_params(func) -> list:
    """Indices of ``func``'s params marked as weights (empty when nothing marked them)."""
    marked = func.attrs.get(LAYOUT_FREE_ATTR) if func.attrs is not None else None
    return [int(i) for i in marked] if marked is not None else []


def _read_index(block, buffer) -> int:
    for i, region in enumerate(block.reads):
        if region.source.same_as(buffer):
            return i
    return -1


def pack_weight_panels(sch, main, func, load, k_var, n_var, nr: int) -> bool:
    """Read the GEMM's vector operand ``load`` (``B[k, n]``) of block ``main`` from a [N/nr, K, nr]
    copy made by a layout-rewrite preprocessing block. True if packed; False (schedule untouched)
    when a precondition does not hold."""
    marked = layout_free_params(func)
    if not marked:
        return False
    buffer = load.source
    if not any(buffer.same_as(func.params[i]) for i in marked if i < len(func.params)):  # params are buffers
        return False
    indices = list(load.indices)
    if len(indices) != 2 or not (isinstance(indices[0], tirx.Var) and indices[0].same_as(k_var)
                                 and isinstance(indices[1], tirx.Var) and indices[1].same_as(n_var)):
        return False
    try:
        n_ext = int(buffer.shape[1])
    except TypeError:
        return False
    if nr <= 1 or n_ext % nr or n_ext == nr:
        return False
    block = sch.get(main)
    index = _read_index(block, buffer)
    if index < 0:
        return False
    packed = sch.cache_read(main, index, "global", consumer_blocks=[main])
    sch.transform_layout(packed, ("write", 0), lambda k, n: (n // nr, k, n % nr))
    sch.annotate(packed, PREPROC_ANNOTATION, True)
    return True


def is_preproc(sch, block_rv) -> bool:
    """Whether a block is a weight-packing block (left unscheduled: it runs once, at build time)."""
    return PREPROC_ANNOTATION in sch.get(block_rv).annotations


def _packed_funcs(mod) -> set:
    """Names of the PrimFuncs of ``mod`` holding a weight-packing block."""
    from tvm import s_tir

    from .rules.common import root_blocks

    names = set()
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc) and layout_free_params(func):
            sch = s_tir.Schedule(func)
            if any(is_preproc(sch, blk) for blk in root_blocks(sch)):
                names.add(gv.name_hint)
    return names


def has_packing(mod) -> bool:
    """Whether some PrimFunc of ``mod`` has a weight-packing block (a build must then lift it)."""
    return bool(_packed_funcs(mod))


def split_packing(mod):
    """``relax.transform.SplitLayoutRewritePreproc`` on the kernels that pack a weight: each becomes
    a packing function called on the weight in main plus the ``..._prepacked`` kernel. TVM's pass
    visits every PrimFunc and rejects bodies it cannot read (an opaque ``cumsum`` kernel whose root
    holds no block), so it is given main and the packing kernels only; the rest are added back."""
    import tvm
    from tvm import relax

    packed = _packed_funcs(mod)
    others = {gv: f for gv, f in mod.functions_items()
              if isinstance(f, tirx.PrimFunc) and gv.name_hint not in packed}
    sub = tvm.IRModule({gv: f for gv, f in mod.functions_items() if gv not in others}, attrs=mod.attrs)
    out = relax.transform.SplitLayoutRewritePreproc()(sub)
    for gv, func in others.items():
        out[gv] = func
    return relax.transform.DeadCodeElimination()(out)


def mark_weights_factory(target, options):
    """Schedule-slot stage: mark weight params for the Matmul rule (None when switched off or not a CPU)."""
    from tvm import relax

    from ..options import BuildOptions

    if not BuildOptions.coerce(options).prepack_weights or target.kind.name != "llvm":
        return None
    return relax.transform.AttachAttrLayoutFreeBuffers()


def mark_weights_fingerprint(target, options) -> str:
    from ..options import BuildOptions

    return f"prepack_weights={BuildOptions.coerce(options).prepack_weights}"


mark_weights_factory.fingerprint = mark_weights_fingerprint
