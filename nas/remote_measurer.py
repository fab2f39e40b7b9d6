"""``RemoteMeasurer``: the latency dataset and the search measured on a device over TVM RPC.

Each compiled SubTransformer is exported the way ``canao compile`` ships it (``CompiledModel.export``:
cross-linked for the target), uploaded with ``android_runner.remote.RemoteModel`` and timed on the
device with TVM's time_evaluator (the device's clock: the RPC round trip is not counted). One session
serves every architecture (a device serves one session at a time); a device that drops is
reconnected, through the tracker possibly another device, and the architecture re-measured.

Why no per-kernel times: the local measurer times kernels with the VM's instrument hook, a host
callback around every PrimFunc call; over RPC that callback would run on the host once per kernel
call and time the network, not the kernel. Rows measured here carry the compiled plan (kernel
signatures, calls) but no ``ms_per_call``."""
import tempfile
import time
from pathlib import Path
from typing import Optional

from canao.errors import CanaoError

from .measurer import Measurement, Measurer, trimmed


def check_device_args(rpc: Optional[str], tracker: Optional[str], key: Optional[str]) -> None:
    """Refuse a bad --rpc/--tracker/--key combination before anything compiles."""
    from canao.android_runner.emulator import parse_address

    if rpc and tracker:
        raise CanaoError("--rpc and --tracker both given", "pass one: --rpc HOST:PORT for one device, or "
                         "--tracker HOST:PORT --key KEY for a device farm")
    if not rpc and not tracker:
        raise CanaoError("no device given", "pass --rpc HOST:PORT, or --tracker HOST:PORT --key KEY")
    if tracker and not key:
        raise CanaoError("--tracker needs --key (the device type the phones registered with)",
                         f"pass --key, e.g. --key android; `canao device list --tracker {tracker}` shows keys")
    if key and not tracker:
        raise CanaoError("--key only matters with --tracker", "add --tracker HOST:PORT, or drop --key")
    parse_address(rpc or tracker, "--rpc" if rpc else "--tracker")


class RemoteMeasurer(Measurer):
    """A device over TVM RPC: ``warmup`` untimed runs, then ``repeat`` timed ones (HAT's trimmed
    mean). ``latency`` has LocalMeasurer's keys; the reference workload and the load average belong
    to this machine, not the device, so they are None, and ``device`` says which device timed it.
    ``tries``: sessions used for this architecture (more than 1 after a drop)."""
    name = "rpc"
    times_kernels = False

    def __init__(self, rpc: Optional[str] = None, tracker: Optional[str] = None, key: Optional[str] = None,
                 repeat: int = 30, warmup: int = 2, retries: int = 2, call_timeout: Optional[float] = None,
                 session_timeout: Optional[float] = None, queue_timeout: Optional[float] = None,
                 retry_wait: float = 2.0):
        from canao.android_runner import session as rpc_session

        check_device_args(rpc, tracker, key)
        if repeat < 1 or warmup < 0 or retries < 0:
            raise CanaoError(f"device measurement with --repeat {repeat}, warmup {warmup}, --retries {retries}",
                             "pass --repeat 1 or more and --retries 0 or more (warmup 0 or more)")
        self.rpc, self.tracker, self.key = rpc, tracker, key
        self.repeat, self.warmup, self.retries, self.retry_wait = repeat, warmup, retries, retry_wait
        self.call_timeout = call_timeout or rpc_session.DEFAULT_CALL_TIMEOUT
        self.session_timeout = session_timeout or rpc_session.DEFAULT_SESSION_TIMEOUT
        self.queue_timeout = queue_timeout or rpc_session.DEFAULT_QUEUE_TIMEOUT
        self._session = None
        self._opened = 0.0

    @property
    def where(self) -> str:
        """The device in use (HOST:PORT), else what was asked for."""
        if self._session is not None:
            return "device {}:{}".format(*self._session.address)
        return f"device {self.rpc}" if self.rpc else f"a '{self.key}' device of tracker {self.tracker}"

    def measure(self, compiled, imported, inputs, kernels: bool) -> Measurement:
        ordered = [inputs[s.name] for s in imported.inputs]
        with tempfile.TemporaryDirectory(prefix="canao-rpc-") as tmp:
            lib = Path(tmp) / "lib.so"
            compiled.export(str(lib))
            samples, tries = self._measure_with_retries(lib, compiled.params, ordered)
        latency = trimmed(samples)
        latency.update({"ratio_to_reference": None, "reference_ms": None, "load_avg_1m": None, "tries": tries,
                        "flagged": False, "device": "{}:{}".format(*self._session.address)})
        return Measurement(latency)

    def _measure_with_retries(self, lib: Path, params, ordered):
        """(samples_ms, tries): a dropped device is reconnected and the architecture re-measured."""
        from canao.android_runner.session import DeviceError

        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return self._time(lib, params, ordered), attempt
            except DeviceError as exc:
                device, last = self.where, exc.cause
                self._drop()
                if attempt < attempts:
                    time.sleep(self.retry_wait)
        raise CanaoError(f"measuring on {device} failed {attempts} time(s), last: {last}",
                         f"check the device ({_device_hint(self)}), or use --tracker HOST:PORT --key KEY to spread "
                         "over several devices; rerun the same command to resume (measured rows are kept)")

    def _time(self, lib: Path, params, ordered):
        from canao.android_runner.remote import RemoteModel

        session = self._live_session()
        model = RemoteModel(session, lib, params)
        if self.warmup:
            model.time(ordered, repeat=self.warmup)
        return model.time(ordered, repeat=self.repeat)

    def _live_session(self):
        """The measurer's session, reopened before the server's session timeout would cut it."""
        from canao.android_runner.session import DeviceError, connect

        if self._session is not None and time.monotonic() - self._opened > 0.8 * self.session_timeout:
            self._drop()
        if self._session is None:
            try:
                self._session = connect(rpc=self.rpc, tracker=self.tracker, key=self.key,
                                        session_timeout=self.session_timeout, call_timeout=self.call_timeout,
                                        queue_timeout=self.queue_timeout)
            except DeviceError:
                raise
            except CanaoError as exc:  # refused or unreachable: as retryable as a drop
                raise DeviceError(exc.cause, exc.fix) from exc
            self._opened = time.monotonic()
        return self._session

    def _drop(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def close(self) -> None:
        """End the session: the device serves one session at a time."""
        self._drop()


def _device_hint(measurer: RemoteMeasurer) -> str:
    if measurer.tracker:
        return f"canao device list --tracker {measurer.tracker}"
    return f"is the RPC server at {measurer.rpc} running? an emulated one: canao device start-emulated"
