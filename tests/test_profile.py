"""`canao profile`: per-kernel times that account for the whole model, on real MiniLM weights."""
import json

import pytest


@pytest.fixture(scope="module")
def minilm_build(minilm, host_target):
    from canao.codegen.build import build

    return build(minilm, host_target, "canao", options={"yellow": "default"})


def test_kernel_sum_accounts_for_the_whole_model(minilm, minilm_build, minilm_text_inputs):
    """Per-kernel times (instrument hook) add up to the un-instrumented whole-model time (±50%, see below):
    the VM spends its time in the kernels the table lists, none is missing or double-counted."""
    from canao.profile import profile_compiled

    # Up to three profiles, the closest kept. The bound is loose (±50%) on purpose: beside the other
    # CI worker the whole-model and per-kernel phases see different loads (seen: 9.5 vs 12.6 ms,
    # 293 vs 191 ms); a kernel missing from the table is caught by the launch count below, one counted
    # twice (sum ~2x) by this bound. On a quiet machine the sum is 101% of the whole (docs/results.md).
    attempts = []
    for _ in range(3):
        attempts.append(profile_compiled(minilm_build, minilm, minilm_text_inputs, repeat=30, kernel_repeat=9,
                                         allow_busy=True))
        if attempts[-1].kernel_sum_ms == pytest.approx(attempts[-1].whole_ms, rel=0.15):
            break
    prof = min(attempts, key=lambda p: abs(p.kernel_sum_ms / p.whole_ms - 1.0))
    names = [k.name for k in prof.kernels]
    assert len(names) == len(set(names)) and len(names) > 5
    assert sum(k.calls for k in prof.kernels) == minilm_build.kernels  # every launch is in the table
    assert prof.kernel_sum_ms == pytest.approx(prof.whole_ms, rel=0.5), (prof.kernel_sum_ms, prof.whole_ms)
    gemms = [k for k in prof.kernels if "matmul" in k.ops]
    assert gemms and all(k.flops > 0 for k in gemms)
    assert sum(k.share for k in prof.kernels) == pytest.approx(1.0)


def test_profile_cli_writes_table_json_and_plot(tmp_path):
    from conftest import run_cli

    out = tmp_path / "prof"
    proc = run_cli("profile", "minilm-l6", "--seq-len", "16", "--runs", "5", "--kernel-runs", "2", "--yellow",
                   "default", "--compare", "stock-fusion", "--allow-busy", "-o", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| kernel | calls | ms |" in proc.stdout and "## by mapping type" in proc.stdout
    saved = json.loads((out / "profile.json").read_text())
    pipelines = [p["pipeline"] for p in saved["profiles"]]
    assert pipelines == ["canao (LP-Fusion)", "canao-stock-fusion"]
    for p in saved["profiles"]:
        assert p["roofline_gflops"] and p["roofline_gflops"] > 0
        assert all(k["pct_roofline"] is None or k["pct_roofline"] > 0 for k in p["kernels"])
        # the FMA roofline is quoted for GEMM kernels only, and the whole model against its matmul work
        assert all((k["pct_roofline"] is not None) == ("matmul" in k["ops"] and bool(k["gflops"]))
                   for k in p["kernels"])
    works = {p["model_matmul_gflop"] for p in saved["profiles"]}
    assert len(works) == 1 and works.pop() > 0
    assert (out / "profile.png").stat().st_size > 1000 and (out / "profile.md").exists()


def test_profile_rejects_too_few_runs():
    from conftest import assert_one_line_error, run_cli

    assert_one_line_error(run_cli("profile", "minilm-l6", "--runs", "1"), "--runs")
