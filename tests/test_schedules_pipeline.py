"""Default schedules inside the canao build: MiniLM-L6 with zero tuning trials matches PyTorch,
every kernel is scheduled, and the stage steps aside when switched off."""
import numpy as np
import pytest
import tvm
from tvm import relax, tirx

from canao.codegen import resolve_target
from canao.codegen.build import build
from canao.codegen.pipeline import stages
from canao.codegen.schedules import is_scheduled


@pytest.fixture(scope="module")
def minilm():
    from canao.frontends import load_model

    return load_model("minilm-l6", seq_len=128, batch=1)


def _run(compiled, imported, inputs):
    dev = tvm.cpu()
    vm = relax.VirtualMachine(compiled.executable, dev)
    args = [tvm.runtime.tensor(inputs[s.name], dev) for s in imported.inputs]
    args += [tvm.runtime.tensor(p, dev) for p in compiled.params]
    out = vm["main"](*args)
    while not hasattr(out, "numpy"):
        out = out[0]
    return out.numpy()


def test_minilm_default_schedules_match_pytorch(minilm):
    # stock FuseOps groups, so this checks the schedules whatever state LP-Fusion is in
    compiled = build(minilm, resolve_target("x86"), "canao", options={"fusion": False})
    funcs = [f for _, f in compiled.mod.functions_items() if isinstance(f, tirx.PrimFunc)]
    assert funcs and all(is_scheduled(f) for f in funcs)
    text = "\n".join(f.script() for f in funcs)
    assert "T.erf(" not in text and "T.exp(" not in text  # GELU and softmax are vectorisable
    assert text.count("T.parallel") >= len(funcs) // 2
    for seed in (0, 1):
        inputs = minilm.example_inputs(seed)
        got, ref = _run(compiled, minilm, inputs), minilm.reference(inputs)
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() < 1e-4


def test_stage_can_be_switched_off():
    target = resolve_target("x86").tvm_target()
    on = [name for name, _ in stages("canao", target, {})]
    off = [name for name, _ in stages("canao", target, {"default_schedules": False})]
    assert "schedule" in on
    # other engineers may register schedule stages too; ours must not be among them when off
    from canao.codegen.schedules import stage_factory

    assert stage_factory(target, {"default_schedules": False}) is None
    assert stage_factory(target, {}) is not None
    assert stage_factory(tvm.target.Target({"kind": "cuda", "arch": "sm_80"}), {}) is None
    assert len(off) <= len(on)
