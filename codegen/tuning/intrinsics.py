"""Register only the tensor intrinsics a target can use before MetaSchedule needs them.

``import tvm.s_tir.tensor_intrin`` registers every intrinsic of every backend; the CUDA ones
alone take 30 s of CPU here (90 s of wall time on a loaded 2-core machine), paid by each tuning
process. For a CPU target only its own ISA's intrinsics matter, so the package is entered
without running its __init__ and just that submodule is imported. Other submodules still
import on demand (the package keeps its __path__).
"""
import importlib
import importlib.util
import sys

_PACKAGE = "tvm.s_tir.tensor_intrin"
_CPU_MODULES = {"x86_64": ("x86",), "aarch64": ("arm_cpu",)}


def load_tensor_intrinsics(target_spec) -> None:
    if _PACKAGE in sys.modules:
        return
    modules = _CPU_MODULES.get(target_spec.arch) if target_spec.device == "cpu" else None
    if modules is None:
        importlib.import_module(_PACKAGE)
        return
    spec = importlib.util.find_spec(_PACKAGE)
    package = importlib.util.module_from_spec(spec)
    sys.modules[_PACKAGE] = package
    try:
        for name in modules:
            importlib.import_module(f"{_PACKAGE}.{name}")
    except BaseException:
        del sys.modules[_PACKAGE]
        raise
