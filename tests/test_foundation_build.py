"""Import -> build -> run on real MiniLM weights, checked against PyTorch, for both pipelines."""
import numpy as np
import pytest

from canao.codegen.build import build
from canao.runtime import LocalModel

from conftest import max_rel_err


@pytest.mark.parametrize("pipeline", ["stock", "canao"])
def test_minilm_matches_pytorch(minilm, minilm_text_inputs, host_target, pipeline):
    compiled = build(minilm, host_target, pipeline)
    out = LocalModel.from_compiled(compiled, minilm.inputs).run(minilm_text_inputs)
    ref = minilm.reference(minilm_text_inputs)
    assert out.shape == ref.shape == (1, 32, 384)
    assert max_rel_err(out, ref) < 1e-4
    names = [s.name for s in compiled.stages]
    assert names[0] == "import" and names[-1] == "lower"
    assert 0 < compiled.kernels < compiled.stages[0].ops.get("relax.matmul", 0) * 10


def test_import_counts_real_graph(minilm):
    from canao import analysis

    ops = analysis.op_counts(minilm.mod)
    # q,k,v,o,ffn1,ffn2 + 2 attention matmuls per layer; the pooler is dead code (last_hidden_state only)
    assert ops["relax.matmul"] == 6 * 6 + 6 * 2
    assert ops["relax.nn.layer_norm"] == 13
    flops = analysis.matmul_flops(minilm.mod)
    # 6 layers x (4*384*384 + 2*384*1536) MACs per token, plus attention, at 32 tokens
    per_token = 6 * (4 * 384 * 384 + 2 * 384 * 1536)
    assert 2 * per_token * 32 < flops < 2 * per_token * 32 * 1.2


def test_onnx_path_matches_pytorch(minilm, minilm_text_inputs, host_target, tmp_path):
    """MiniLM exported with the dynamo ONNX exporter imports through relax.frontend.onnx."""
    from canao.bench.engines import export_onnx
    from canao.frontends import from_onnx

    path = export_onnx(minilm, str(tmp_path / "minilm.onnx"))
    imported = from_onnx(path, seq_len=32)
    assert [s.name for s in imported.inputs] == [s.name for s in minilm.inputs]
    compiled = build(imported, host_target, "canao")
    out = LocalModel.from_compiled(compiled, imported.inputs).run(minilm_text_inputs)
    assert max_rel_err(out, minilm.reference(minilm_text_inputs)) < 1e-4


def test_lifted_weights_are_precomputed(minilm, host_target):
    """The canao pipeline runs weight-only work (transposes) at compile time, not per inference."""
    stock = build(minilm, host_target, "stock")
    canao = build(minilm, host_target, "canao")
    assert canao.stages[1].name in ("lift-params", "lp-rewrite")
    lifted = next(s for s in canao.stages if s.name == "lift-params")
    assert sum(lifted.ops.values()) < sum(stock.stages[0].ops.values())
    assert canao.kernels <= stock.kernels
