"""Counting what a Relax module does: operator calls by name, kernels launched, FLOPs."""
from collections import Counter
from typing import Dict

_KERNEL_CALLS = ("relax.call_tir", "relax.call_tir_inplace", "relax.call_dps_packed")


def _calls(func):
    from tvm import relax

    found = []

    def visit(expr):
        if isinstance(expr, relax.Call):
            found.append(expr)

    relax.analysis.post_order_visit(func.body, visit)
    return found


def op_counts(mod, func_name: str = "main") -> Dict[str, int]:
    """Relax operator calls in ``func_name``, by operator name (kernel calls counted as one op)."""
    import tvm

    counts = Counter()
    for call in _calls(mod[func_name]):
        if isinstance(call.op, tvm.ir.Op):
            counts[call.op.name] += 1
    return dict(counts.most_common())


def kernel_count(mod, func_name: str = "main") -> int:
    """Kernel launches per inference: PrimFunc (or packed) calls made by ``func_name``.

    Counts ``call_tir`` calls and direct calls to PrimFuncs (what ``call_tir`` lowers into), plus
    calls of Relax sub-functions that fusion has not yet turned into PrimFuncs (each becomes one).
    """
    import tvm
    from tvm import relax, tirx

    n = 0
    for call in _calls(mod[func_name]):
        if isinstance(call.op, tvm.ir.Op) and call.op.name in _KERNEL_CALLS:
            n += 1
        elif isinstance(call.op, tvm.ir.GlobalVar) and any(gv.same_as(call.op) for gv in mod.get_global_vars()):
            callee = mod[call.op]
            if isinstance(callee, (tirx.PrimFunc, relax.Function)):
                n += 1
    return n


def primfunc_count(mod) -> int:
    from tvm import tirx

    return sum(1 for _, f in mod.functions.items() if isinstance(f, tirx.PrimFunc))




def matmul_flops(mod, func_name: str = "main") -> int:
    """FLOPs of the matmuls in the graph (2*M*N*K each): what GFLOP/s is quoted against.

    Element-wise work is left out on purpose: it is bandwidth-bound and small next to the GEMMs.
    """
    import tvm
    from tvm import relax

    total = 0
    for call in _calls(mod[func_name]):
        if isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.matmul":
            a, b = (arg.ty for arg in call.args[:2])
            out = call.ty
            if not all(isinstance(s, relax.TensorType) and s.shape is not None for s in (a, b, out)):
                continue
            try:
                k = int(a.shape[-1])
                out_elems = 1
                for d in out.shape:
                    out_elems *= int(d)
            except TypeError:  # symbolic shapes
                continue
            total += 2 * out_elems * k
    return total


def intermediate_bytes(mod, func_name: str = "main") -> int:
    """Bytes of tensors materialized per inference by kernels, the function's own outputs excluded.

    Run on a module after fusion (call_tir still visible). Reshapes are rewritten into views first,
    as the VM lowering does, so they do not count.
    """
    import tvm
    from tvm import relax

    mod = relax.transform.RewriteDataflowReshape()(mod)
    func = mod[func_name]
    returned = set()

    def collect(expr):
        if isinstance(expr, relax.Var):
            returned.add(expr)
        elif isinstance(expr, relax.Tuple):
            for f in expr.fields:
                collect(f)

    collect(func.body.body)
    total = 0
    for block in func.body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) and value.op.name in _KERNEL_CALLS \
                    and binding.var not in returned:
                total += _tensor_bytes(binding.var.ty)
    return total


def _tensor_bytes(ty) -> int:
    import tvm
    from tvm import relax

    if isinstance(ty, relax.TensorType) and ty.shape is not None:
        n = 1
        for d in ty.shape:
            n *= int(d)
        return n * tvm.DataType(ty.dtype).bits // 8
    if isinstance(ty, relax.TupleType):
        return sum(_tensor_bytes(f) for f in ty.fields)
    return 0
