"""The quantize rewrite rule by rule, on a small module (Linear -> GELU -> Linear): exact integer
numerics (incl. the u8 shift correction), weight scales folded into compile-time constants, the
dequantize fused into the GEMM kernel, deterministic weights, unsupported matmuls left fp32 with a
warning. Tolerances: the TVM result equals a NumPy model of the same integer arithmetic to 1e-4
relative (fp32 rounding in the epilogue); the whole module is within cosine 0.99 of fp32."""
import warnings

import numpy as np
import pytest
import torch

from canao.codegen.build import build, prepare
from canao.frontends import from_torch
from canao.fusion.quantize import QuantizationWarning, Quantize, QuantizeReport
from canao.fusion.quantize.rewrite import records_of

K, N, M = 64, 32, 8


class TwoLinear(torch.nn.Module):
    def __init__(self, n_out):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2 = torch.nn.Linear(K, N), torch.nn.Linear(N, n_out)

    def forward(self, x):
        return self.fc2(torch.nn.functional.gelu(self.fc1(x)))


class OneLinear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.fc = torch.nn.Linear(K, N)

    def forward(self, x):
        return self.fc(x)


def _x(seed=0):
    return {"x": np.random.default_rng(seed).standard_normal((M, K)).astype(np.float32)}


def _run(compiled, inputs):
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(inputs["x"]), *[tvm.runtime.tensor(p) for p in compiled.params]).numpy()


def _numpy_int8_linear(x, w, b):
    """The rewrite's arithmetic in NumPy: per-channel weights, per-token activations, signed product."""
    s_w = np.maximum(np.abs(w).max(0), 1e-12) / 127
    wq = np.clip(np.round(w / s_w), -127, 127)
    amax = np.maximum(np.abs(x).max(-1, keepdims=True), 1e-12)
    xq = np.clip(np.floor(x * (127 / amax) + 0.5), -127, 127)
    return (xq.astype(np.int64) @ wq.astype(np.int64)) * s_w * (amax / 127) + b


def test_quantize_int8_matches_the_integer_arithmetic(host_target):
    module = OneLinear().eval()
    model = from_torch(module, _x(), "one-linear")
    compiled = build(model, host_target, "canao", options={"quantize": "int8", "yellow": "default"})
    inputs = _x(3)
    w, b = module.fc.weight.detach().numpy().T, module.fc.bias.detach().numpy()
    expected = _numpy_int8_linear(inputs["x"].astype(np.float64), w.astype(np.float64), b)
    out = _run(compiled, inputs)
    # fold-u8-shift: TVM computes (xq + 128) @ Wq - 128 colsum(Wq); NumPy the signed product directly
    assert np.abs(out - expected).max() <= 1e-4 * np.abs(expected).max()
    assert [r["rule"] for r in compiled.reports["fusion"]["rewrites"] if r["rule"] in
            ("quantize-int8", "fold-weight-scale", "fold-u8-shift", "dequantize-into-epilogue")] == \
        ["quantize-int8", "fold-weight-scale", "fold-u8-shift", "dequantize-into-epilogue"]


def test_weight_scale_is_folded_into_compile_time_constants(host_target):
    model = from_torch(OneLinear().eval(), _x(), "one-linear")
    _, params, _ = prepare(model, host_target, "canao", {"quantize": "int8"})
    shapes = {(p.shape, str(p.dtype)) for p in params}
    assert ((N // 16, K // 4, 16, 4), "int8") in shapes  # the weight panel, ready for vpdpbusd
    assert not any(p.dtype == np.float32 and p.shape in ((K, N), (N, K)) for p in params)  # no fp32 weight ships


def test_dequantize_lands_in_the_gemm_kernel(host_target):
    """No kernel called by main returns int32: the accumulator never leaves the GEMM kernel."""
    from tvm import relax, tirx

    model = from_torch(TwoLinear(16).eval(), _x(), "two-linear")
    compiled = build(model, host_target, "canao", options={"quantize": "int8", "yellow": "default"})
    called = set()
    relax.analysis.post_order_visit(compiled.mod["main"].body, lambda e: called.add(e.op.name_hint) if isinstance(
        e, relax.Call) and hasattr(e.op, "name_hint") else None)
    gemm_kernels = 0
    for gv, func in compiled.mod.functions_items():
        if not isinstance(func, tirx.PrimFunc) or gv.name_hint not in called:
            continue
        script = func.script()
        if "canao_int8_matmul" in script:
            gemm_kernels += 1
            assert "float32" in script and "T.Cast(\"float32\"" in script  # dequantize inside
        assert "call_llvm_pure_intrin" not in script or "vpdpbusd" in script
    assert gemm_kernels == 2
    fused = [g for g in compiled.reports["fusion"]["groups"] if any("canao_int8_matmul" in op for op in g["ops"])]
    assert all(len(g["ops"]) > 1 for g in fused)  # every GEMM group carries its epilogue
    out = _run(compiled, _x(5))
    ref = model.reference(_x(5))
    cos = float((out * ref).sum() / np.linalg.norm(out) / np.linalg.norm(ref))
    assert cos >= 0.99


def test_weights_are_quantized_deterministically(host_target):
    model = from_torch(TwoLinear(16).eval(), _x(), "two-linear")
    a = prepare(model, host_target, "canao", {"quantize": "int8"})[1]
    b = prepare(model, host_target, "canao", {"quantize": "int8"})[1]
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_unsupported_matmul_stays_fp32_with_a_warning(host_target):
    model = from_torch(TwoLinear(10).eval(), _x(), "two-linear-10")  # N = 10: no 16-wide panel
    with pytest.warns(QuantizationWarning, match=r"stays fp32: K=32, N=10"):
        compiled = build(model, host_target, "canao", options={"quantize": "int8", "yellow": "default"})
    report = compiled.reports["quantize"]
    assert len(report["quantized"]) == 1 and len(report["skipped"]) == 1
    left = compiled.report.to_json()["left_fp32"]  # the build report (and so the manifest) lists it too
    assert len(left) == 1 and "K=32, N=10" in left[0]["why"] and "int8" in left[0]["why"]
    out, ref = _run(compiled, _x(7)), model.reference(_x(7))
    cos = float((out * ref).sum() / np.linalg.norm(out) / np.linalg.norm(ref))
    assert cos >= 0.99


def test_quantize_pass_composes_outside_the_build():
    model = from_torch(OneLinear().eval(), _x(), "one-linear")
    report, records = QuantizeReport("w4"), []
    with warnings.catch_warnings():
        warnings.simplefilter("error", QuantizationWarning)
        mod = Quantize("w4", report, records)(model.mod)  # K = 64 = one w4 group
    assert len(report.quantized) == 1 and [r.rule for r in records][0] == "quantize-w4"
    assert any(gv.name_hint.startswith("canao_w4_matmul") for gv in mod.get_global_vars())
    assert records_of(QuantizeReport("int8")) == []
