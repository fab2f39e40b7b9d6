"""`canao profile --rpc`: the per-kernel table of a build for android-arm64, taken on the emulated
aarch64 device over TVM RPC, with the device's outputs checked against PyTorch on the host.

Under qemu the timings mean nothing, so none is asserted: the table has every kernel the model
launches, its rows parse, the outputs were checked, the files are written, and the report says the
device is emulated. Skips only when qemu / the cross compiler are missing and CANAO_REQUIRE_DEVICE
is unset (android_helpers.emulator_or_skip).
"""
import json
import re

import pytest

from android_helpers import emulator_or_skip
from conftest import run_cli

SEQ = 16
ROW = re.compile(r"^\| (?P<name>[A-Za-z_][\w.]*) \| (?P<calls>\d+) \| (?P<ms>\d+\.\d{3}) \| (?P<share>\d+\.\d)% \| "
                 r"(?P<gflops>[\d.]*) \| (?P<pct>—|\d+%) \| (?P<kind>[^|]*) \| (?P<ops>[^|]*) \|$")


@pytest.fixture(scope="module")
def booting_device():
    """Launched first so that it boots (import tvm under qemu) while the model compiles."""
    from canao.android_runner import EmulatedDevice

    device = EmulatedDevice(emulator=emulator_or_skip()).launch()
    yield device
    device.stop()


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    """A 2-layer BERT (hidden 128) as a transformers config .json: a MODEL the CLI takes (seeded weights)."""
    from transformers import BertConfig

    path = tmp_path_factory.mktemp("tiny") / "tiny-bert.json"
    BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
               vocab_size=1000, max_position_embeddings=64).to_json_file(str(path))
    return path


@pytest.fixture(scope="module")
def tiny_build(booting_device, tiny_config):
    from canao.codegen import resolve_target
    from canao.codegen.build import build
    from canao.frontends import load_model

    imported = load_model(str(tiny_config), seq_len=SEQ)
    return imported, build(imported, resolve_target("android-arm64"), "canao", options={"yellow": "default"})


@pytest.fixture
def device(booting_device):
    if not booting_device.alive():
        booting_device.stop()
        booting_device.launch()
    return booting_device.wait_ready()


def test_profile_remote_times_every_kernel_and_checks_outputs(device, tiny_build):
    from canao.android_runner import connect
    from canao.bench.suite import real_inputs
    from canao.profile import markdown, profile_remote

    imported, compiled = tiny_build
    inputs, _ = real_inputs(imported, 1)
    with connect(rpc=f"{device.host}:{device.port}") as session:
        prof = profile_remote(compiled, imported, inputs, session, repeat=3, kernel_repeat=2)
    assert prof.check["match"] and prof.check["max_abs_err"] <= prof.check["tolerance"], prof.check
    assert prof.device == f"{device.host}:{device.port}" and prof.emulated is True
    assert prof.kernel_timing == "time_evaluator" and prof.roofline_gflops is None
    names = [k.name for k in prof.kernels]
    assert len(names) == len(set(names)) and len(names) > 5
    assert sum(k.calls for k in prof.kernels) == compiled.kernels  # every launch of main is in the table
    assert all(k.ms > 0 for k in prof.kernels) and prof.whole_ms > 0
    assert sum(k.share for k in prof.kernels) == pytest.approx(1.0)
    assert [k for k in prof.kernels if "matmul" in k.ops and k.flops > 0]
    text = markdown(prof)
    assert "emulated: timings mean nothing" in text and "outputs checked on the device: match" in text
    assert "no roofline over RPC" in text


def test_profile_cli_over_rpc_writes_table_json_and_plot(device, tiny_build, tiny_config, tmp_path):
    """The command a user runs, with --compare stock-fusion: both builds profiled in one session."""
    out = tmp_path / "prof"
    proc = run_cli("profile", tiny_config, "--seq-len", SEQ, "--rpc", f"{device.host}:{device.port}",
                   "--runs", 3, "--kernel-runs", 2, "--yellow", "default", "--compare", "stock-fusion", "-o", out)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    assert "| kernel | calls | ms |" in proc.stdout and "## by mapping type" in proc.stdout
    assert proc.stdout.count("outputs checked on the device: match") == 2
    saved = json.loads((out / "profile.json").read_text())
    assert [p["pipeline"] for p in saved["profiles"]] == ["canao (LP-Fusion)", "canao-stock-fusion"]
    for p in saved["profiles"]:
        assert p["target"] == "android-arm64" and p["device"] == f"{device.host}:{device.port}"
        assert p["emulated"] is True and p["kernel_timing"] == "time_evaluator"
        assert p["output_check"]["match"] and p["roofline_gflops"] is None
        assert any("mean nothing" in n for n in p["notes"])
        assert p["kernels"] and all(k["ms"] > 0 and k["calls"] >= 1 and k["pct_roofline"] is None
                                    for k in p["kernels"])
    rows = kernel_rows((out / "profile.md").read_text())
    assert rows and all(rows), rows
    assert len(rows) == sum(len(p["kernels"]) for p in saved["profiles"])  # profile.md lists every kernel
    assert all(r["pct"] == "—" and int(r["calls"]) >= 1 for r in rows)
    assert (out / "profile.png").stat().st_size > 1000


def kernel_rows(markdown: str):
    """The rows of every per-kernel table in ``markdown`` as regex matches (None: a row that does not parse)."""
    rows, inside = [], False
    for line in markdown.splitlines():
        if line.startswith("| kernel | calls | ms |"):
            inside = True
        elif inside and line.startswith("|---"):
            continue
        elif inside and line.startswith("| "):
            rows.append(ROW.match(line))
        else:
            inside = False
    return rows


def cli_error(capsys, *argv) -> str:
    """Run `canao ARGV` in this process (these fail before any work) and return its one error line."""
    from canao.cli import main

    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("canao: error: ")]
    assert code == 2 and len(lines) == 1 and "(fix: " in lines[0], err[-2000:]
    return lines[0]


def test_profile_device_arguments_are_checked_before_any_work(capsys):
    assert "--key" in cli_error(capsys, "profile", "minilm-l6", "--tracker", "127.0.0.1:9190")
    assert "--rpc" in cli_error(capsys, "profile", "minilm-l6", "--target", "android-arm64")


def test_profile_refuses_a_compiled_artifact_with_what_to_run(tmp_path, capsys):
    folder = tmp_path / "art"
    folder.mkdir()
    (folder / "lib.so").write_bytes(b"\x7fELF")
    (folder / "manifest.json").write_text(json.dumps({"model": "minilm-l6", "target": {"name": "android-arm64"},
                                                      "inputs": [{"name": "input_ids", "shape": [1, 32],
                                                                  "dtype": "int64"}]}))
    line = cli_error(capsys, "profile", folder, "--rpc", "127.0.0.1:9")
    assert "compiled artifact" in line and "canao profile minilm-l6 --seq-len 32" in line
    assert "--target android-arm64" in line
