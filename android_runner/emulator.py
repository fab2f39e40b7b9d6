"""Start and stop emulated aarch64 devices (TVM RPC servers under qemu-user) from the host.

``EmulatedDevice`` is what tests and scripts use (a context manager that always cleans up);
``canao device start-emulated`` uses the same class in detached mode and records the device in
a small registry so that ``canao device stop`` can end it later.
"""
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import List, Optional, Tuple

from canao.errors import CanaoError

from .provision import Emulator, cache_dir, require_emulator

DEVICE_MAIN = Path(__file__).with_name("device_main.py")
READY_PATTERNS = (re.compile(r"CANAO_DEVICE_READY (\d+)"), re.compile(r"bind to \S+:(\d+)"))


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def parse_address(text: str, what: str = "--rpc") -> Tuple[str, int]:
    """'HOST:PORT' -> (host, port), or a one-line error."""
    host, sep, port = (text or "").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise CanaoError(f"{what} '{text}' is not HOST:PORT", f"write it like {what} 127.0.0.1:9090")
    return host, int(port)


def registry_dir() -> Path:
    return cache_dir().parent / "devices"


class EmulatedDevice:
    """One emulated phone: ``qemu-aarch64-static -cpu cortex-a76`` running TVM's RPC server.

    ``port=None`` picks a free loopback port. With ``tracker=(host, port)`` and ``key``, the
    server registers itself with that tracker (the way phones join a device farm).
    """

    def __init__(self, port: Optional[int] = None, host: str = "127.0.0.1",
                 tracker: Optional[Tuple[str, int]] = None, key: str = "", stock: bool = False,
                 start_timeout: float = 240.0, log_path: Optional[str] = None,
                 emulator: Optional[Emulator] = None):
        if tracker and not key:
            raise CanaoError("a device registered with a tracker needs a key", "pass --key, e.g. --key android")
        self.emulator = emulator or require_emulator()
        self.host = host
        self._auto_port = port is None
        self.port = port or free_port(host)
        self.tracker = tracker
        self.key = key
        self.stock = stock
        self.start_timeout = start_timeout
        self.log_path = Path(log_path) if log_path else None
        self.proc: Optional[subprocess.Popen] = None
        self._log_file = None

    @property
    def address(self) -> Tuple[str, int]:
        return (self.host, self.port)

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    def command(self) -> List[str]:
        args = ["--host", self.host, "--port", str(self.port), "--port-end", str(self.port + 1)]
        if self.tracker:
            args += ["--tracker", f"{self.tracker[0]}:{self.tracker[1]}", "--key", self.key]
        if self.stock:
            args.append("--stock")
        return self.emulator.command("-u", str(DEVICE_MAIN), *args)

    def start(self, detach: bool = False) -> "EmulatedDevice":
        """Launch the server and wait until it listens (``import tvm`` under qemu takes 6-12 s)."""
        return self.launch().wait_ready(detach)

    def launch(self) -> "EmulatedDevice":
        """Start the process without waiting (boot several devices, or build, meanwhile)."""
        if self.log_path is None:
            registry_dir().mkdir(parents=True, exist_ok=True)
            self.log_path = registry_dir() / f"device-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "w")
        # Own session: stop() ends the server and every session process it forked, and a detached
        # device outlives the CLI that started it.
        self.proc = subprocess.Popen(self.command(), stdout=self._log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, cwd="/tmp")
        return self

    def wait_ready(self, detach: bool = False) -> "EmulatedDevice":
        """Block until the launched server listens; a failure stops it and raises a one-line error.

        A port picked automatically can be taken by someone else during the boot: then the device
        is relaunched on another free port (twice at most).
        """
        for attempt in range(3):
            try:
                self._wait_ready()
                break
            except CanaoError:
                lost_port = "cannot bind" in self.log_path.read_text(errors="replace")
                self.stop()
                if not (self._auto_port and lost_port and attempt < 2):
                    raise
                self.port, self.log_path = free_port(self.host), None
                self.launch()
            except BaseException:
                self.stop()
                raise
        if detach:
            self._register()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            for pattern in READY_PATTERNS:
                match = pattern.search(text)
                if match:
                    self.port = int(match.group(1))
                    return
            if self.proc.poll() is not None:
                raise CanaoError(f"the emulated device exited while starting (code {self.proc.returncode}): "
                                 f"{_tail(text)}", f"see {self.log_path}; rerun the device setup")
            time.sleep(0.2)
        raise CanaoError(f"the emulated device did not listen within {self.start_timeout:.0f} s",
                         f"see {self.log_path}; the machine may be overloaded")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole device (server and its session processes) — a fault injector for tests."""
        if self.proc is not None:
            _signal_group(self.proc.pid, sig)

    def stop(self, grace: float = 5.0) -> None:
        """End the server and its session processes; safe to call twice."""
        if self.proc is None:
            return
        _signal_group(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)  # also reaps a device that was already killed
        except subprocess.TimeoutExpired:
            pass
        _signal_group(self.proc.pid, signal.SIGKILL)  # session processes left in the group
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        _unregister(self.port)

    def _register(self) -> None:
        from canao.atomic import write_json

        write_json(registry_dir() / f"device-{self.port}.json",
                   {"pid": self.proc.pid, "host": self.host, "port": self.port, "key": self.key,
                    "tracker": f"{self.tracker[0]}:{self.tracker[1]}" if self.tracker else None,
                    "log": str(self.log_path), "started": time.strftime("%Y-%m-%d %H:%M:%S")})

    def __enter__(self) -> "EmulatedDevice":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmulatedDevice({self.host}:{self.port}, key={self.key!r}, pid={self.pid})"


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def _signal_group(pid: int, sig: int) -> bool:
    try:
        os.killpg(pid, sig)  # the device was started as its own session: pgid == pid
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _stop_group(pid: int, grace: float) -> None:
    """SIGTERM a detached device's process group, SIGKILL what is left after ``grace``."""
    if not _signal_group(pid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.1)
    _signal_group(pid, signal.SIGKILL)


def _unregister(port: int) -> None:
    try:
        (registry_dir() / f"device-{port}.json").unlink()
    except FileNotFoundError:
        pass


def registered_devices() -> List[dict]:
    """Devices started detached by ``canao device start-emulated`` that are still running."""
    found = []
    for path in sorted(registry_dir().glob("device-*.json")):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if _group_alive(info.get("pid")):
            found.append(info)
        else:
            path.unlink(missing_ok=True)  # stale: the device died or the machine restarted
    return found


def _group_alive(pid) -> bool:
    """The recorded device still runs (and the pid was not reused by some other program)."""
    if not pid:
        return False
    try:
        import psutil

        return DEVICE_MAIN.name in " ".join(psutil.Process(int(pid)).cmdline())
    except Exception:  # psutil.NoSuchProcess, AccessDenied
        return False


def stop_registered(port: Optional[int] = None) -> List[dict]:
    """Stop detached devices (one port, or all); returns what was stopped."""
    stopped = []
    for info in registered_devices():
        if port is None or info["port"] == port:
            _stop_group(int(info["pid"]), 5.0)
            _unregister(info["port"])
            stopped.append(info)
    return stopped
