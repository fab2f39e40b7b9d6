"""Fan measurement jobs out over every device of one tracker key (NAS latency datasets use this).

One worker thread per device holds a session from the tracker and takes jobs from a shared queue,
so N phones measure N candidates at a time. A device that drops mid-job is replaced by asking the
tracker again and the job is retried; a job that still fails comes back with its error: results
are never silently lost, and nothing waits forever (every remote step has a watchdog).
"""
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

import numpy as np

from canao.errors import CanaoError

from .remote import RemoteModel
from .session import (DEFAULT_CALL_TIMEOUT, DEFAULT_QUEUE_TIMEOUT, DEFAULT_SESSION_TIMEOUT, DeviceError,
                      DeviceSession, connect, tracker_summary)


@dataclass
class MeasureJob:
    """One library to time on a device (and optionally to run once, keeping its output)."""

    name: str
    lib_path: str
    params: Sequence[np.ndarray]
    inputs: Sequence[np.ndarray]
    repeat: int = 5
    number: int = 1
    keep_output: bool = False


@dataclass
class MeasureResult:
    name: str
    samples_ms: List[float] = field(default_factory=list)
    output: Optional[object] = None
    device: Optional[str] = None  # HOST:PORT that produced the result
    attempts: int = 0
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict:
        return {"name": self.name, "samples_ms": self.samples_ms, "device": self.device,
                "attempts": self.attempts, "error": self.error}


def free_devices(tracker: str, key: str) -> int:
    """How many devices of ``key`` the tracker has free right now."""
    return int(tracker_summary(tracker).get("queue_info", {}).get(key, {}).get("free", 0))


def measure_on(session: DeviceSession, job: MeasureJob) -> MeasureResult:
    """Run one job in an open session (raises DeviceError when the device drops)."""
    model = RemoteModel(session, job.lib_path, job.params)
    output = model.run(job.inputs) if job.keep_output else None
    samples = model.time(job.inputs, repeat=job.repeat, number=job.number) if job.repeat else []
    return MeasureResult(job.name, samples, output, f"{session.address[0]}:{session.address[1]}")


def fan_out(jobs: Sequence[MeasureJob], tracker: str, key: str, workers: Optional[int] = None,
            retries: int = 2, session_timeout: float = DEFAULT_SESSION_TIMEOUT,
            call_timeout: float = DEFAULT_CALL_TIMEOUT, queue_timeout: float = DEFAULT_QUEUE_TIMEOUT,
            on_result: Optional[Callable[[MeasureResult], None]] = None) -> List[MeasureResult]:
    """Measure every job on the devices of ``key``; results come back in job order.

    ``workers`` defaults to the number of free devices. ``on_result`` is called (from a worker
    thread, under a lock) as each job finishes, so callers can write results atomically as they go.
    """
    jobs = list(jobs)
    if not jobs:
        return []
    workers = workers or free_devices(tracker, key)
    if workers < 1:
        raise CanaoError(f"the tracker {tracker} has no free device with key '{key}'",
                         f"start one (canao device start-emulated --tracker {tracker} --key {key}) "
                         f"or check `canao device list --tracker {tracker}`")
    todo: "queue.Queue[int]" = queue.Queue()
    for index in range(len(jobs)):
        todo.put(index)
    results: List[Optional[MeasureResult]] = [None] * len(jobs)
    attempts = [0] * len(jobs)
    lock = threading.Lock()
    state = {"alive": 0, "in_flight": 0}

    def finish(index: int, result: MeasureResult) -> None:
        result.attempts = attempts[index]
        with lock:
            results[index] = result
            if on_result:
                on_result(result)

    def next_job() -> Optional[int]:
        """A job index, or None when the queue is empty and no other worker may put one back."""
        while True:
            with lock:
                try:
                    index = todo.get_nowait()
                    state["in_flight"] += 1
                    return index
                except queue.Empty:
                    if state["in_flight"] == 0:
                        return None
            time.sleep(0.2)

    def done_with(index: Optional[int], put_back: bool = False) -> None:
        with lock:
            state["in_flight"] -= 1
            if put_back:
                todo.put(index)

    def fail_rest(error: str) -> None:
        while True:
            index = next_job()
            if index is None:
                return
            attempts[index] += 1
            finish(index, MeasureResult(jobs[index].name, error=error))
            done_with(index)

    def run_job(index: int, session: DeviceSession) -> Optional[DeviceSession]:
        """Measure job ``index``; returns the session to keep (None when the device dropped)."""
        job = jobs[index]
        attempts[index] += 1
        try:
            finish(index, measure_on(session, job))
            done_with(index)
        except DeviceError as exc:  # the device is gone: the job goes back, maybe to another device
            session.close()
            if attempts[index] > retries:
                finish(index, MeasureResult(job.name, error=exc.one_line()))
                done_with(index)
            else:
                done_with(index, put_back=True)
            return None
        except CanaoError as exc:  # the job itself is bad (wrong arch, bad input): no retry
            finish(index, MeasureResult(job.name, error=exc.one_line()))
            done_with(index)
        return session

    def worker() -> None:
        session = None
        try:
            while True:
                if session is None:
                    with lock:
                        if todo.empty() and state["in_flight"] == 0:
                            return
                    # get a device before taking a job, so waiting here never holds work back
                    try:
                        session = connect(tracker=tracker, key=key, session_timeout=session_timeout,
                                          call_timeout=call_timeout, queue_timeout=queue_timeout)
                    except CanaoError as exc:
                        with lock:
                            last = state["alive"] == 1
                        if last:  # nobody else can measure: report the rest, do not wait forever
                            fail_rest(exc.one_line())
                        return
                index = next_job()
                if index is None:
                    return
                try:
                    session = run_job(index, session)
                except BaseException as exc:  # a bug must not strand the other workers
                    finish(index, MeasureResult(jobs[index].name, error=f"{type(exc).__name__}: {exc}"))
                    done_with(index)
                    raise
        finally:
            with lock:
                state["alive"] -= 1
            if session is not None:
                session.close()

    threads = [threading.Thread(target=worker, name=f"canao-farm-{i}", daemon=True)
               for i in range(min(workers, len(jobs)))]
    started = time.monotonic()
    state["alive"] = len(threads)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    missing = [jobs[i].name for i, r in enumerate(results) if r is None]
    if missing:  # a worker died outside the guarded calls: report, never drop silently
        for i, r in enumerate(results):
            if r is None:
                results[i] = MeasureResult(jobs[i].name, attempts=attempts[i],
                                           error=f"not measured (worker stopped after {time.monotonic() - started:.0f} s)")
    return results  # type: ignore[return-value]
