"""``canao deploy``: upload an artifact to a device, run it, check it against the host reference.

With a tracker, a device that drops is replaced by another one of the same key (``retries``);
with a direct ``--rpc`` address the drop is reported as a one-line error.
"""
from typing import List, Optional

import numpy as np

from canao.errors import CanaoError

from .artifact import load_artifact
from .remote import RemoteModel
from .session import (DEFAULT_CALL_TIMEOUT, DEFAULT_QUEUE_TIMEOUT, DEFAULT_SESSION_TIMEOUT, DeviceError,
                      connect)


def timing_stats(samples_ms: List[float]) -> dict:
    """The foundation benchmark's statistics when it is installed, else min/median/max."""
    try:
        from canao.bench.timing import Timings
    except ImportError:
        a = np.asarray(samples_ms, dtype=float)
        return {"runs": int(a.size), "min_ms": float(a.min()), "p50_ms": float(np.median(a)),
                "max_ms": float(a.max())} if a.size else {}
    return Timings(samples_ms=list(samples_ms)).stats()


def compare(output: np.ndarray, reference: np.ndarray, atol: float) -> dict:
    """Max abs error vs the reference; the tolerance scales with max|reference| (like the benchmark)."""
    output, reference = np.asarray(output), np.asarray(reference)
    if output.shape != reference.shape:
        return {"match": False, "why": f"output shape {output.shape} != reference {reference.shape}"}
    err = float(np.max(np.abs(output.astype(np.float64) - reference.astype(np.float64)))) if output.size else 0.0
    tol = atol * max(1.0, float(np.max(np.abs(reference)))) if reference.size else atol
    return {"match": bool(err <= tol), "max_abs_err": err, "tolerance": tol}


def _flatten(output) -> List[np.ndarray]:
    """The device's outputs (an array, or nested lists of them) depth-first, left to right."""
    if isinstance(output, (list, tuple)):
        return [a for item in output for a in _flatten(item)]
    return [np.asarray(output)]


def compare_outputs(output, reference_outputs: dict, atol: float) -> dict:
    """``compare`` for every output, matched by position to the reference's named outputs.

    One output: exactly ``compare``'s dict. Several: ``match`` when all match, the worst error,
    and ``outputs`` {name: compare dict}."""
    flat = _flatten(output)
    names = list(reference_outputs)
    if len(flat) != len(names):
        return {"match": False, "why": f"the device returned {len(flat)} output(s), the reference has {len(names)}"}
    per = {name: compare(out, reference_outputs[name], atol) for name, out in zip(names, flat)}
    if len(per) == 1:
        return next(iter(per.values()))
    worst = max(per.values(), key=lambda c: (not c["match"], c.get("max_abs_err", float("inf"))))
    check = {"match": all(c["match"] for c in per.values()), "outputs": per}
    if "why" in worst:
        check["why"] = f"output '{next(n for n, c in per.items() if c is worst)}': {worst['why']}"
    else:
        check.update(max_abs_err=worst["max_abs_err"], tolerance=worst["tolerance"])
    return check


def deploy(folder, rpc: Optional[str] = None, tracker: Optional[str] = None, key: Optional[str] = None,
           repeat: int = 0, atol: float = 1e-3, retries: int = 2,
           session_timeout: float = DEFAULT_SESSION_TIMEOUT, call_timeout: float = DEFAULT_CALL_TIMEOUT,
           queue_timeout: float = DEFAULT_QUEUE_TIMEOUT, device_arch: Optional[str] = None,
           progress=None) -> dict:
    """Run the artifact in ``folder`` on a device; returns a JSON-able report (never hangs)."""
    artifact = load_artifact(folder)
    reference = artifact.reference()
    given = reference["inputs"] if reference and reference["inputs"] else artifact.synthetic_inputs()
    inputs = artifact.inputs_in_order(given)
    params = artifact.params()
    attempts = (1 + max(0, retries)) if tracker else 1
    failures = []
    for attempt in range(1, attempts + 1):
        session = connect(rpc=rpc, tracker=tracker, key=key, session_timeout=session_timeout,
                          call_timeout=call_timeout, queue_timeout=queue_timeout)
        where = f"{session.address[0]}:{session.address[1]}"
        try:
            if progress:
                progress(f"connected to {where}; checking and uploading {artifact.lib.name} and {len(params)} weights")
            model = RemoteModel(session, artifact.lib, params, device_arch)
            if progress:
                progress(f"running on {where}")
            output = model.run(inputs)
            samples = model.time(inputs, repeat=repeat) if repeat else []
        except DeviceError as exc:
            failures.append(exc.one_line())
            if attempt == attempts:
                raise
            if progress:
                progress(f"device {where} dropped; asking the tracker for another one")
            continue
        finally:
            session.close()
        report = {"artifact": str(artifact.folder), "device": where, "key": key or "", "attempts": attempt,
                  "dropped": failures, "inputs": {n: list(np.shape(a)) for n, a in given.items()},
                  "output_shape": (list(np.shape(output)) if not isinstance(output, (list, tuple))
                                   else [list(np.shape(o)) for o in _flatten(output)]),
                  "reference": "reference.npz" if reference else None}
        if reference is not None and reference.get("output") is not None:
            from canao.artifact import load_reference

            outputs = (load_reference(artifact.folder) or {}).get("outputs") or {"output": reference["output"]}
            report["check"] = compare_outputs(output, outputs, atol)
        if samples:
            report["samples_ms"] = samples
            report["stats"] = timing_stats(samples)
        report["output"] = output
        return report
    raise CanaoError("unreachable", "")  # pragma: no cover
