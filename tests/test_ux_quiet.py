"""The first hour of a new user: a quiet terminal, readable tables, engines by name, a real roofline.

The end-to-end check runs `canao benchmark` through a pipe (stdout and stderr not terminals), as a CI
log or `| tee` would, on a short sequence with two quick engines.
"""
import json
import subprocess
import sys
import textwrap

from conftest import assert_one_line_error, run_cli

# what other libraries print when nobody routes it (seen before this was fixed)
NOISE = ["Warning", "WARNING", "FutureWarning", "DeprecationWarning", "Failed to load", "_pytree", "oneDNN",
         "absl", "torchvision", "XNNPACK", "Fast mode segfaults", "Loading weights"]


def _stderr_pieces(text):
    return [p.strip() for p in text.replace("\r", "\n").splitlines() if p.strip()]


def test_benchmark_through_a_pipe_is_quiet_and_unwrapped(tmp_path):
    out = tmp_path / "bench"
    proc = run_cli("benchmark", "minilm-l6", "--seq-len", 8, "--engines", "canao-stock-fusion,pytorch",
                   "--runs", 20, "--warmup", 1, "--max-seconds", 1, "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    # stderr holds CANAO's progress bars and nothing else
    pieces = _stderr_pieces(proc.stderr)
    for piece in pieces:
        assert piece.startswith(("prepare engines", "timing rounds")), piece
    # in a pipe the bars redraw every 15 s at most, not ten times a second (a CI log stays short):
    # each bar's first and last state (tqdm's default redraw gave 11 pieces here)
    assert len(pieces) <= 6, pieces
    for needle in NOISE:
        assert needle not in proc.stdout, (needle, proc.stdout)
    # the table: header + rule + one row per engine, every line whole (not wrapped at 80 columns)
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| engine |"))
    table = lines[header:header + 4]
    cells = table[0].count("|")
    assert cells == 16, table[0]  # 15 columns
    assert all(line.startswith("|") and line.endswith("|") and line.count("|") == cells for line in table), table
    assert [line.split("|")[1].strip() for line in table[2:]] == ["canao-stock-fusion", "pytorch"]
    assert max(len(line) for line in table) > 80  # would have been wrapped by an 80-column console
    # where the time went, and where the files and the other libraries' output went
    time_line = next(line for line in lines if line.startswith("time: "))
    for phase in ("import", "peak", "canao-stock-fusion", "pytorch", "timing"):
        assert phase in time_line, time_line
    assert f"other libraries' output: {out / 'canao.log'}" in proc.stdout
    log = (out / "canao.log").read_text()
    assert log.startswith("canao benchmark: log of")
    report = json.loads((out / "benchmark.json").read_text())
    rows = {r["name"]: r for r in report["engines"]}
    assert rows["canao-stock-fusion"]["status"] == "ok" and rows["canao-stock-fusion"]["kernels"] > 0
    meta = report["meta"]
    assert meta["peak_gflops"] and "FMA" in meta["peak_method"]
    assert rows["pytorch"]["pct_peak"] == 100 * rows["pytorch"]["gflops"] / meta["peak_gflops"]
    assert set(meta["time_s"]) >= {"import", "reference", "peak", "prepare pytorch", "timing", "total"}


def test_unknown_engine_is_one_line_naming_the_choices():
    proc = run_cli("benchmark", "minilm-l6", "--engines", "canao,tvm-fast")
    assert_one_line_error(proc, "tvm-fast", "canao-stock-fusion", "litert-xnnpack")


def test_help_lists_engine_names():
    proc = run_cli("benchmark", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for name in ("canao,", "canao-stock-fusion", "tvm-stock", "pytorch", "onnxruntime-bert", "litert-xnnpack"):
        assert name in text, name
    assert "-v, --verbose" in text


ROUTING_SCRIPT = textwrap.dedent("""
    import os, sys, types, warnings, logging
    from canao import logs
    path = logs.start("probe")
    # a third-party module: its warning, its logging record, its print, and a native write to fd 2
    lib = types.ModuleType("somelib")
    exec("import warnings, logging, sys\\n"
         "def noisy():\\n"
         "    warnings.warn('somelib deprecation', FutureWarning)\\n"
         "    logging.getLogger('somelib').warning('somelib log record')\\n"
         "    print('somelib stdout chatter')\\n"
         "    print('somelib stderr chatter', file=sys.stderr)\\n", lib.__dict__)
    lib.noisy()
    os.write(2, b"native stderr line\\n")
    # CANAO's own: a warning raised from a canao module, and a plain message
    from canao.bench import report
    exec(compile("import warnings\\nwarnings.warn('canao: matmul stays fp32', UserWarning)\\n",
                 report.__file__, "exec"))
    print("canao result line")
    print("canao note", file=sys.stderr)
    logs.stop()
    print("LOG=" + str(path))
""")


def test_third_party_output_goes_to_the_log_and_canao_output_stays():
    proc = subprocess.run([sys.executable, "-c", ROUTING_SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    visible = proc.stdout + proc.stderr
    for hidden in ("somelib deprecation", "somelib log record", "somelib stdout chatter", "somelib stderr chatter",
                   "native stderr line"):
        assert hidden not in visible, (hidden, visible)
    assert "canao result line" in proc.stdout
    assert "canao note" in proc.stderr and "matmul stays fp32" in proc.stderr
    log_path = proc.stdout.strip().splitlines()[-1].split("=", 1)[1]
    log = open(log_path).read()
    for line in ("somelib deprecation", "somelib log record", "somelib stdout chatter", "somelib stderr chatter",
                 "native stderr line", "canao result line", "matmul stays fp32"):
        assert line in log, (line, log)


def test_cli_has_no_blanket_warning_filter():
    import inspect

    from canao import cli

    source = inspect.getsource(cli)
    assert 'filterwarnings("ignore")' not in source and "simplefilter(\"ignore\")" not in source
