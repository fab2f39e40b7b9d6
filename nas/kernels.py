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


def kernel_table(compiled) -> Dict[str, dict]:
    """name -> {signature, ops, shapes, flops, bytes, kind} for every PrimFunc of the compiled module."""
    import tvm
    import tvm_ffi
    from tvm.s_tir.analysis import estimate_tir_flops

    kinds = {}
    for g in (compiled.reports.get("fusion") or {}).get("groups", []):
        kinds[g["name"]] = g.get("kind", "")
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
                     "bytes": nbytes, "kind": kinds.get(name, _kind_from_name(name))}
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
