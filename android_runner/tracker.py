"""A TVM RPC tracker on this machine (the device farm's front desk) and a readable queue view."""
from typing import Optional

from .emulator import free_port
from .session import tracker_summary


class LocalTracker:
    """``tvm.rpc.tracker.Tracker`` on loopback as a context manager (tests, local device farms).

    Production farms run ``python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port 9190`` instead.
    """

    def __init__(self, host: str = "127.0.0.1", port: Optional[int] = None):
        self.host = host
        self.port = port or free_port(host)
        self._tracker = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "LocalTracker":
        from tvm.rpc.tracker import Tracker

        self._tracker = Tracker(self.host, self.port, self.port + 1, silent=True)
        self.port = self._tracker.port
        return self

    def stop(self) -> None:
        if self._tracker is not None:
            self._tracker.terminate()
            self._tracker = None

    def __enter__(self) -> "LocalTracker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def queue_table(tracker: str) -> str:
    """The tracker's queue as text: one line per key (free / pending) and per server."""
    summary = tracker_summary(tracker)
    lines = [f"tracker {tracker}"]
    queue = summary.get("queue_info", {})
    if not queue:
        lines.append("  no device registered")
    for key, info in sorted(queue.items()):
        lines.append(f"  key {key}: {info.get('free', 0)} free, {info.get('pending', 0)} pending request(s)")
    for item in summary.get("server_info", []):
        host, port = (item.get("addr") or [None, None])[:2]
        lines.append(f"  server {item.get('key', '?')} at {host}:{port}")
    return "\n".join(lines)
