"""TVM RPC sessions with a client-side watchdog: a frozen or dropped device never hangs the host.

Why a watchdog: TVM's ``session_timeout`` is enforced by the *server* for the whole session, so a
device that freezes (or a server that stops accepting) leaves the client blocked in a socket read
forever. Every remote step here runs in a worker thread (TVM releases the GIL in remote calls); if
it does not finish in time, the watchdog shuts down this session's TCP sockets, which makes the
blocked call return with an error, and the caller gets a one-line ``DeviceError``.
"""
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Set, Tuple

from canao.errors import CanaoError

from .emulator import parse_address

DEFAULT_SESSION_TIMEOUT = 600.0  # seconds the server keeps one session alive
DEFAULT_CALL_TIMEOUT = 300.0  # seconds one remote step (upload, load, run) may take under qemu
DEFAULT_CONNECT_TIMEOUT = 60.0
DEFAULT_QUEUE_TIMEOUT = 120.0  # seconds to wait for a free device in the tracker's queue

# Words in TVM's errors that mean the connection itself is gone (not a bad argument).
_DROP_MARKERS = ("kShutdown", "Connection reset", "connection reset", "Broken pipe", "RPCCode::kReturn",
                 "RPCSessionTimeoutError", "Socket", "connection closed")


class DeviceError(CanaoError):
    """The device dropped, froze or refused: the session is unusable (another device may work)."""


def _fix_for(address: Tuple[str, int]) -> str:
    return (f"check the device at {address[0]}:{address[1]} (an emulated one: canao device stop; "
            "canao device start-emulated), or use --tracker HOST:PORT --key KEY to retry on another device")


def _session_sockets(address: Tuple[str, int]) -> Set[Tuple[int, int]]:
    """(fd, local port) of this process's TCP connections to ``address``.

    The local port pins the connection: an fd number alone may be reused by another socket
    after TVM closes the session, and shutting that one down would break someone else's link.
    """
    import psutil

    ip = _ip(address[0])
    return {(conn.fd, conn.laddr.port) for conn in psutil.Process().net_connections("tcp")
            if conn.raddr and (conn.raddr.ip, conn.raddr.port) == (ip, address[1]) and conn.fd >= 0}


def _ip(host: str) -> str:
    try:
        return socket.gethostbyname(host)
    except OSError:
        return host


def _shutdown(address: Tuple[str, int], sockets: Set[Tuple[int, int]]) -> None:
    """Shut down (not close: TVM still owns the fd) our sockets that are still connected to
    ``address``, so that a blocked recv/send returns at once and the server ends the session."""
    for fd, _ in sockets & _session_sockets(address):
        try:
            sock = socket.socket(fileno=fd)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.detach()  # leave the fd itself to TVM
        except OSError:
            pass


def watchdog(fn: Callable, timeout: float, what: str, address: Tuple[str, int],
             sockets: Callable[[], Set[Tuple[int, int]]]):
    """Run ``fn()`` with a deadline; on expiry unblock it through its sockets and raise DeviceError."""
    box = {}

    def work():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=work, name=f"canao-rpc-{what}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        _shutdown(address, sockets())
        worker.join(10)
        raise DeviceError(f"device {address[0]}:{address[1]} did not answer ({what}) within {timeout:.0f} s",
                          _fix_for(address))
    if "error" in box:
        exc = box["error"]
        if isinstance(exc, CanaoError):
            raise exc
        text = str(exc).strip().splitlines()
        first = next((line for line in reversed(text) if line.strip()), repr(exc))[:300]
        if isinstance(exc, (OSError, ConnectionError)) or any(m in str(exc) for m in _DROP_MARKERS):
            raise DeviceError(f"device {address[0]}:{address[1]} dropped during {what}: {first}",
                              _fix_for(address)) from exc
        raise CanaoError(f"{what} failed on device {address[0]}:{address[1]}: {first}",
                         "check the artifact and its inputs (canao inspect OUT/)") from exc
    return box.get("value")


@dataclass
class DeviceSession:
    """An open RPC session: ``remote`` is TVM's RPCSession, every step goes through ``call``."""

    remote: object
    address: Tuple[str, int]
    key: str = ""
    call_timeout: float = DEFAULT_CALL_TIMEOUT
    sockets: Set[Tuple[int, int]] = field(default_factory=set)
    dead: bool = False
    modules: dict = field(default_factory=dict)  # library digest -> loaded remote module

    @property
    def device(self):
        return self.remote.cpu()

    def call(self, what: str, fn: Callable, timeout: Optional[float] = None):
        """``fn()`` under the watchdog; a drop marks the session dead."""
        if self.dead:
            raise DeviceError(f"device {self.address[0]}:{self.address[1]} already dropped", _fix_for(self.address))
        try:
            return watchdog(fn, timeout or self.call_timeout, what, self.address, lambda: self.sockets)
        except DeviceError:
            self.dead = True
            raise

    def system_triple(self) -> Optional[str]:
        """The device's LLVM triple when its TVM runtime has LLVM (the pip wheel does; the Android app
        does not), else None."""
        def query():
            try:
                return self.remote.get_function("target.llvm_get_system_triple")()
            except Exception as exc:  # missing on runtimes without LLVM
                if any(m in str(exc) for m in ("kShutdown", "Connection reset", "Broken pipe")):
                    raise
                return None

        return self.call("query the device", query, timeout=60)

    def close(self) -> None:
        """End the session now. Why not just drop the reference: any remote object still alive
        (a leaked tensor, a reference cycle) keeps TVM's connection open, and the device serves
        one session at a time, so everyone else would wait."""
        if not self.dead or self.remote is not None:
            _shutdown(self.address, self.sockets)
        self.remote = None
        self.modules = {}
        self.dead = True

    def __enter__(self) -> "DeviceSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DeviceSession({self.address[0]}:{self.address[1]}, key={self.key!r})"


