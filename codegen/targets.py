"""Named compilation targets with sensible defaults (``canao targets`` lists them).

TVM 0.27 wants targets as dicts; the host CPU's name comes from LLVM so that AVX-512 (or NEON)
is used without the user spelling it out.
"""
import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from canao.errors import CanaoError


@dataclass(frozen=True)
class TargetSpec:
    name: str
    description: str
    target_dict: object  # dict for TVM's Target(), or a plain target string
    device: str  # "cpu" | "cuda" | "opencl"
    cross_compiler: Optional[str] = None  # the C++ driver used by export_library, None = host default
    arch: str = "x86_64"  # ELF machine of the exported library
    aliases: tuple = field(default=())

    def tvm_target(self):
        import tvm

        return tvm.target.Target(self.target_dict)

    @property
    def runs_locally(self) -> bool:
        """Whether this machine can execute the build (host CPU only; GPUs need their runtime)."""
        import platform

        return self.device == "cpu" and self.arch == platform.machine()

    def to_json(self) -> dict:
        return {"name": self.name, "target": self.target_dict, "device": self.device,
                "cross_compiler": self.cross_compiler, "arch": self.arch}


def host_cpu_name() -> str:
    import tvm

    return tvm.get_global_func("target.llvm_get_system_cpu")()


def _host(threads: Optional[int] = None) -> TargetSpec:
    import platform

    cores = threads or os.cpu_count() or 1
    return TargetSpec("x86", f"this machine's CPU ({host_cpu_name()}, {cores} cores)",
                      {"kind": "llvm", "mcpu": host_cpu_name(), "num-cores": cores}, "cpu",
                      arch=platform.machine(), aliases=("llvm", "cpu", "local", "host"))


def _aarch64_cc() -> str:
    """The Android NDK's clang when ANDROID_NDK_HOME is set, else Debian's cross g++."""
    ndk = os.environ.get("ANDROID_NDK_HOME")
    if ndk:
        clang = os.path.join(ndk, "toolchains/llvm/prebuilt/linux-x86_64/bin/aarch64-linux-android28-clang++")
        return clang
    return "aarch64-linux-gnu-g++"


_ARM64_HOST = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod", "+fullfp16"]}


def _builtin() -> List[TargetSpec]:
    return [
        _host(),
        TargetSpec("android-arm64", "phone CPU, Cortex-A76 class (aarch64, NEON + dotprod + fp16)",
                   dict(_ARM64_HOST, mcpu="cortex-a76"), "cpu", _aarch64_cc(), "aarch64", aliases=("arm64", "aarch64")),
        TargetSpec("cuda", "NVIDIA GPU (sm_80 by default), host part x86",
                   {"kind": "cuda", "arch": "sm_80", "host": {"kind": "llvm"}}, "cuda"),
        TargetSpec("opencl-adreno", "mobile GPU, Qualcomm Adreno (OpenCL), host part aarch64",
                   {"kind": "opencl", "device": "adreno", "host": _ARM64_HOST}, "opencl", _aarch64_cc(), "aarch64"),
        TargetSpec("opencl-mali", "mobile GPU, ARM Mali (OpenCL), host part aarch64",
                   {"kind": "opencl", "device": "mali", "host": _ARM64_HOST}, "opencl", _aarch64_cc(), "aarch64"),
    ]


def list_targets() -> List[TargetSpec]:
    return _builtin()


def resolve_target(name: str, threads: Optional[int] = None) -> TargetSpec:
    """A named target, an alias, or a plain TVM target (JSON dict or string) -> TargetSpec."""
    if name in (None, "", "x86", "llvm", "cpu", "local", "host"):
        return _host(threads)
    for spec in _builtin():
        if name == spec.name or name in spec.aliases:
            return spec
    return _plain(name)


def _plain(text: str) -> TargetSpec:
    import tvm

    try:
        target_dict = json.loads(text) if text.strip().startswith("{") else None
        target = tvm.target.Target(target_dict if target_dict is not None else text)
    except Exception as exc:
        known = ", ".join(s.name for s in _builtin())
        raise CanaoError(f"unknown target '{text}'", f"use one of {known}, or a TVM target dict as JSON") from exc
    export = target.export()
    kind = export["kind"]
    device = {"llvm": "cpu", "c": "cpu"}.get(kind, kind)
    triple = str(export.get("mtriple", "") or (export.get("host") or {}).get("mtriple", ""))
    arch = "aarch64" if triple.startswith(("aarch64", "arm64")) else "x86_64"
    return TargetSpec(text, "plain TVM target", target_dict if target_dict is not None else text, device,
                      _aarch64_cc() if arch == "aarch64" else None, arch)


def check_cross_compiler(spec: TargetSpec) -> None:
    """Fail early, before any work, when the C++ driver that links the library is missing."""
    if spec.cross_compiler and shutil.which(spec.cross_compiler) is None and not os.path.exists(spec.cross_compiler):
        raise CanaoError(f"cross compiler {spec.cross_compiler} for target {spec.name} is not installed",
                         "apt-get install g++-aarch64-linux-gnu (or set ANDROID_NDK_HOME to an Android NDK)")
