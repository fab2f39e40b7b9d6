"""Model-level checks: the polynomial pass on real MiniLM weights (ONNX export path and torch.export
path) and on MobileBERT reduces the Relax op count and keeps the numbers of the stock build."""
import copy

import numpy as np
import pytest
import tvm
from tvm import relax

from canao.bench.suite import relative_error
from canao.fusion.polynomial import PolynomialSimplify, RewriteLog
from polynomial_check import relax_op_count, runtime_elementwise_flops

SEQ = 16


def _run_stock(imported, mod):
    from canao.codegen import resolve_target
    from canao.codegen.build import build

    variant = copy.copy(imported)
    variant.mod = mod
    compiled = build(variant, resolve_target("x86"), pipeline="stock")
    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    inputs = imported.example_inputs(0)
    args = [tvm.runtime.tensor(inputs[s.name]) for s in imported.inputs] + [tvm.runtime.tensor(p) for p in compiled.params]
    return vm["main"](*args).numpy()


def _check(imported, fewer_ops=True, build=True):
    log = RewriteLog()
    new = PolynomialSimplify(log=log)(imported.mod)
    assert log.records, "nothing was rewritten"
    lifted_old = relax.transform.LiftTransformParams()(imported.mod)
    lifted_new = relax.transform.LiftTransformParams()(new)
    if fewer_ops:  # the hot path has fewer ops
        assert relax_op_count(lifted_new) < relax_op_count(lifted_old)
    else:  # as many ops, cheaper ones
        assert relax_op_count(lifted_new) <= relax_op_count(lifted_old)
    assert runtime_elementwise_flops(new) < runtime_elementwise_flops(imported.mod)
    if build:
        reference, candidate = _run_stock(imported, imported.mod), _run_stock(imported, new)
        assert relative_error(reference, candidate) <= 1e-5
    return log


@pytest.fixture(scope="module")
def minilm_onnx(tmp_path_factory):
    import torch

    from canao.frontends import from_onnx
    from canao.frontends.loader import _LastHidden
    from canao.zoo import ZOO

    model = _LastHidden(ZOO["minilm-l6"].make())
    rng = np.random.default_rng(0)
    kwargs = {"input_ids": torch.tensor(rng.integers(1000, 30000, (1, SEQ))),
              "attention_mask": torch.ones(1, SEQ, dtype=torch.long),
              "token_type_ids": torch.zeros(1, SEQ, dtype=torch.long)}
    path = tmp_path_factory.mktemp("onnx") / "minilm.onnx"
    torch.onnx.export(model, (), str(path), kwargs=kwargs, dynamo=True, opset_version=18)
    return from_onnx(str(path), seq_len=SEQ)


def test_minilm_onnx_gelu_division_becomes_a_multiply(minilm_onnx):
    # the ONNX import keeps GELU's 0.5, 1 and sqrt(2) as weight params, so nothing folds to fewer ops:
    # the division by sqrt(2) becomes a multiply by a hoisted reciprocal
    log = _check(minilm_onnx, fewer_ops=False)
    gelu = [r for r in log.records if any("erf" in b for b in r.before)]
    assert len(gelu) == 6  # one per layer
    assert all("divide" in r.before[0] and "/" not in r.after[0].split("erf")[1].split(")")[0] for r in gelu)
    assert all(r.cost_after.flops < r.cost_before.flops for r in gelu)


def test_minilm_torch_mask_and_scale_chains():
    from canao.frontends import load_model

    # structure only: the same rewrites are built and compared on MobileBERT's attention below
    log = _check(load_model("minilm-l6", seq_len=SEQ), build=False)
    # the additive mask where(mask, 0, -inf) is built once and shared by every layer
    shared = [r for r in log.records if any("-inf" in a for a in r.after)]
    assert len(shared) >= 5 and all(r.cost_after.ops < r.cost_before.ops for r in shared)


def test_mobilebert_nonorm_chains():
    from canao.frontends import load_model

    log = _check(load_model("mobilebert", seq_len=SEQ))
    nonorm = [r for r in log.records if any("layernorm_weight" in b for b in r.before)]
    assert nonorm
    assert sum(r.cost_after.ops for r in nonorm) < sum(r.cost_before.ops for r in nonorm)
