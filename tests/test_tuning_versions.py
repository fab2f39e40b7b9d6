"""Fusion versions chosen by measurement: two hand-made fusions of matmul + bias + relu (one
fused kernel vs one kernel per op), tuned with the same budget, checked against each other and
against numpy, timed side by side."""
import json

import numpy as np
import pytest


def _tiny_relax():
    import tvm
    from tvm.script import relax as R

    @tvm.script.ir_module
    class MatmulBiasRelu:
        @R.function
        def main(x: R.Tensor((64, 64), "float32"), w: R.Tensor((64, 64), "float32"),
                 b: R.Tensor((64,), "float32")):
            with R.dataflow():
                y = R.matmul(x, w)
                z = R.add(y, b)
                r = R.nn.relu(z)
                R.output(r)
            return r

    return MatmulBiasRelu


def _versions():
    """("one-kernel", FuseOps+FuseTIR) and ("kernel-per-op", legalized, nothing fused)."""
    import tvm
    from tvm import relax

    mod = _tiny_relax()
    legalize = [relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern()]
    fused = tvm.transform.Sequential(legalize + [relax.transform.FuseOps(), relax.transform.FuseTIR()])(mod)
    unfused = tvm.transform.Sequential(legalize)(mod)
    return [("one-kernel", fused), ("kernel-per-op", unfused)]


def test_fastest_fusion_version_is_kept_and_reported(tmp_path, host_target):
    from canao.codegen.tuning import choose_fusion_version
    from canao.codegen.tuning.versions import REPORT, example_args

    versions = _versions()
    choice = choose_fusion_version(versions, host_target, tmp_path, trials=3, rounds=3, progress=False)
    by_name = {v.name: v for v in choice.versions}
    assert set(by_name) == {"one-kernel", "kernel-per-op"}
    assert by_name["one-kernel"].kernels == 1 and by_name["kernel-per-op"].kernels == 3
    assert all(v.trials >= 3 for v in choice.versions)  # the same budget for each
    assert all(v.agrees for v in choice.versions) and by_name["kernel-per-op"].max_abs_diff < 1e-5
    fastest = min(choice.versions, key=lambda v: v.min_ms)
    assert choice.chosen == fastest.name
    assert choice.speedup_vs_runner_up == pytest.approx(
        max(v.min_ms for v in choice.versions) / fastest.min_ms)
    saved = json.loads((tmp_path / REPORT).read_text())
    assert saved["chosen"] == choice.chosen and len(saved["versions"]) == 2
    assert choice.chosen in choice.summary()

    # the chosen version still computes relu(x @ w + b)
    from canao.codegen.tuning.apply import compile_fused
    from canao.codegen.tuning.versions import _run

    x, w, b = example_args(versions[0][1])
    chosen_mod = dict(versions)[choice.chosen]
    out = _run(compile_fused(chosen_mod, host_target, options={"tuning_db": str(tmp_path / choice.chosen)}),
               [x, w, b])[0]
    np.testing.assert_allclose(out, np.maximum(x @ w + b, 0), rtol=1e-5, atol=1e-5)


def test_versions_that_disagree_are_not_chosen(tmp_path, host_target):
    import tvm
    from tvm import relax
    from tvm.script import relax as R

    from canao.codegen.tuning import choose_fusion_version

    @tvm.script.ir_module
    class NoRelu:  # a wrong "fusion": drops the relu
        @R.function
        def main(x: R.Tensor((64, 64), "float32"), w: R.Tensor((64, 64), "float32"),
                 b: R.Tensor((64,), "float32")):
            with R.dataflow():
                z = R.add(R.matmul(x, w), b)
                R.output(z)
            return z

    wrong = relax.transform.LegalizeOps()(NoRelu)
    choice = choose_fusion_version([_versions()[0], ("wrong", wrong)], host_target, tmp_path, trials=0,
                                   rounds=1, progress=False)
    assert choice.chosen == "one-kernel"
    assert not {v.name: v for v in choice.versions}["wrong"].agrees


def test_duplicate_names_and_remote_targets_are_refused(tmp_path, host_target):
    from canao.codegen import resolve_target
    from canao.codegen.tuning import choose_fusion_version
    from canao.errors import CanaoError

    versions = _versions()
    with pytest.raises(CanaoError, match="repeat"):
        choose_fusion_version([versions[0], versions[0]], host_target, tmp_path, trials=0)
    with pytest.raises(CanaoError) as err:
        choose_fusion_version(versions, resolve_target("arm64"), tmp_path, trials=0)
    assert "measure=" in err.value.fix
