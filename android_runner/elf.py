"""Which CPU a shared library is for, read from its ELF header, so a wrong build is refused early.

Why: uploading an x86 library to a phone fails only at ``load_module`` with a dlopen message that
names neither the library's nor the device's architecture.
"""
from pathlib import Path
from typing import Optional

from canao.errors import CanaoError

# e_machine values (System V ABI) for the architectures a CANAO build can target.
_MACHINES = {3: "x86", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv"}
_ALIASES = {"arm64": "aarch64", "aarch64": "aarch64", "armv8": "aarch64", "amd64": "x86_64", "x86_64": "x86_64",
            "x86-64": "x86_64", "i386": "x86", "i686": "x86", "armv7": "arm", "armv7a": "arm", "arm": "arm",
            "riscv64": "riscv"}


def normalize_arch(name: Optional[str]) -> Optional[str]:
    """'arm64', 'aarch64-linux-android', 'x86_64-pc-linux-gnu' ... -> 'aarch64' / 'x86_64' / ..."""
    if not name:
        return None
    head = str(name).lower().split("-")[0]
    return _ALIASES.get(head, head)


def elf_arch(path) -> str:
    """The architecture an ELF file is built for, or a one-line error if it is not ELF."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            header = f.read(20)
    except OSError as exc:
        raise CanaoError(f"cannot read {path}: {exc.strerror}", "pass the lib.so written by `canao compile`") from exc
    if len(header) < 20 or header[:4] != b"\x7fELF":
        raise CanaoError(f"{path} is not an ELF shared library", "pass the lib.so written by `canao compile`")
    order = "little" if header[5] == 1 else "big"
    machine = int.from_bytes(header[18:20], order)
    return _MACHINES.get(machine, f"elf-machine-{machine}")


def check_library_arch(path, device_arch: str) -> str:
    """Refuse ``path`` unless it is built for ``device_arch``; returns the library's architecture."""
    lib_arch = elf_arch(path)
    want = normalize_arch(device_arch)
    if lib_arch != want:
        raise CanaoError(f"{Path(path).name} is built for {lib_arch}, the device is {want}",
                         f"recompile for the device: canao compile MODEL --target "
                         f"{'android-arm64' if want == 'aarch64' else want} -o OUT/")
    return lib_arch
