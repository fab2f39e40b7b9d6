"""Named targets and their errors."""
import pytest

from canao.codegen import list_targets, resolve_target
from canao.errors import CanaoError


def test_named_targets_resolve_to_tvm_targets():
    names = {t.name for t in list_targets()}
    assert {"x86", "android-arm64", "cuda", "opencl-adreno", "opencl-mali"} <= names
    for spec in list_targets():
        assert spec.tvm_target().kind.name in ("llvm", "cuda", "opencl")
    assert resolve_target("arm64").name == "android-arm64"
    assert resolve_target("x86").runs_locally


def test_plain_tvm_target_json():
    spec = resolve_target('{"kind": "llvm", "mtriple": "aarch64-linux-gnu"}')
    assert spec.arch == "aarch64" and spec.device == "cpu" and not spec.runs_locally


def test_unknown_target_is_one_line_error():
    with pytest.raises(CanaoError) as err:
        resolve_target("no-such-board")
    assert "unknown target 'no-such-board'" in err.value.one_line() and "android-arm64" in err.value.fix
