"""Set up the emulated aarch64 "phone": qemu-user, the cross compiler, an aarch64 CPython and TVM.

Why this shape: no phone and no NDK exist on CI, but qemu-user runs an aarch64 CPython whose
``tvm.exec.rpc_server`` speaks the same RPC protocol as TVM's Android RPC app. Everything lands in
``${CANAO_CACHE:-~/.cache/canao}/aarch64/`` and a stamp file makes a second call instant.

Run it with ``python -m canao.android_runner.provision`` (CI does, before the tests).
"""
import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from canao.errors import CanaoError

QEMU = "qemu-aarch64-static"
CROSS_CXX = "aarch64-linux-gnu-g++"
APT_PACKAGES = ["qemu-user-static", "gcc-aarch64-linux-gnu", "g++-aarch64-linux-gnu"]
# Roots of the arm64 .debs; their arm64 dependencies are resolved by apt (28 packages on bookworm).
DEB_ROOTS = ["python3.11-minimal", "libpython3.11-stdlib", "libstdc++6", "libgcc-s1"]
PYTHON_VERSION = "3.11"
# The device runs the same TVM as the host: the pair below is the one that does not segfault.
WHEELS = [
    "apache-tvm==0.27.0.post1",
    "apache-tvm-ffi==0.1.14.post1",
    "numpy",
    "ml_dtypes",
    "psutil",
    "tornado",
    "cloudpickle",
    "typing_extensions>=4.13",
]
WHEEL_PLATFORMS = ["manylinux_2_28_aarch64", "manylinux2014_aarch64"]
CPU = "cortex-a76"  # "-cpu max" makes numpy warn about features spuriously
SPEC_VERSION = 2


def cache_dir() -> Path:
    base = os.environ.get("CANAO_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "canao")
    return Path(base) / "aarch64"


@dataclass(frozen=True)
class Emulator:
    """Where the pieces of a ready emulated device live."""

    home: Path

    @property
    def root(self) -> Path:  # the unpacked arm64 .debs, given to qemu as -L
        return self.home / "root"

    @property
    def site(self) -> Path:  # the unpacked aarch64 wheels (PYTHONPATH)
        return self.home / "site"

    @property
    def python(self) -> Path:  # a host-executable wrapper that runs the aarch64 python under qemu
        return self.home / "bin" / "python3"

    @property
    def qemu(self) -> str:
        return shutil.which(QEMU) or f"/usr/bin/{QEMU}"

    def command(self, *args: str) -> List[str]:
        """argv that runs the aarch64 python with ``args`` (through the wrapper)."""
        return [str(self.python), *args]


def _spec_hash() -> str:
    text = json.dumps([SPEC_VERSION, APT_PACKAGES, DEB_ROOTS, PYTHON_VERSION, WHEELS, WHEEL_PLATFORMS, CPU])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stamp(home: Path) -> Path:
    return home / "READY.json"


def tools_missing() -> List[str]:
    """Host tools (qemu, cross g++) that are not on PATH."""
    return [tool for tool in (QEMU, CROSS_CXX) if shutil.which(tool) is None]


def find_emulator(home: Optional[Path] = None) -> Optional[Emulator]:
    """The ready emulator, or None when setup has not run (or ran for another spec)."""
    home = Path(home) if home else cache_dir()
    try:
        stamp = json.loads(_stamp(home).read_text())
    except (OSError, ValueError):
        return None
    emu = Emulator(home)
    if stamp.get("spec") != _spec_hash() or tools_missing() or not emu.python.exists():
        return None
    return emu


def require_emulator() -> Emulator:
    emu = find_emulator()
    if emu is None:
        raise CanaoError("the emulated aarch64 device is not set up",
                         "run `python -m canao.android_runner.provision` (needs apt and pip access)")
    return emu


def _log(msg: str) -> None:
    print(f"[canao provision] {msg}", file=sys.stderr, flush=True)


def _run(cmd: List[str], **kwargs) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, check=True, **kwargs)
    except FileNotFoundError as exc:
        raise CanaoError(f"{cmd[0]} is not installed", "this setup needs Debian's apt and pip") from exc
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-1:] if exc.stderr else []
        raise CanaoError(f"`{' '.join(cmd[:4])} ...` failed (exit {exc.returncode}) {' '.join(tail)}",
                         "check network access to the Debian and PyPI registries, then rerun") from exc


