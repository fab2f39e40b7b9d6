"""Quantized builds of MiniLM-L6 with its real weights vs the fp32 output, the int8 kernels' VNNI code,
the aarch64 cross-export, and the CLI (w4 through it). Tolerances: int8 cosine >= 0.99 to the fp32
(PyTorch) output (measured 0.996 at seq 32); w4 (4-bit round-to-nearest weights) cosine >= 0.9
(measured 0.935; a PyTorch simulation of the same 4-bit weights alone gives 0.939, so the loss is
the 4-bit grid, not the kernels)."""
import json

import numpy as np
import pytest

from canao.codegen.build import build

from conftest import run_cli


def _cos(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _run(compiled, model, inputs):
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    args = [tvm.runtime.tensor(inputs[s.name]) for s in model.inputs]
    return vm["main"](*args, *[tvm.runtime.tensor(p) for p in compiled.params]).numpy()


@pytest.fixture(scope="module")
def int8_minilm(minilm, host_target):
    return build(minilm, host_target, "canao", options={"quantize": "int8", "yellow": "default"})


def test_int8_minilm_matches_fp32(minilm, minilm_text_inputs, int8_minilm):
    ref = minilm.reference(minilm_text_inputs)
    out = _run(int8_minilm, minilm, minilm_text_inputs)
    assert _cos(out, ref) >= 0.99
    report = int8_minilm.reports["quantize"]
    assert len(report["quantized"]) == 36 and report["skipped"] == []  # 6 weight matmuls x 6 layers
    fp32_weight_mb = sum(p.nbytes for p in minilm.params) / 1e6
    assert sum(p.nbytes for p in int8_minilm.params) / 1e6 < 0.7 * fp32_weight_mb


def test_int8_kernels_use_vnni(int8_minilm, host_target, tmp_path):
    from canao.codegen.schedules.int8 import int8_intrinsic

    if int8_intrinsic(host_target.tvm_target()) is None:
        pytest.skip("the x86 target has no AVX-512 VNNI")
    lib = tmp_path / "int8.so"
    int8_minilm.export(str(lib))
    import subprocess

    asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True).stdout
    assert asm.count("vpdpbusd") >= 16


def test_int8_aarch64_export_is_an_aarch64_elf(tmp_path):
    import torch

    from canao.codegen import resolve_target
    from canao.codegen.targets import check_cross_compiler
    from canao.errors import CanaoError
    from canao.frontends import from_torch

    spec = resolve_target("android-arm64")
    try:
        check_cross_compiler(spec)
    except CanaoError as exc:
        pytest.skip(exc.one_line())
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.GELU()).eval()
    x = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = module

        def forward(self, x):
            return self.m(x)

    compiled = build(from_torch(Wrap().eval(), {"x": x}, "tiny"), spec, "canao",
                     options={"quantize": "int8", "yellow": "default"})
    assert compiled.reports["quantize"]["quantized"]
    compiled.export(str(tmp_path / "lib.so"))
    header = (tmp_path / "lib.so").read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183  # EM_AARCH64


def test_cli_compile_quantize_w4_is_close_and_smaller(tmp_path, int8_minilm):
    """`canao compile --quantize w4` on real MiniLM weights: checked by cosine, 4-bit weights ship."""
    out = tmp_path / "art"
    proc = run_cli("compile", "minilm-l6", "--seq-len", "32", "--quantize", "w4", "--yellow", "default",
                   "--threads", "2", "-o", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    check = json.loads((out / "manifest.json").read_text())["check"]
    assert check["quantize"] == "w4" and check["status"] == "passed" and check["cosine"] >= 0.9
    with np.load(out / "params.npz") as npz:
        w4_bytes = sum(npz[k].nbytes for k in npz.files if npz[k].dtype in (np.int8, np.uint8))
    int8_bytes = sum(p.nbytes for p in int8_minilm.params if p.dtype in (np.int8, np.uint8))
    assert w4_bytes <= 0.5 * int8_bytes
