"""Run and time a compiled model on a device over TVM RPC.

``run_remote`` and ``time_remote`` are what ``canao deploy``, ``canao benchmark --rpc`` and the NAS
latency measurements call. The library's ELF machine is checked against the device before upload,
and every remote step goes through the session's watchdog.
"""
import hashlib
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from canao.errors import CanaoError

from .elf import check_library_arch, normalize_arch
from .session import DeviceSession

DEFAULT_DEVICE_ARCH = "aarch64"  # phones and the emulated device; override for other boards


class RemoteModel:
    """A library uploaded and loaded on the device, its weights already in device memory.

    Why a class: uploading the weights once and then running or timing many times is what a
    benchmark and a latency dataset need; ``run_remote``/``time_remote`` are one-shot wrappers.
    """

    def __init__(self, session: DeviceSession, lib_path, params: Sequence[np.ndarray],
                 device_arch: Optional[str] = None):
        import tvm
        from tvm import relax

        self.session = session
        lib = load_library(session, lib_path, device_arch)
        remote = session.remote
        self.dev = remote.cpu()
        self.vm = session.call("create the VM", lambda: relax.VirtualMachine(lib, self.dev))
        self.params = session.call("upload weights",
                                   lambda: [tvm.runtime.tensor(np.ascontiguousarray(p), self.dev) for p in params])

    def _inputs(self, inputs: Sequence[np.ndarray]):
        import tvm

        return self.session.call("upload inputs",
                                 lambda: [tvm.runtime.tensor(np.ascontiguousarray(x), self.dev) for x in inputs])

    def run(self, inputs: Sequence[np.ndarray]):
        """Outputs as numpy: one array, or a list when the model returns a tuple."""
        args = self._inputs(inputs)

        def call():
            out = self.vm["main"](*args, *self.params)
            if hasattr(out, "numpy"):
                return _to_numpy(out)
            # several outputs: the tuple stays on the device as an opaque RPC object; the VM's
            # stateful interface reads it back field by field (nested tuples included)
            self.vm.set_input("main", *args, *self.params)
            self.vm.invoke_stateful("main")
            return _to_numpy(self.vm.get_outputs("main"))

        return self.session.call("run main", call)

    def time(self, inputs: Sequence[np.ndarray], repeat: int = 5, number: int = 1) -> List[float]:
        """Per-run milliseconds measured on the device by TVM's time_evaluator (``repeat`` samples,
        each the mean of ``number`` back-to-back calls; TVM runs one untimed call first)."""
        if repeat < 1 or number < 1:
            raise CanaoError("repeat and number must be at least 1", "pass positive integers")
        args = self._inputs(inputs)
        evaluator = self.vm.time_evaluator("main", self.dev, number=number, repeat=repeat, min_repeat_ms=0)
        result = self.session.call("time main", lambda: evaluator(*args, *self.params),
                                   timeout=self.session.call_timeout * max(1, repeat * number // 5 + 1))
        return [float(seconds) * 1e3 for seconds in result.results]


def load_library(session: DeviceSession, lib_path, device_arch: Optional[str] = None):
    """The library loaded on the device (a remote module): its ELF machine checked against the device
    before any upload, then uploaded and loaded once per session (``RemoteModel`` and ``canao profile
    --rpc``'s kernel library go through here)."""
    lib_path = Path(lib_path)
    arch = device_arch or normalize_arch(session.system_triple()) or DEFAULT_DEVICE_ARCH
    check_library_arch(lib_path, arch)  # before any upload
    return _load_once(session, lib_path)


def _load_once(session: DeviceSession, lib_path: Path):
    """Upload and load a library once per session.

    Why: uploading again to the same remote path rewrites a file the device has mapped; under
    qemu the next load of it crashed the session process (seen: segfault in dlsym).
    """
    digest = hashlib.sha1(lib_path.read_bytes()).hexdigest()[:16]
    if digest in session.modules:
        return session.modules[digest]
    name = f"canao-{digest}.so"
    remote = session.remote
    session.call("upload", lambda: remote.upload(str(lib_path), target=name))
    lib = session.call("load_module", lambda: remote.load_module(name))
    session.modules[digest] = lib
    return lib


def _to_numpy(out):
    if hasattr(out, "numpy"):
        return out.numpy()
    items = [_to_numpy(o) for o in out]
    return items[0] if len(items) == 1 else items


def run_remote(lib_path, params: List[np.ndarray], inputs: List[np.ndarray], session: DeviceSession,
               device_arch: Optional[str] = None) -> np.ndarray:
    """Upload ``lib_path`` to the device, run ``main(*inputs, *params)`` once, return the output."""
    return RemoteModel(session, lib_path, params, device_arch).run(inputs)


def time_remote(lib_path, params: List[np.ndarray], inputs: List[np.ndarray], session: DeviceSession,
                repeat: int = 5, number: int = 1, device_arch: Optional[str] = None) -> List[float]:
    """Upload and time ``main`` on the device: a list of per-run milliseconds (feed it to
    ``canao.bench.timing.Timings(samples_ms=...)`` for the benchmark's statistics)."""
    return RemoteModel(session, lib_path, params, device_arch).time(inputs, repeat=repeat, number=number)
