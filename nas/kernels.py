"""The compiled plan as data: one row per kernel (PrimFunc) the VM calls, with a structural signature.

Two SubTransformers that share a layer shape compile to identical kernels; the signature (TVM's
structural hash of the PrimFunc without its name) lets the latency dataset measure such a kernel once
and lets the predictor look its time up instead of guessing it."""
from typing import Dict, List

OP_KINDS = ["matmul", "add", "multiply", "subtract", "divide", "softmax", "layer_norm", "gelu", "tanh",
            "sigmoid", "erf", "reshape", "transpose", "split", "concatenate", "take", "cast", "pad",
            "strided_slice", "expand_dims", "sum", "mean", "max", "exp", "where", "conv1d", "power", "sqrt"]


def _param_buffers(func):
    """Shapes and total bytes of the kernel's argument buffers, read from the PrimFunc's parameters.

    In TVM 0.27 a PrimFunc parameter of buffer type carries ``shape`` and ``dtype`` itself; a scalar
    parameter (a plain variable, e.g. a symbolic size) has no shape and is skipped."""
    shapes, nbytes = [], 0
    for param in func.params:
        if not hasattr(param, "shape") or not hasattr(param, "dtype"):
            continue
        shape = [int(d) for d in param.shape]
        n = 1
        for d in shape:
            n *= d
        shapes.append(shape)
        dtype = param.dtype
        nbytes += n * max(1, (dtype.bits * dtype.lanes) // 8)
    return shapes, nbytes


def kernel_calls(mod, func_name: str = "main") -> Dict[str, int]:
    """How often ``func_name`` calls each PrimFunc per inference, counted in the Relax IR.

    Why through the IR: the earlier count searched the printed function for ``cls.NAME,``, which
    this TVM does not print, so every kernel counted 1 call: a 3-layer model's LayerNorm (called 6+
    times) counted once, and the fusion-aware predictor's kernel sum missed ~25% of the time on
    every architecture whose kernels were already in the cache. Counts ``call_tir`` and direct
    GlobalVar calls; a call inside control flow counts once (no Transformer here has any)."""
    import tvm
    from tvm import relax

    counts: Dict[str, int] = {}

    def visit(expr):
        if not isinstance(expr, relax.Call):
            return
        callee = None
        if isinstance(expr.op, tvm.ir.Op) and expr.op.name in ("relax.call_tir", "relax.call_tir_inplace"):
            callee = expr.args[0]
        elif isinstance(expr.op, tvm.ir.GlobalVar):
            callee = expr.op
        if isinstance(callee, tvm.ir.GlobalVar):
            counts[callee.name_hint] = counts.get(callee.name_hint, 0) + 1

    names = [gv.name_hint for gv in mod.get_global_vars()]
    if func_name in names:
        relax.analysis.post_order_visit(mod[func_name], visit)
    return counts


def kernel_table(compiled) -> Dict[str, dict]:
    """name -> {signature, ops, shapes, flops, bytes, kind, calls} for every PrimFunc of the compiled
    module (``calls``: per inference, from :func:`kernel_calls`; 0 for a PrimFunc main never calls)."""
    import tvm
    import tvm_ffi
    from tvm.s_tir.analysis import estimate_tir_flops

    kinds = {}
    for g in (compiled.reports.get("fusion") or {}).get("groups", []):
        kinds[g["name"]] = g.get("kind", "")
    calls = kernel_calls(compiled.mod)
    out = {}
    for gv, func in compiled.mod.functions.items():
        if not isinstance(func, tvm.tirx.PrimFunc):
            continue
        name = gv.name_hint
        bare = func.without_attr("global_symbol") if "global_symbol" in (func.attrs or {}) else func
        shapes, nbytes = _param_buffers(func)
        try:
            flops = float(estimate_tir_flops(tvm.IRModule({"main": bare})))
        except Exception:  # noqa: BLE001 - analysis gaps (opaque calls) just give no flop count
            flops = 0.0
        out[name] = {"name": name, "signature": f"{tvm_ffi.structural_hash(bare) & 0xFFFFFFFFFFFF:012x}",
                     "ops": op_tokens(name), "shapes": shapes, "flops": flops,
                     "bytes": nbytes, "kind": kinds.get(name, _kind_from_name(name)), "calls": calls.get(name, 0)}
    return out


def op_tokens(name: str) -> List[str]:
    """Operator kinds named in a fused kernel's name, longest names first (expand_dims is not exp)."""
    rest, found = name, []
    for k in sorted(OP_KINDS, key=len, reverse=True):
        if k in rest:
            found.append(k)
            rest = rest.replace(k, " ")
    return sorted(found)


def _kind_from_name(name: str) -> str:
    if "matmul" in name:
        return "Many-to-Many (GEMM)"
    if any(k in name for k in ("softmax", "layer_norm", "sum", "mean")):
        return "Many-to-Many (reduce)"
    return "other"