@contextmanager
def _locked(home: Path):
    """One setup at a time (parallel test workers, two shells)."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def install_host_tools() -> None:
    """apt-get the qemu-user and cross-compiler packages when their tools are missing."""
    if not tools_missing():
        return
    if os.geteuid() != 0:
        raise CanaoError(f"{', '.join(tools_missing())} missing and this is not root",
                         f"sudo apt-get update && sudo apt-get install -y {' '.join(APT_PACKAGES)}")
    _log(f"apt-get install {' '.join(APT_PACKAGES)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", "update", "-qq"], env=env, stdout=subprocess.DEVNULL)
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES], env=env,
         stdout=subprocess.DEVNULL)


def _apt_options(home: Path) -> List[str]:
    """A private arm64 apt state: the host's sources and keys, without touching the host's dpkg."""
    state = home / "apt"
    (state / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (state / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    status = state / "status"
    if not status.exists():
        status.write_text("")
    return ["-o", "APT::Architecture=arm64", "-o", "APT::Architectures::=arm64",
            "-o", f"Dir::State={state}", "-o", f"Dir::State::Lists={state / 'lists'}",
            "-o", f"Dir::State::status={status}", "-o", f"Dir::Cache={state / 'cache'}",
            "-o", "APT::Sandbox::User=root", "-o", "Debug::NoLocking=1"]


def _deb_closure(home: Path) -> List[str]:
    """The arm64 packages the Python runtime needs at run time, resolved level by level.

    Why not ``apt-cache depends --recurse``: it follows install-time pre-dependencies and the deps
    of arch-independent packages (tzdata -> debconf -> perl, dpkg), doubling the root for nothing.
    """
    opts = _apt_options(home)
    flags = ["--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"]
    wanted, frontier = set(), list(DEB_ROOTS)
    while frontier:
        arches = _architectures(opts, frontier)
        frontier = [name for name in frontier if arches.get(name) == "arm64" and name not in wanted]
        wanted.update(frontier)
        if not frontier:
            break
        out = _run(["apt-cache", *opts, "depends", *flags, *frontier], capture_output=True).stdout.decode()
        deps = {m.group(1) for m in re.finditer(r"^\s+\|?Depends: ([^<\s]\S*)$", out, re.M)}
        frontier = sorted(deps - wanted)
    return sorted(wanted)


def _architectures(opts: List[str], names: List[str]) -> dict:
    if not names:
        return {}
    shown = _run(["apt-cache", *opts, "show", "--no-all-versions", *names], capture_output=True).stdout.decode()
    arch_of, current = {}, None
    for line in shown.splitlines():
        if line.startswith("Package: "):
            current = line.split(": ", 1)[1]
        elif line.startswith("Architecture: ") and current:
            arch_of[current] = line.split(": ", 1)[1]
    return arch_of


def fetch_root(home: Path) -> None:
    """Download the arm64 .debs and unpack them into ``root`` (qemu's -L sysroot)."""
    opts = _apt_options(home)
    _log("apt-get update (private arm64 index)")
    _run(["apt-get", *opts, "update", "-qq"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    packages = _deb_closure(home)
    debs = home / "debs"
    shutil.rmtree(debs, ignore_errors=True)  # only this spec's packages go into the root
    debs.mkdir()
    _log(f"apt-get download {len(packages)} arm64 packages")
    _run(["apt-get", *opts, "download", "-qq", *packages], cwd=debs, stdout=subprocess.DEVNULL,
         stderr=subprocess.PIPE)
    root = home / "root"
    tmp = home / "root.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(tmp)])
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)


def fetch_site(home: Path) -> None:
    """pip-download the aarch64 wheels and unzip them into ``site`` (no aarch64 pip needed)."""
    wheels = home / "wheels"
    wheels.mkdir(exist_ok=True)
    platforms = [arg for p in WHEEL_PLATFORMS for arg in ("--platform", p)]
    _log(f"pip download {len(WHEELS)} aarch64 wheels")
    _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
          "--python-version", PYTHON_VERSION, "--implementation", "cp", *platforms, "-d", str(wheels), *WHEELS],
         stderr=subprocess.PIPE)
    site = home / "site"
    tmp = home / "site.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    chosen = _newest_per_project(sorted(wheels.glob("*.whl")))
    for wheel in chosen:
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tmp)
    for path in tmp.rglob("*"):  # zip loses exec bits; shared objects and scripts want them
        if path.is_file() and (path.suffix == ".so" or ".so." in path.name):
            path.chmod(0o755)
    shutil.rmtree(site, ignore_errors=True)
    os.replace(tmp, site)


