"""Weight prepacking (codegen/schedules/prepack.py): the build ships GEMM weights in the Matmul
rule's [N/nr, K, nr] panels, computes what the unpacked build computes on real MiniLM weights, and
no packing work is left in the inference path."""
import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import relax as R

from canao.codegen.build import build
from canao.codegen.schedules import cpu_traits
from canao.codegen.schedules.apply import default_schedule_pass
from canao.codegen.schedules.prepack import has_packing
from canao.codegen.targets import resolve_target
from canao.runtime import LocalModel

TARGET = tvm.target.Target({"kind": "llvm", "num-cores": 2})


@pytest.fixture(scope="module")
def both_builds(minilm):
    spec = resolve_target("x86")
    return {packed: build(minilm, spec, options={"prepack_weights": packed}) for packed in (True, False)}


def test_packed_and_unpacked_builds_agree_on_real_weights(minilm, minilm_text_inputs, both_builds):
    outs = {packed: LocalModel.from_compiled(c, minilm.inputs).run_list(minilm_text_inputs)
            for packed, c in both_builds.items()}
    assert len(outs[True]) == len(outs[False]) >= 1
    for a, b in zip(outs[True], outs[False]):  # every output, not only the first
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


MINILM_LINEARS = 6 * 6  # all-MiniLM-L6-v2: 6 layers x (Q, K, V, attention output, FFN up, FFN down)


def test_every_linear_weight_ships_in_panels(both_builds):
    packed, plain = both_builds[True], both_builds[False]
    nr = cpu_traits(resolve_target("x86").tvm_target()).matmul_tile(32)[1]
    panels = [p for p in packed.params if p.ndim == 3 and p.shape[2] == nr]
    assert len(panels) >= MINILM_LINEARS
    assert not any(p.ndim == 3 and p.shape[2] == nr for p in plain.params)
    # each panel holds the numbers of one [K, N] weight of the unpacked build, re-tiled; the
    # weights the packed build still ships flat are the ones no GEMM streams (embeddings, ...)
    plain_2d = {p.tobytes() for p in plain.params if p.ndim == 2}
    for panel in panels:
        n_tiles, k, width = panel.shape
        assert panel.transpose(1, 0, 2).reshape(k, n_tiles * width).tobytes() in plain_2d
    packed_2d = [p for p in packed.params if p.ndim == 2]
    assert len(packed_2d) + len(panels) == sum(1 for p in plain.params if p.ndim == 2)


def test_the_shipped_module_repacks_nothing_per_call(both_builds):
    """The packing blocks were lifted out: no kernel of the built module still holds one."""
    assert not has_packing(both_builds[True].mod)


def _gemm_module(with_num_input: bool):
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((16, 64), "float32"))
    w = relax.Var("w", R.Tensor((64, 128), "float32"))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.matmul(x, w))
        bb.emit_func_output(out)
    mod = relax.transform.LegalizeOps()(bb.get())
    if with_num_input:
        mod["main"] = mod["main"].with_attr("num_input", 1)
    return relax.transform.AttachAttrLayoutFreeBuffers()(mod)


def test_only_marked_weights_are_packed():
    """A weight (a param past num_input) gets a packing block; the same GEMM whose B is an input
    (e.g. a fusion candidate measured on its own) keeps its layout."""
    with TARGET:
        marked = default_schedule_pass()(_gemm_module(with_num_input=True))
        unmarked = default_schedule_pass()(_gemm_module(with_num_input=False))
    assert has_packing(marked)
    assert not has_packing(unmarked)


def test_a_failed_lift_rebuilds_unpacked_and_says_so(minilm, minilm_text_inputs, both_builds, monkeypatch):
    """Packing is an optimisation: when TVM cannot split or lift it, the build is redone with the
    weights as imported, and the build report names what was lost."""
    import canao.codegen.schedules.prepack as prepack

    def refuse(mod):
        raise RuntimeError("synthetic split failure")

    monkeypatch.setattr(prepack, "split_packing", refuse)
    with pytest.warns(Warning, match="weight-prepack"):
        compiled = build(minilm, resolve_target("x86"))
    assert compiled.report.of("weight-prepack")
    assert compiled.options.prepack_weights is False
    nr = cpu_traits(resolve_target("x86").tvm_target()).matmul_tile(32)[1]
    assert not any(p.ndim == 3 and p.shape[2] == nr for p in compiled.params)
    got = LocalModel.from_compiled(compiled, minilm.inputs).run_list(minilm_text_inputs)
    ref = LocalModel.from_compiled(both_builds[False], minilm.inputs).run_list(minilm_text_inputs)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
