"""Every output is compiled, returned, checked and saved -- not just the first one.

The ONNX model here is the shape of a real third-party sentence-embedding export: its first
output merely echoes ``input_ids``, the second is the computation that matters. Before this was
fixed, the build check compared only the echo (error 0.0) and `canao run --save` wrote only it.
"""
import json

import numpy as np
import pytest

from conftest import run_cli
from onnx_models import DIM, SEQ, VOCAB, ort_outputs


@pytest.fixture(scope="module")
def echo_artifact(echo_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("art") / "echo"
    proc = run_cli("compile", echo_onnx, "--seq-len", SEQ, "--threads", 2, "--yellow", "default", "-o", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_import_declares_every_output(echo_onnx):
    from canao.frontends import from_onnx

    imported = from_onnx(str(echo_onnx), seq_len=SEQ)
    assert [(o.name, o.shape, o.dtype) for o in imported.outputs] == [
        ("echo_ids", (1, SEQ), "int64"), ("embeddings", (1, SEQ, DIM), "float32")]
    inputs = imported.example_inputs()
    ref = imported.reference_outputs(inputs)
    expected = ort_outputs(echo_onnx, inputs)
    assert list(ref) == ["echo_ids", "embeddings"]
    np.testing.assert_array_equal(ref["echo_ids"], inputs["input_ids"])
    np.testing.assert_allclose(ref["embeddings"], expected["embeddings"])
    np.testing.assert_array_equal(imported.reference(inputs), inputs["input_ids"])  # callable: first output


def test_compile_checks_every_output(echo_artifact):
    out, proc = echo_artifact
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["outputs"] == [{"name": "echo_ids", "shape": [1, SEQ], "dtype": "int64"},
                                   {"name": "embeddings", "shape": [1, SEQ, DIM], "dtype": "float32"}]
    check = manifest["check"]
    assert check["status"] == "passed" and check["reference"] == "onnxruntime"
    assert set(check["outputs"]) == {"echo_ids", "embeddings"}
    assert check["outputs"]["echo_ids"]["max_abs_err"] == 0.0  # integer output: must be equal
    emb = check["outputs"]["embeddings"]
    assert emb["status"] == "passed" and emb["max_abs_err"] < 1e-4 and emb["shape"] == [1, SEQ, DIM]
    assert "2 output(s)" in proc.stderr
    with np.load(out / "reference.npz") as ref:
        assert {"output:echo_ids", "output:embeddings", "output"} <= set(ref.files)
        np.testing.assert_array_equal(ref["output"], ref["output:echo_ids"])
        assert np.abs(ref["output:embeddings"]).max() > 0.1  # a real computation was recorded


def test_run_save_npz_writes_every_output_npy_the_first(echo_artifact, echo_onnx, tmp_path):
    out, _ = echo_artifact
    ids = np.random.default_rng(1).integers(0, VOCAB, size=(1, SEQ)).astype("int64")
    mask = np.ones((1, SEQ), dtype="int64")
    mask[0, -2:] = 0
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "mask.npy", mask)
    feed = ["--input", f"input_ids={tmp_path / 'ids.npy'}", "--input", f"attention_mask={tmp_path / 'mask.npy'}"]
    proc = run_cli("run", out, *feed, "--save", tmp_path / "all.npz")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "embeddings" in proc.stdout and "echo_ids" in proc.stdout
    expected = ort_outputs(echo_onnx, {"input_ids": ids, "attention_mask": mask})
    with np.load(tmp_path / "all.npz") as saved:
        assert saved.files == ["echo_ids", "embeddings"]
        np.testing.assert_array_equal(saved["echo_ids"], ids)
        np.testing.assert_allclose(saved["embeddings"], expected["embeddings"], rtol=1e-5, atol=1e-5)
        assert np.all(saved["embeddings"][0, -2:] == 0) and np.abs(saved["embeddings"][0, 0]).max() > 0.1
    proc = run_cli("run", out, *feed, "--save", tmp_path / "first.npy")
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "first.npy"), ids)


def test_miscompiled_second_output_fails_the_check(echo_onnx, host_target):
    """A wrong second output is caught although the first one is exact."""
    from canao.codegen.build import build
    from canao.commands.compile_cmd import _failure, check_outputs
    from canao.frontends import from_onnx
    from canao.runtime import LocalModel

    imported = from_onnx(str(echo_onnx), seq_len=SEQ)
    inputs = imported.example_inputs()
    compiled = build(imported, host_target, "stock")
    got = LocalModel.from_compiled(compiled, imported.inputs, imported.output_names).run_all(inputs)
    ref = imported.reference_outputs(inputs)
    assert check_outputs(got, ref, "onnxruntime", 1e-3)["status"] == "passed"
    broken = dict(got, embeddings=got["embeddings"] + 0.05)
    check = check_outputs(broken, ref, "onnxruntime", 1e-3)
    assert check["status"] == "failed"
    assert check["outputs"]["echo_ids"]["status"] == "passed"
    assert check["outputs"]["embeddings"]["status"] == "failed"
    assert check["outputs"]["embeddings"]["max_abs_err"] == pytest.approx(0.05, rel=1e-3)
    message = _failure(check, "onnxruntime").one_line()
    assert "'embeddings'" in message and "echo_ids" not in message and "(fix: " in message
    off_by_one = dict(got, echo_ids=got["echo_ids"] + 1)  # integer outputs are compared exactly
    assert check_outputs(off_by_one, ref, "onnxruntime", 1e-3)["outputs"]["echo_ids"]["status"] == "failed"
    missing = check_outputs({"echo_ids": got["echo_ids"]}, ref, "onnxruntime", 1e-3)
    assert missing["status"] == "failed" and "embeddings" in missing["why"]


def test_torch_nested_outputs_flatten_in_reference_order(host_target):
    """A PyTorch module returning a tuple with a nested dict: names, order and values agree
    between the compiled VM and PyTorch."""
    import torch

    from canao.codegen.build import build
    from canao.frontends import from_torch
    from canao.runtime import LocalModel

    class Nested(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)

        def forward(self, x):
            h = self.lin(x)
            return x * 2, {"hidden": h, "pair": (h.relu(), x.sum(-1))}

    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((2, 4)).astype("float32")
    imported = from_torch(Nested().eval(), {"x": x}, name="nested")
    assert [(o.name, o.shape) for o in imported.outputs] == [
        ("output_0", (2, 4)), ("output_1.hidden", (2, 3)), ("output_1.pair.0", (2, 3)), ("output_1.pair.1", (2,))]
    ref = imported.reference_outputs({"x": x})
    got = LocalModel.from_compiled(build(imported, host_target, "stock"), imported.inputs,
                                   imported.output_names).run_all({"x": x})
    assert list(got) == list(ref)
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["output_1.pair.1"], x.sum(-1), rtol=1e-5)


def test_flatten_vm_output_order():
    import tvm

    from canao.runtime import flatten_vm_output

    a, b, c = (np.full((2,), v, dtype="float32") for v in (1, 2, 3))
    nested = (tvm.runtime.tensor(a), (tvm.runtime.tensor(b), (tvm.runtime.tensor(c),)))
    flat = flatten_vm_output(nested)
    assert [float(f[0]) for f in flat] == [1.0, 2.0, 3.0]
