"""Build options are a typed, frozen input (codegen.options.BuildOptions): a dict still works, a
misspelt key is a one-line error, stages never write into them (reports come back in the
CompiledModel), and every option is part of a stage's cache identity."""
import dataclasses

import numpy as np
import pytest
import tvm

from canao.codegen import pipeline
from canao.codegen.options import BuildOptions
from canao.errors import CanaoError

TARGET = tvm.target.Target({"kind": "llvm"})


def test_dict_converts_and_unknown_key_is_a_one_line_error():
    assert BuildOptions.coerce(None) == BuildOptions()
    opts = BuildOptions.coerce({"yellow": "default", "quantize": "int8"})
    assert (opts.yellow, opts.quantize, opts.fusion) == ("default", "int8", True)
    assert BuildOptions.coerce(opts) is opts
    with pytest.raises(CanaoError) as err:
        BuildOptions.from_dict({"yelow": "default"})
    text = str(err.value)
    assert "\n" not in text and "'yelow'" in text and "yellow" in text and "tuning_db" in text
    with pytest.raises(CanaoError):
        BuildOptions.from_dict({"fusion_measurement": True})  # removed: it changed nothing
    with pytest.raises(CanaoError):
        BuildOptions(fast_math="no")  # a truthy string would have switched it on
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.yellow = "fuse"
    from pathlib import Path

    assert BuildOptions(tuning_db=Path("/tmp/db")).tuning_db == "/tmp/db"
    assert BuildOptions(quantize="").quantize is None


def test_finite_weights_settled_from_the_weights_unless_vouched():
    finite, infinite = [np.ones(3, "float32")], [np.array([1.0, np.inf], "float32")]
    assert BuildOptions().for_weights(finite).finite_weights is True
    assert BuildOptions().for_weights(infinite).finite_weights is False
    assert BuildOptions(finite_weights=False).for_weights(finite).finite_weights is False


def test_every_option_is_in_the_default_stage_identity():
    """A stage without a fingerprint of its own is keyed on every option (never a wrong cache hit)."""
    stage = lambda t, o: None  # noqa: E731
    base = pipeline.factory_fingerprint(stage, TARGET, BuildOptions())
    changed = {"fusion": False, "yellow": "fuse", "merge_parallel_matmul": True, "fuse_attention": False, "finite_weights": False,
               "quantize": "int8", "int8_schedules": False, "fast_math": False, "default_schedules": False,
               "tuning_db": "/tmp/db", "prepack_weights": False}
    assert set(changed) == set(BuildOptions.names())
    for name, value in changed.items():
        assert pipeline.factory_fingerprint(stage, TARGET, {name: value}) != base, name
    # a quantized build schedules its int8 kernels: the schedule pass it measures with differs too
    plain = pipeline.pass_identity(pipeline._slot_pass("schedule", TARGET, {}))
    assert pipeline.pass_identity(pipeline._slot_pass("schedule", TARGET, {"quantize": "int8"})) != plain
    assert pipeline.pass_identity(pipeline._slot_pass("schedule", TARGET, BuildOptions())) == plain


def test_build_returns_reports_and_leaves_the_options_alone(host_target):
    import torch

    from canao.codegen.build import build
    from canao.frontends import from_torch

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.norm = torch.nn.Linear(16, 16), torch.nn.LayerNorm(16)

        def forward(self, x):
            return self.norm(torch.nn.functional.gelu(self.fc(x)) * 2.0)

    torch.manual_seed(0)
    x = np.linspace(-1, 1, 8 * 16, dtype="float32").reshape(8, 16)
    model = from_torch(Tiny().eval(), {"x": x}, name="tiny")
    options = {"yellow": "default"}
    first = build(model, host_target, "canao", options=options)
    assert options == {"yellow": "default"}  # nothing written back
    assert "fusion" in first.reports and not any(k.startswith("_") for k in first.reports)
    assert first.options == BuildOptions(yellow="default", finite_weights=True)
    second = build(model, host_target, "canao", options=first.options)
    assert second.reports["fusion"]["rewrites"] == first.reports["fusion"]["rewrites"]  # not accumulated
    assert second.kernels == first.kernels
    from canao.commands.inspect_cmd import collect  # prepare + lower without build(): same reports

    seen = collect(model, host_target, pipelines=("canao",), options=options)
    assert seen["fusion"] == first.reports["fusion"] and seen["kernels"]["canao"] == first.kernels