def _newest_per_project(wheels: List[Path]) -> List[Path]:
    """A re-run may leave an older wheel beside a newer one: keep one per project (newest mtime)."""
    chosen = {}
    for wheel in wheels:
        project = wheel.name.split("-")[0].lower().replace("_", "-")
        if project not in chosen or wheel.stat().st_mtime > chosen[project].stat().st_mtime:
            chosen[project] = wheel
    return sorted(chosen.values())


def write_wrapper(home: Path) -> Path:
    """A host-executable ``python3`` that runs the aarch64 interpreter under qemu.

    Why: ``tvm.exec.rpc_server`` re-executes ``sys.executable`` for its worker; without binfmt_misc
    the aarch64 binary gives "Exec format error", so sys.executable must point at this script.
    """
    emu = Emulator(home)
    emu.python.parent.mkdir(parents=True, exist_ok=True)
    qemu = shutil.which(QEMU) or f"/usr/bin/{QEMU}"
    script = f"""#!/bin/sh
# aarch64 CPython under qemu-user (written by canao.android_runner.provision)
export PYTHONPATH="{emu.site}${{CANAO_DEVICE_PYTHONPATH:+:$CANAO_DEVICE_PYTHONPATH}}"
export PYTHONNOUSERSITE=1
export PYTHONHOME="{emu.root}/usr"
export CANAO_DEVICE_PYTHON="$0"
exec "{qemu}" -cpu {CPU} -L "{emu.root}" "{emu.root}/usr/bin/python{PYTHON_VERSION}" "$@"
"""
    tmp = emu.python.with_suffix(".tmp")
    tmp.write_text(script)
    tmp.chmod(0o755)
    os.replace(tmp, emu.python)
    return emu.python


def _smoke(emu: Emulator) -> str:
    """Import numpy + TVM on the device; return the machine and TVM version it reports."""
    code = "import platform, numpy, tvm; print(platform.machine(), tvm.__version__, numpy.__version__)"
    out = subprocess.run(emu.command("-c", code), capture_output=True, text=True, timeout=180)
    if out.returncode != 0 or not out.stdout.startswith("aarch64"):
        raise CanaoError(f"the emulated python cannot import tvm: {(out.stderr or out.stdout).strip()[-300:]}",
                         f"delete {emu.home} and rerun the setup")
    return out.stdout.strip()


def ensure_emulator(force: bool = False, smoke: bool = True) -> Emulator:
    """Set up (or find) the emulated device. Idempotent; instant when already done."""
    home = cache_dir()
    if not force:
        found = find_emulator(home)
        if found:
            return found
    with _locked(home):
        if not force:  # another process may have finished while we waited for the lock
            found = find_emulator(home)
            if found:
                return found
        start = time.time()
        install_host_tools()
        fetch_root(home)
        fetch_site(home)
        write_wrapper(home)
        emu = Emulator(home)
        report = _smoke(emu) if smoke else "not checked"
        stamp = {"spec": _spec_hash(), "device": report, "seconds": round(time.time() - start, 1),
                 "root_packages": sorted(p.name for p in (home / "debs").glob("*.deb")),
                 "wheels": sorted(p.name for p in (home / "wheels").glob("*.whl"))}
        from canao.atomic import write_json

        write_json(_stamp(home), stamp)
        _log(f"ready in {stamp['seconds']} s: {report} ({home})")
        return emu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m canao.android_runner.provision",
                                     description="Set up the emulated aarch64 device (cached, idempotent).")
    parser.add_argument("--force", action="store_true", help="redo every step even when the stamp says ready")
    parser.add_argument("--print-path", action="store_true", help="print the device python wrapper's path")
    args = parser.parse_args(argv)
    try:
        emu = ensure_emulator(force=args.force)
    except CanaoError as exc:
        print(f"canao: error: {exc.one_line()}", file=sys.stderr)
        return 2
    print(emu.python if args.print_path else f"emulated aarch64 device ready: {emu.home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
