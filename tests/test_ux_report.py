"""Benchmark tables that read in a pipe and on a terminal; the FMA roofline; engines by name; pip check."""
import subprocess
import sys

import pytest

from canao.bench import report


def _result(names=("canao", "canao-stock-fusion", "tvm-stock", "pytorch", "onnxruntime-bert", "litert-xnnpack")):
    rows = []
    for i, name in enumerate(names):
        rows.append({"name": name, "status": "ok", "init_s": 12.5 + i, "first_run_ms": 40.0, "min_ms": 14.2,
                     "p50_ms": 15.1 + i, "p90_ms": 16.0, "avg_ms": 15.3, "std_ms": 0.41, "runs": 20,
                     "ratio_vs_canao": 1.0 + i / 10, "gflops": 22.3, "pct_peak": 26.5, "max_abs_err": 2.3e-6,
                     "rss_delta_mb": 127.0})
    meta = {"model": "minilm-l6", "seq_len": 128, "batch": 1, "threads": 2, "machine": "x86_64 znver3, 2 cores",
            "peak_gflops": 84.0, "gemm_gflops": 30.0, "peak_method": "FMA", "model_gflop": 2.7,
            "input": "a sentence", "time_s": {"import": 3.0, "peak": 0.8, "prepare canao": 20.0, "timing": 30.0,
                                              "total": 54.0}}
    return {"meta": meta, "engines": rows}


def test_pipe_table_has_every_column_on_one_line():
    text = report.markdown(_result())
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 6
    assert all(line.count("|") == len(report.COLUMNS) + 1 for line in table)
    assert "more columns" not in text


@pytest.mark.parametrize("width", [60, 80, 120])
def test_terminal_table_fits_its_width_and_names_the_rest(width):
    text = report.markdown(_result(), width=width)
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert all(len(line) <= width for line in table), (width, table)
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[0] == "engine" and "p50 ms" in header
    if len(header) < len(report.COLUMNS):
        assert "more columns in benchmark.md / benchmark.json" in text


def test_peak_line_names_the_roofline_and_labels_the_gemm():
    line = report.peak_line(_result()["meta"])
    assert "roofline (FMA peak" in line and "84" in line and "GEMM (torch.mm, for reference) 30" in line


def test_time_line_breaks_the_total_down():
    line = report.time_line(_result()["meta"]["time_s"])
    assert line.startswith("time: 54 s total = import 3.0 + peak 0.8 + canao 20.0 + timing 30.0")


def test_fma_roofline_kernel_builds_and_runs():
    from canao.bench import peak

    measured = peak.measure_fma_gflops(threads=1, reps=1, seconds_per_rep=0.01)
    assert measured["gflops"] > 0
    assert measured["vector_bits"] in (128, 256, 512) and measured["accumulators"] >= 8
    assert peak.fma_binary() == peak.fma_binary()  # built once, cached


def test_engine_catalog_and_stock_fusion_option():
    from canao.bench.engines import DEFAULT_ENGINES, default_engines
    from canao.errors import CanaoError

    default = [e.name for e in default_engines()]
    assert "canao-stock-fusion" not in default and default[0] == "canao"
    picked = default_engines(include=["pytorch", "canao-stock-fusion", "canao"])
    assert [e.name for e in picked] == ["canao", "canao-stock-fusion", "pytorch"]  # table order
    assert picked[1].pipeline == "canao" and picked[1].options == {"fusion": False}
    assert set(default) <= set(DEFAULT_ENGINES)
    with pytest.raises(CanaoError, match="canao-int8"):
        default_engines(include=["canao-int8"])  # needs --quantize


def test_conversion_cache_key_follows_weights_and_shapes(minilm, tmp_path, monkeypatch):
    from canao.bench import engines

    monkeypatch.setenv("CANAO_CACHE", str(tmp_path))
    a = engines.artifact_dir(minilm, "onnx", {"torch": "1"})
    assert a == engines.artifact_dir(minilm, "onnx", {"torch": "1"})
    assert a != engines.artifact_dir(minilm, "onnx", {"torch": "2"})
    assert a.parent == tmp_path / "conversions"


def test_pip_check_passes():
    """After scripts/install.sh the environment has no broken requirement (CI runs this after install)."""
    proc = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
