"""The quantize rewrite: fp32 matmuls against weights -> integer GEMMs with folded scales.

For ``y = x @ W`` where W depends only on weights (a parameter, a constant, or weight-only ops on
them, e.g. the transpose torch.export puts in front of a Linear), and x does not:

* weights, per output channel n: ``s_w[n] = max|W[:, n]| / Q``, ``Wq = round(W / s_w)`` in
  [-Q, Q] (Q = 127 for int8, 7 for w4), stored in the dot-product panel layout (see kernels.py);
* activations, per token m (dynamic): ``s_a[m] = max|x[m, :]| / 127``, ``xq = floor(x / s_a + 1/2)``,
  shifted to uint8 (``xq + 128``) because vpdpbusd multiplies u8 x s8;
* ``y = (float(acc) * s_w - corr) * s_a`` with ``corr[n] = 128 * sum_k Wq[k, n] * s_w[n]``:
  the shift's correction and the weight scale are weight-only polynomials, folded at compile time
  (LiftTransformParams computes them once), and the remaining multiply/subtract is element-wise,
  so LP-Fusion fuses it (and the bias add, GELU, ... after it) into the GEMM's epilogue.

A matmul it cannot quantize (a shape the panel layout does not tile, a non-fp32 dtype) stays fp32
and is named in a ``QuantizationWarning``; activation x activation matmuls (attention) are not
weight matmuls and stay fp32 by design.
"""
import warnings
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from canao.measure.report import LEFT_FP32, record
import tvm
from tvm import relax

from ..dataflow import DataflowView, op_name, shape_of
from ..rewrites.base import RewriteRecord
from . import kernels

QUANT_MODES = ("int8", "w4")
QMAX = {"int8": 127, "w4": 7}
W4_GROUP = 64  # rows of k sharing one 4-bit scale (per output channel)
SHIFT = 128  # int8 activations + 128 = uint8
_EPS = 1e-12  # an all-zero row or channel gets a tiny scale instead of a division by zero


class QuantizationWarning(UserWarning):
    """A weight matmul left in fp32 (the message names it and says why)."""


@dataclass
class QuantizeReport:
    mode: str
    quantized: List[dict] = field(default_factory=list)
    skipped: List[dict] = field(default_factory=list)

    def to_json(self):
        return {"mode": self.mode, "quantized": self.quantized, "skipped": self.skipped,
                "folded": ["weight scale * weight panel -> compile-time constant",
                           "u8 shift correction 128*colsum(Wq)*s_w -> compile-time constant",
                           "int32 -> fp32 dequantize (x s_w - corr, x s_a) -> GEMM epilogue"]}


def _const(value, dtype="float32"):
    return relax.const(np.asarray(value, dtype=dtype))


def why_not_quantizable(x_shape, w_shape, x_dtype, w_dtype, mode: str) -> Optional[str]:
    """None if ``x @ W`` can take the integer path, else the reason (goes into the warning)."""
    if x_dtype != "float32" or w_dtype != "float32":
        return f"dtype {x_dtype} x {w_dtype} (only float32 is quantized)"
    if x_shape is None or w_shape is None:
        return "dynamic shape"
    if len(w_shape) != 2 or len(x_shape) < 2 or x_shape[-1] != w_shape[0]:
        return f"shapes {x_shape} x {w_shape} (needs x[..., K] @ W[K, N])"
    k, n = w_shape
    k_multiple = W4_GROUP if mode == "w4" else kernels.KPACK
    if k % k_multiple or n % kernels.LANES:
        return f"K={k}, N={n}: the panel layout needs K % {k_multiple} == 0 and N % {kernels.LANES} == 0"
    return None


