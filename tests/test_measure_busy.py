"""The noise gate against a real neighbour: a synthetic busy-loop process (spinning on every core,
stopped after at most 20 s) slows the reference workload, and the gate re-measures or flags the
row. Only the gate's record (tries, flags, reasons, load, reference) is asserted, never a time."""
import os
import subprocess
import sys
import time

import numpy as np

from canao.measure import Gate, Reference, calibrate_reference, measure

SPIN = """
import multiprocessing as mp, sys, time
def spin(until):
    while time.time() < until:
        pass
if __name__ == "__main__":
    until = time.time() + float(sys.argv[1])
    procs = [mp.Process(target=spin, args=(until,)) for _ in range(int(sys.argv[2]))]
    for p in procs: p.start()
    print("spinning", flush=True)
    for p in procs: p.join()
"""


def test_gate_remeasures_or_flags_beside_a_busy_loop(tmp_path):
    # ~10 ms per sample (several scheduler slices): the neighbour is in every sample, not in a few
    # that the robust statistics then drop (at ~0.5 ms the gate saw nothing on a 2-core Zen 4 VM)
    reference = Reference(repeat=960)
    baseline = calibrate_reference(reference, samples=9)  # before the neighbour starts
    script = tmp_path / "spin.py"
    script.write_text(SPIN)
    spinners = 2 * (os.cpu_count() or 1)
    proc = subprocess.Popen([sys.executable, str(script), "15", str(spinners)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "spinning"
        time.sleep(1.0)
        work = np.random.default_rng(0).standard_normal(65536).astype(np.float32)
        gate = Gate(max_spread=0.05, max_drift=0.10, max_tries=2)
        row = measure({"candidate": lambda: np.tanh(work)}, rounds=12, warmup=1, reference=reference, gate=gate,
                      baseline_ms=baseline)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert row.tries > 1 or row.flagged
    assert row.tries <= gate.max_tries
    if row.flagged:  # every try was rejected
        assert row.tries == gate.max_tries and {r.split(":")[0] for r in row.reasons} == {"try 1", "try 2"}
    assert row.reasons and all(r.startswith("try ") for r in row.reasons)
    noise = row.noise()
    assert noise["reference_ms"] > 0 and noise["tries"] == row.tries
    if hasattr(os, "getloadavg"):
        assert noise["load_avg"] is not None and len(noise["load_avg"]) == 3
    assert len(row.samples_ms["candidate"]) == 12