def connect(rpc: Optional[str] = None, tracker: Optional[str] = None, key: Optional[str] = None,
            session_timeout: float = DEFAULT_SESSION_TIMEOUT, call_timeout: float = DEFAULT_CALL_TIMEOUT,
            connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
            queue_timeout: float = DEFAULT_QUEUE_TIMEOUT) -> DeviceSession:
    """Open a session to one device: directly (``rpc="HOST:PORT"``) or through a tracker
    (``tracker="HOST:PORT"``, ``key``), waiting at most ``queue_timeout`` for a free device."""
    if bool(rpc) == bool(tracker):
        raise CanaoError("give exactly one of --rpc HOST:PORT and --tracker HOST:PORT",
                         "e.g. --rpc 127.0.0.1:9090, or --tracker 127.0.0.1:9190 --key android")
    if tracker:
        if not key:
            raise CanaoError("--tracker needs --key (the device type the phones registered with)",
                             "pass --key, e.g. --key android; `canao device list --tracker HOST:PORT` shows keys")
        host, port, matchkey = request_device(parse_address(tracker, "--tracker"), key, queue_timeout)
        return open_session((host, port), matchkey, session_timeout, call_timeout, connect_timeout, key)
    return open_session(parse_address(rpc, "--rpc"), "", session_timeout, call_timeout, connect_timeout, "")


def open_session(address: Tuple[str, int], matchkey: str, session_timeout: float, call_timeout: float,
                 connect_timeout: float, key: str = "") -> DeviceSession:
    """``tvm.rpc.connect`` under the watchdog (a wedged server otherwise hangs the connect)."""
    from tvm import rpc

    before = _session_sockets(address)
    remote = watchdog(lambda: rpc.connect(address[0], address[1], key=matchkey, session_timeout=session_timeout),
                      connect_timeout, "connect", address, lambda: _session_sockets(address) - before)
    return DeviceSession(remote, address, key, call_timeout, _session_sockets(address) - before)


def request_device(tracker: Tuple[str, int], key: str, queue_timeout: float,
                   priority: int = 1) -> Tuple[str, int, str]:
    """Ask the tracker for a free device of ``key``: (host, port, matchkey), or a one-line error.

    Speaks TVM's tracker protocol on a plain socket with a timeout (TrackerSession.request waits
    forever when every device is busy or gone).
    """
    from tvm.rpc import base

    sock = _tracker_socket(tracker, queue_timeout)
    try:
        base.sendjson(sock, [base.TrackerCode.REQUEST, key, "", priority])
        value = base.recvjson(sock)
    except socket.timeout as exc:
        raise DeviceError(f"no device with key '{key}' became free at tracker {tracker[0]}:{tracker[1]} "
                          f"within {queue_timeout:.0f} s",
                          f"start or free a device (canao device list --tracker {tracker[0]}:{tracker[1]})") from exc
    except OSError as exc:
        raise DeviceError(f"tracker {tracker[0]}:{tracker[1]} dropped the request: {exc}",
                          "restart the tracker: python -m tvm.exec.rpc_tracker --host HOST --port PORT") from exc
    finally:
        sock.close()
    if value[0] != base.TrackerCode.SUCCESS:
        raise DeviceError(f"tracker {tracker[0]}:{tracker[1]} refused the request for '{key}': {value}",
                          "check the key with canao device list")
    host, port, matchkey = value[1]
    return host, int(port), matchkey


def _tracker_socket(tracker: Tuple[str, int], timeout: float) -> socket.socket:
    from tvm.rpc import base

    try:
        sock = socket.create_connection(tracker, timeout=min(timeout, 30))
        sock.settimeout(timeout)
        sock.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
        magic = struct.unpack("<i", base.recvall(sock, 4))[0]
    except OSError as exc:
        raise CanaoError(f"cannot reach the tracker at {tracker[0]}:{tracker[1]}: {exc}",
                         "start it: python -m tvm.exec.rpc_tracker --host 127.0.0.1 --port 9190") from exc
    if magic != base.RPC_TRACKER_MAGIC:
        sock.close()
        raise CanaoError(f"{tracker[0]}:{tracker[1]} is not a TVM RPC tracker", "check --tracker HOST:PORT")
    return sock


def tracker_summary(tracker: str, timeout: float = 10.0) -> dict:
    """The tracker's view: {"queue_info": {key: {free, pending}}, "server_info": [...]}."""
    from tvm.rpc import base

    address = parse_address(tracker, "--tracker")
    sock = _tracker_socket(address, timeout)
    try:
        base.sendjson(sock, [base.TrackerCode.SUMMARY])
        value = base.recvjson(sock)
    except OSError as exc:
        raise CanaoError(f"tracker {tracker} did not answer: {exc}", "restart the tracker") from exc
    finally:
        sock.close()
    if value[0] != base.TrackerCode.SUCCESS:
        raise CanaoError(f"tracker {tracker} answered {value}", "check that it is a TVM RPC tracker")
    return value[1]


def wait_for_devices(tracker: str, key: str, count: int, timeout: float = 60.0) -> dict:
    """Block until the tracker lists ``count`` free devices of ``key`` (devices register asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        summary = tracker_summary(tracker)
        free = summary.get("queue_info", {}).get(key, {}).get("free", 0)
        if free >= count:
            return summary
        if time.monotonic() > deadline:
            raise CanaoError(f"tracker {tracker} lists {free} free '{key}' device(s), expected {count}",
                             "check the device logs under ~/.cache/canao/devices/")
        time.sleep(0.5)
