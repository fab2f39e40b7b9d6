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

        return self.device == "cpu" and self.arch == platform.machine() and host_can_run(self.tvm_target())

    def to_json(self) -> dict:
        return {"name": self.name, "target": self.target_dict, "device": self.device,
                "cross_compiler": self.cross_compiler, "arch": self.arch}


_ISA_PREFIXES = ("avx", "sse", "fma", "f16c", "bmi", "amx", "vnni", "popcnt", "lzcnt", "neon", "dotprod",
                 "i8mm", "sve", "fp16", "bf16")


def host_can_run(target) -> bool:
    """Whether code built for the ``llvm`` ``target`` executes on this CPU: the same architecture,
    and every instruction-set extension its ``mcpu`` / ``mattr`` turn on is one this CPU has (both
    asked of LLVM, tuning flags ignored). Code for a wider ISA than the host's (e.g. AVX-512 on a
    Zen 3) would die with SIGILL, so such builds are checked on the device, not here."""
    import platform

    import tvm
    from tvm.target import codegen

    if target.kind.name != "llvm":
        return False
    triple = str(target.attrs.get("mtriple", "") or "")
    if triple and not triple.startswith(platform.machine().replace("arm64", "aarch64")):
        return False
    host = tvm.target.Target({"kind": "llvm", "mcpu": host_cpu_name()})

    def isa(t):
        return {f for f in codegen.llvm_get_cpu_features(t) if f.startswith(_ISA_PREFIXES)}

    return isa(target) <= isa(host)


def host_cpu_name() -> str:
    import tvm

    return tvm.get_global_func("target.llvm_get_system_cpu")()


def host_vector_features() -> List[str]:
    """The vector extensions LLVM will use on this CPU (read from /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next((line.split(":", 1)[1].split() for line in f
                              if line.startswith(("flags", "Features"))), []))
    except OSError:
        return []
    named = [("avx512f", "AVX-512"), ("avx512_vnni", "VNNI"), ("avx2", "AVX2"), ("asimd", "NEON"),
             ("asimddp", "dotprod")]
    found = [label for flag, label in named if flag in flags]
    if "AVX-512" in found and "AVX2" in found:
        found.remove("AVX2")
    return found


def _host(threads: Optional[int] = None) -> TargetSpec:
    import platform

    cores = threads or os.cpu_count() or 1
    features = ", ".join(host_vector_features())
    return TargetSpec("x86", f"this machine's CPU ({host_cpu_name()}, {cores} cores{', ' + features if features else ''})",
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
        stripped = text.strip()
        target_dict = json.loads(stripped) if stripped.startswith("{") else parse_target_string(stripped)
        target = tvm.target.Target(target_dict)
    except Exception as exc:
        raise CanaoError(f"unknown target '{text}'",
                         f"use one of {_known_names()} (`canao targets` lists them), or a TVM target such as "
                         "'llvm -mcpu=skylake-avx512' or '{\"kind\": \"cuda\", \"arch\": \"sm_86\"}'") from exc
    export = target.export()
    kind = export["kind"]
    device = {"llvm": "cpu", "c": "cpu"}.get(kind, kind)
    triple = str(export.get("mtriple", "") or (export.get("host") or {}).get("mtriple", ""))
    arch = "aarch64" if triple.startswith(("aarch64", "arm64")) else "x86_64"
    return TargetSpec(text, "plain TVM target", target_dict, device,
                      _aarch64_cc() if arch == "aarch64" else None, arch)


_LIST_KEYS = ("mattr", "keys", "libs")


def parse_target_string(text: str) -> dict:
    """'llvm -mcpu=skylake -mattr=+avx2,+fma' -> the dict TVM 0.27 wants (it no longer parses strings)."""
    tokens = text.split()
    if not tokens or tokens[0].startswith("-"):
        raise ValueError(f"no target kind in '{text}'")
    out: Dict[str, object] = {"kind": tokens[0]}
    for token in tokens[1:]:
        if not token.startswith("-"):
            raise ValueError(f"'{token}' is not a -key=value option")
        key, _, value = token.lstrip("-").partition("=")
        if not value:
            out[key] = True
        elif key in _LIST_KEYS:
            out[key] = value.split(",")
        elif value.isdigit():
            out[key] = int(value)
        else:
            out[key] = value
    return out


def _known_names() -> str:
    return ", ".join(spec.name + (f" ({'/'.join(spec.aliases[:1])})" if spec.aliases else "") for spec in _builtin())


def cross_compiler_installed(spec: TargetSpec) -> Optional[bool]:
    """True/False for a target that links with its own compiler, None when the host's is used."""
    if not spec.cross_compiler:
        return None
    return shutil.which(spec.cross_compiler) is not None or os.path.isfile(spec.cross_compiler)


def check_cross_compiler(spec: TargetSpec) -> None:
    """Fail early, before any work, when the C++ driver that links the library is missing."""
    if cross_compiler_installed(spec) is not False:
        return
    ndk = os.environ.get("ANDROID_NDK_HOME")
    if ndk and spec.cross_compiler.startswith(ndk):
        raise CanaoError(f"the Android NDK's clang++ for target {spec.name} is not at {spec.cross_compiler}",
                         "set ANDROID_NDK_HOME to an Android NDK (r21 or newer) folder, or unset it to link "
                         "with aarch64-linux-gnu-g++ (apt-get install g++-aarch64-linux-gnu)")
    if spec.arch == "aarch64":
        raise CanaoError(f"cross compiler {spec.cross_compiler} for target {spec.name} is not installed",
                         "apt-get install g++-aarch64-linux-gnu, or set ANDROID_NDK_HOME to an Android NDK")
    raise CanaoError(f"compiler {spec.cross_compiler} for target {spec.name} is not installed",
                     f"install {spec.cross_compiler} or put it on PATH")
