"""Tuning a tiny model end to end with the local runner: kill -9 in the middle, resume, and the
tuned database changes nothing numerically (checked against PyTorch and the untuned build)."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

TRIALS, BATCH = 8, 4  # two batches of one task: the kill lands in the second

TINY_MODEL = textwrap.dedent("""
    import numpy as np, torch
    from canao.frontends import from_torch

    class MatmulBiasRelu(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.fc = torch.nn.Linear(64, 64)

        def forward(self, x):
            return torch.relu(self.fc(x))

    def tiny_model():
        x = np.random.default_rng(0).standard_normal((64, 64)).astype("float32")
        return from_torch(MatmulBiasRelu().eval(), {"x": x}, name="matmul-bias-relu")
""")


def _tiny_model():
    namespace = {}
    exec(TINY_MODEL, namespace)  # the same model definition the subprocess uses
    return namespace["tiny_model"]()


@pytest.fixture(scope="module")
def tiny():
    return _tiny_model()


def _run(compiled, inputs):
    import tvm
    from tvm import relax

    dev = tvm.cpu()
    vm = relax.VirtualMachine(compiled.executable, dev)
    args = [tvm.runtime.tensor(a, dev) for a in [*inputs, *compiled.params]]
    return vm["main"](*args).numpy()


@pytest.fixture(scope="module")
def resumed_db(tiny, tmp_path_factory, host_target):
    """A database whose first tuning process was killed with SIGKILL after one batch, then resumed."""
    from canao.codegen.tuning import tune
    from canao.codegen.tuning.store import TuningStore

    db = tmp_path_factory.mktemp("tuning") / "db"
    script = TINY_MODEL + textwrap.dedent(f"""
        from canao.codegen import resolve_target
        from canao.codegen.tuning import tune
        tune(tiny_model(), resolve_target("x86"), {str(db)!r}, {TRIALS}, slice_trials={BATCH}, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)  # its own group: the kill takes its workers too
    store = TuningStore(db)
    deadline = time.time() + 400
    try:
        while time.time() < deadline and proc.poll() is None and store.total_records() < BATCH:
            time.sleep(0.5)
        assert proc.poll() is None, f"tuning ended before the kill: {proc.stderr.read()[-2000:]}"
        assert store.total_records() >= BATCH, "no batch was committed in time"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = store.total_records()
    report = tune(tiny, host_target, db, TRIALS, slice_trials=BATCH, progress=False)
    return db, before, report


def test_killed_tuning_resumes_without_losing_records(resumed_db):
    db, before, report = resumed_db
    assert BATCH <= before < TRIALS
    assert report.trials_total >= before  # nothing measured before the kill was lost
    assert report.trials_this_run > 0  # and tuning continued from there
    assert report.trials_total >= TRIALS and report.complete
    assert [t.name for t in report.tasks] == ["fused_matmul_add_relu"] or len(report.tasks) == 1
    assert report.tasks[0].best_us is not None and report.tasks[0].best_us > 0
    assert report.seconds_total >= report.seconds_this_run > 0


def test_finished_database_is_a_no_op_to_rerun(resumed_db, tiny, host_target):
    from canao.codegen.tuning import tune

    db, _, first = resumed_db
    again = tune(tiny, host_target, db, TRIALS, slice_trials=BATCH, progress=False)
    assert again.trials_this_run == 0 and again.trials_total == first.trials_total


def test_tuned_kernels_are_used_only_where_they_beat_the_defaults(resumed_db, tiny, host_target):
    import tvm

    from canao.codegen.tuning import apply_database, fused_module

    db, _, report = resumed_db
    task = report.tasks[0]
    assert task.default_us is not None and task.default_us > 0  # measured once, with the same runner
    timed = {name: us for name, us in task.verdict_us.items() if us is not None}
    assert "default" in timed and len(timed) >= 2  # contenders timed side by side after tuning
    assert task.choice == min(timed, key=timed.get)
    with host_target.tvm_target():
        applied = apply_database(db)(fused_module(tiny, host_target))
    kernel = [f for f in applied.functions.values() if isinstance(f, tvm.tirx.PrimFunc)][0]
    assert bool(kernel.attrs.get("tirx.is_scheduled", False)) == task.uses_tuned


def test_database_reuse_changes_nothing_numerically(resumed_db, tiny, host_target, tmp_path):
    import shutil

    import tvm

    from canao.codegen.build import build
    from canao.codegen.tuning import apply_database, build_tuned, fused_module
    from canao.codegen.tuning.store import MANIFEST

    db, _, _ = resumed_db
    every_record = tmp_path / "all"  # without the manifest every tuned kernel is applied, slower or not
    shutil.copytree(db, every_record, ignore=shutil.ignore_patterns(MANIFEST, "applied", "logs"))
    with host_target.tvm_target():
        applied = apply_database(every_record)(fused_module(tiny, host_target))
    assert all(f.attrs.get("tirx.is_scheduled", False) for f in applied.functions.values()
               if isinstance(f, tvm.tirx.PrimFunc))

    inputs = [tiny.example_inputs(1)[spec.name] for spec in tiny.inputs]
    reference = tiny.reference(dict(zip([s.name for s in tiny.inputs], inputs)))
    untuned = _run(build(tiny, host_target), inputs)
    tuned = _run(build(tiny, host_target, options={"tuning_db": str(every_record)}), inputs)
    compiled, report = build_tuned(tiny, host_target, db, progress=False)  # every task tuned: no tuning
    assert report is None
    np.testing.assert_allclose(untuned, reference, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tuned, untuned, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_run(compiled, inputs), untuned, rtol=1e-5, atol=1e-6)


def test_missing_database_is_a_one_line_error(tiny, host_target, tmp_path):
    from canao.codegen.build import build
    from canao.errors import CanaoError

    with pytest.raises(CanaoError) as err:
        build(tiny, host_target, options={"tuning_db": str(tmp_path / "none")})
    assert "no tuning database" in err.value.cause and "canao tune" in err.value.fix