@relax.expr_functor.mutator
class _Quantizer(relax.PyExprMutator):
    def __init__(self, mod, view: DataflowView, mode: str, report: QuantizeReport):
        super().__init__(mod)
        self.view, self.mode, self.report = view, mode, report
        self._kernels = {}

    def visit_var_binding_(self, binding):
        value = binding.value
        if op_name(value) == "relax.matmul" and self._is_weight_matmul(value):
            x, w = value.args
            xs, ws = shape_of(x), shape_of(w)
            reason = why_not_quantizable(xs, ws, x.ty.dtype, w.ty.dtype, self.mode)
            name = f"{binding.var.name} (weight {self._weight_name(w)})"
            if reason is None:
                new = self.builder_.emit(self._quantized(self.visit_expr(x), self.visit_expr(w), xs, ws),
                                         name_hint=name)
                self.set_var_remap(binding.var, new)
                self.report.quantized.append({"var": name, "shape": [list(xs), list(ws)]})
                return None
            self.report.skipped.append({"var": name, "reason": reason})
            warnings.warn(f"quantize {self.mode}: matmul '{name}' stays fp32: {reason}", QuantizationWarning,
                          stacklevel=2)
            record(LEFT_FP32, name, f"quantize {self.mode}: {reason}", warn=False)  # the build report lists it
        return super().visit_var_binding_(binding)

    def _weight_name(self, w, depth: int = 0) -> str:
        """The parameter a weight expression comes from (through transposes and other weight-only ops)."""
        w = self.view.value(w)
        if isinstance(w, relax.Var):
            return w.name
        if isinstance(w, relax.Call) and depth < 8:
            for arg in w.args:
                if isinstance(arg, (relax.Var, relax.Call)) and self.view.is_weight_only(arg):
                    return self._weight_name(arg, depth + 1)
        return "constant"

    def _is_weight_matmul(self, call) -> bool:
        x, w = call.args
        return self.view.is_weight_only(w) and not self.view.is_weight_only(x)

    def _kernel(self, m, k, n):
        key = (self.mode, m, k, n)
        if key not in self._kernels:
            func = kernels.w4_matmul(m, k, n, W4_GROUP) if self.mode == "w4" else kernels.int8_matmul(m, k, n)
            func = func.with_attr("global_symbol", f"canao_{self.mode}_matmul_{m}x{k}x{n}")
            self._kernels[key] = self.builder_.add_func(func, f"canao_{self.mode}_matmul_{m}x{k}x{n}")
        return self._kernels[key]

    def _quantized(self, x, w, x_shape, w_shape):
        op, emit = relax.op, self.builder_.emit
        k, n = w_shape
        m = int(np.prod(x_shape[:-1]))
        x2 = emit(op.reshape(x, (m, k))) if len(x_shape) != 2 else x
        # activations: dynamic per-token scale, int8 shifted to uint8
        amax = emit(op.maximum(op.max(op.abs(x2), axis=[-1], keepdims=True), _const(_EPS)))
        # floor(v + 0.5), not round(): LLVM has no vector instruction for round-half-away (llvm.round
        # becomes a roundf call per element), floor vectorizes (vrndscaleps); ties differ only at exact .5
        xq = emit(op.floor(op.add(op.multiply(x2, op.divide(_const(127.0), amax)), _const(0.5))))
        xu8 = emit(op.astype(op.add(op.clip(xq, -127.0, 127.0), _const(SHIFT)),
                             "uint8"))
        # weights (weight-only: lifted and computed once at compile time)
        if self.mode == "w4":
            s_w, w8, weight_args = self._w4_weights(w, k, n)
        else:
            s_w = emit(op.divide(op.maximum(op.max(op.abs(w), axis=[0]), _const(_EPS)), _const(127.0)))
            w8 = emit(op.clip(op.round(op.divide(w, s_w)), -127.0, 127.0))
            weight_args = [emit(op.astype(self._panels(w8, k, n), "int8"))]
        corr = emit(op.multiply(op.multiply(op.sum(w8, axis=[0]), _const(float(SHIFT))), s_w))
        acc = emit(relax.call_tir(self._kernel(m, k, n), [xu8] + weight_args, relax.TensorType((m, n), "int32")))
        # dequantize: the epilogue LP-Fusion fuses into the GEMM kernel
        s_a = op.divide(amax, _const(127.0))
        y = op.multiply(op.subtract(op.multiply(op.astype(acc, "float32"), s_w), corr), s_a)
        return op.reshape(emit(y), tuple(x_shape[:-1]) + (n,)) if len(x_shape) != 2 else y

    def _panels(self, wq, k, n):
        """[K, N] -> [N/16, K/4, 16, 4]: the dot-product panel layout."""
        lanes, kp = kernels.LANES, kernels.KPACK
        return relax.op.permute_dims(relax.op.reshape(wq, (k // kp, kp, n // lanes, lanes)), [2, 0, 3, 1])

    def _w4_weights(self, w, k, n):
        """Group-wise 4-bit weights, re-expressed on a per-channel int8 grid for the int8 kernel.

        s_g[g, n] = max|W[g*G:(g+1)*G, n]| / 7, q4 = round(W / s_g) in [-7, 7]; the channel's int8
        scale s_w[n] = max_g s_g * 7 / 127 and ratio = s_g / s_w, so the kernel's int8 weight is
        round(q4 * ratio). Returns (s_w, the int8 weights as fp32 [K, N] for the shift correction,
        the kernel's weight arguments [packed nibbles, ratio])."""
        op, emit, g = relax.op, self.builder_.emit, W4_GROUP
        lanes, kp = kernels.LANES, kernels.KPACK
        grouped = emit(op.reshape(w, (k // g, g, n)))
        s_g = emit(op.divide(op.maximum(op.max(op.abs(grouped), axis=[1]), _const(_EPS)), _const(7.0)))  # [K/G, N]
        q4 = emit(op.clip(op.round(op.divide(grouped, op.expand_dims(s_g, 1))), -7.0, 7.0))
        s_w = emit(op.multiply(op.max(s_g, axis=[0]), _const(7.0 / 127.0)))
        ratio = emit(op.divide(s_g, s_w))
        w8 = emit(op.reshape(op.round(op.multiply(q4, op.expand_dims(ratio, 1))), (k, n)))
        # value + 8 in a nibble; panel ko = 2*ko2 + h goes to nibble h of byte [no, ko2, ni, ki]
        split = op.permute_dims(op.reshape(op.add(q4, _const(8.0)), (k // (2 * kp), 2, kp, n // lanes, lanes)),
                                [3, 0, 4, 2, 1])
        nibbles = emit(op.astype(op.sum(op.multiply(split, _const([1.0, 16.0])), axis=[-1]), "uint8"))
        return s_w, w8, [nibbles, ratio]


def quantize_module(mod: tvm.IRModule, mode: str = "int8", report: Optional[QuantizeReport] = None) -> tvm.IRModule:
    """Quantize the weight matmuls of every Relax function in ``mod`` (which is left untouched)."""
    if mode not in QUANT_MODES:
        from canao.errors import CanaoError

        raise CanaoError(f"unknown quantization mode '{mode}'", f"use one of {', '.join(QUANT_MODES)}")
    report = report if report is not None else QuantizeReport(mode)
    out = tvm.IRModule(dict(mod.functions.items()), attrs=mod.attrs)
    for gv, func in list(mod.functions.items()):
        if not isinstance(func, relax.Function) or func.attrs is not None and "Primitive" in func.attrs:
            continue
        mutator = _Quantizer(out, DataflowView(func), mode, report)
        new_func = mutator.visit_expr(func)
        out = mutator.builder_.get()
        out[gv] = new_func
    return out


def records_of(report: QuantizeReport) -> List[RewriteRecord]:
    """The rewrite records the fusion report shows for one quantize run (nothing if nothing changed)."""
    count = len(report.quantized)
    if not count:
        return []
    bits = "4-bit" if report.mode == "w4" else "int8"
    return [
        RewriteRecord(f"quantize-{report.mode}", "x @ W (fp32)",
                      f"dequant(u8(x/s_a + 128) @ {bits}(W/s_w))", count),
        RewriteRecord("fold-weight-scale", "round(W / s_w), s_w = max|W[:, n]| / Q",
                      "compile-time int weight panel + s_w", count),
        RewriteRecord("fold-u8-shift", "(xq + 128) @ Wq - 128 * colsum(Wq)",
                      "corr = 128 * colsum(Wq) * s_w, a compile-time constant", count),
        RewriteRecord("dequantize-into-epilogue", "float(acc) * s_a * s_w - corr * s_a",
                      "(float(acc) * s_w - corr) * s_a in the GEMM kernel's epilogue", count),
    ]


def Quantize(mode: str = "int8", report: Optional[QuantizeReport] = None,
             records: Optional[List[RewriteRecord]] = None) -> tvm.transform.Pass:
    """The quantize rewrite as a pass (run it on Relax operators, before legalization)."""
    report = report if report is not None else QuantizeReport(mode)

    @tvm.transform.module_pass(opt_level=0, name=f"CanaoQuantize.{mode}")
    def _pass(mod, _ctx):
        out = quantize_module(mod, mode, report)
        if report.quantized:  # Q, K and V read the same x: quantize it once
            out = tvm.transform.Sequential([relax.transform.EliminateCommonSubexpr(),
                                            relax.transform.CanonicalizeBindings()])(out)
        if records is not None:
            records.extend(records_of(report))
        return out

    return _pass
