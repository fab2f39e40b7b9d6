"""The command line as a user drives it: compile, run, inspect, benchmark, and every bad input."""
import json

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("art") / "minilm"
    proc = run_cli("compile", "minilm-l6", "--seq-len", 32, "-o", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_compile_writes_complete_artifact(artifact_dir):
    names = {p.name for p in artifact_dir.iterdir()}
    assert {"lib.so", "params.npz", "manifest.json", "reference.npz", "tokenizer"} <= names
    manifest = json.loads((artifact_dir / "manifest.json").read_text())
    assert manifest["model"] == "minilm-l6"
    assert [i["name"] for i in manifest["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest["inputs"][0]["shape"] == [1, 32]
    assert manifest["target"]["name"] == "x86" and manifest["pipeline"] == "canao"
    assert manifest["check"]["status"] == "passed" and manifest["check"]["max_abs_err"] < 1e-3
    # the recorded checksum is reproducible: the artifact reloaded on its stored inputs gives it again
    from canao import artifact
    from canao.runtime import LocalModel

    ref = artifact.load_reference(artifact_dir)
    out = LocalModel.from_dir(artifact_dir).run(ref["inputs"])
    assert artifact.output_checksum(out) == manifest["check"]["output_checksum"]
    assert artifact.output_checksum(ref["output"]) == manifest["check"]["reference_checksum"]
    assert np.abs(out - ref["output"]).max() < 1e-3
    assert manifest["kernels"] > 0 and manifest["versions"]["apache-tvm"] == "0.27.0.post1"
    assert [s["stage"] for s in manifest["stages"]][0] == "import"


def test_run_text_matches_pytorch(artifact_dir, minilm, tmp_path):
    from canao.text import tokenize

    out_file = tmp_path / "out.npy"
    proc = run_cli("run", artifact_dir, "--text", "a gripping, beautifully acted film", "--save", out_file)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mean-pooled embedding" in proc.stdout
    inputs = tokenize(minilm.tokenizer_dir, ["a gripping, beautifully acted film"], 32,
                      [s.name for s in minilm.inputs])
    assert np.abs(np.load(out_file) - minilm.reference(inputs)).max() < 1e-4


def test_run_npy_inputs_and_wrong_shape(artifact_dir, tmp_path):
    ids = np.full((1, 32), 2000, dtype="int64")
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "mask.npy", np.ones((1, 32), dtype="int64"))
    np.save(tmp_path / "tt.npy", np.zeros((1, 32), dtype="int64"))
    ok = run_cli("run", artifact_dir, "--input", f"input_ids={tmp_path / 'ids.npy'}",
                 "--input", f"attention_mask={tmp_path / 'mask.npy'}", "--input", f"token_type_ids={tmp_path / 'tt.npy'}")
    assert ok.returncode == 0, ok.stderr[-2000:]
    np.save(tmp_path / "bad.npy", np.ones((1, 16), dtype="int64"))
    bad = run_cli("run", artifact_dir, "--input", f"input_ids={tmp_path / 'bad.npy'}",
                  "--input", f"attention_mask={tmp_path / 'mask.npy'}", "--input", f"token_type_ids={tmp_path / 'tt.npy'}")
    assert_one_line_error(bad, "input_ids", "(1, 16)", "(1, 32)")
    np.save(tmp_path / "float.npy", np.ones((1, 32), dtype="float32"))
    wrong_dtype = run_cli("run", artifact_dir, "--input", f"input_ids={tmp_path / 'float.npy'}",
                          "--input", f"attention_mask={tmp_path / 'mask.npy'}", "--input", f"token_type_ids={tmp_path / 'tt.npy'}")
    assert_one_line_error(wrong_dtype, "dtype float32", "int64")


def test_existing_output_refused_without_force(artifact_dir):
    before = sorted(p.name for p in artifact_dir.iterdir())
    proc = run_cli("compile", "minilm-l6", "--seq-len", 32, "-o", artifact_dir)
    assert_one_line_error(proc, "already exists", "--force")
    assert sorted(p.name for p in artifact_dir.iterdir()) == before


def test_unknown_model_lists_zoo(tmp_path):
    proc = run_cli("compile", "gpt-17", "-o", tmp_path / "x")
    assert_one_line_error(proc, "unknown model 'gpt-17'", "minilm-l6", "mobilebert")
    assert not (tmp_path / "x").exists()


def test_unknown_target(tmp_path):
    proc = run_cli("compile", "minilm-l6", "--target", "tpu9000", "-o", tmp_path / "x")
    assert_one_line_error(proc, "unknown target 'tpu9000'")
    assert not (tmp_path / "x").exists()


def test_corrupt_and_truncated_onnx(tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is not a protobuf at all" * 10)
    assert_one_line_error(run_cli("compile", corrupt, "-o", tmp_path / "x"), "not a valid ONNX model")
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    good = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]))
    data = good.SerializeToString()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    assert_one_line_error(run_cli("compile", truncated, "-o", tmp_path / "x"), "not a valid ONNX model")
    assert not (tmp_path / "x").exists()


def test_unsupported_onnx_operator_is_named(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    node = helper.make_node("FancyCustomOp", ["x"], ["y"], domain="com.example")
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)])
    path = tmp_path / "custom.onnx"
    onnx.save(model, path)
    assert_one_line_error(run_cli("compile", path, "-o", tmp_path / "x"), "FancyCustomOp")


def test_model_folder_without_weights(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert_one_line_error(run_cli("compile", folder, "-o", tmp_path / "x"), "no weights")


def test_inspect_json_counts_kernels(tmp_path):
    out = tmp_path / "inspect.json"
    proc = run_cli("inspect", "minilm-l6", "--seq-len", 32, "--json", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["kernels"]["stock"] > 0 and report["kernels"]["canao"] > 0
    stock = report["pipelines"]["stock"]
    assert stock[0]["stage"] == "import" and stock[0]["relax_ops"] > 400
    assert "kernels per inference" in proc.stdout


def test_benchmark_json_has_engines(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_cli("benchmark", "minilm-l6", "--seq-len", 32, "--runs", 3, "--warmup", 1,
                   "--engines", "canao,pytorch,onnxruntime", "--json", out, "--out", tmp_path / "rep")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {e["name"]: e for e in report["engines"]}
    assert set(rows) == {"canao", "pytorch", "onnxruntime"}
    for row in rows.values():
        assert row["status"] == "ok"
        assert row["min_ms"] <= row["p50_ms"] <= row["max_ms"]
        assert row["max_abs_err"] < 1e-3 and row["runs"] == 3
    assert rows["canao"]["ratio_vs_canao"] == pytest.approx(1.0)
    assert (tmp_path / "rep" / "benchmark.png").stat().st_size > 1000
    assert "| canao |" in (tmp_path / "rep" / "benchmark.md").read_text()


def test_compile_gpt2_config_checked_against_pytorch(tmp_path):
    """`canao compile CONFIG.json` builds a decoder from a transformers config (seeded weights) and
    checks it against PyTorch on every output, like the encoders."""
    import transformers

    config = tmp_path / "gpt2-tiny.json"
    transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=1000, n_positions=64).to_json_file(config)
    out = tmp_path / "gpt2"
    proc = run_cli("compile", config, "--seq-len", 16, "--threads", 2, "--yellow", "default", "-o", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["outputs"] == [{"name": "logits", "shape": [1, 16, 1000], "dtype": "float32"}]
    assert [i["name"] for i in manifest["inputs"]] == ["input_ids", "attention_mask"]
    check = manifest["check"]
    assert check["status"] == "passed" and check["reference"] == "pytorch"
    assert check["outputs"]["logits"]["max_abs_err"] < 1e-3 and check["outputs"]["logits"]["status"] == "passed"
    saved = tmp_path / "logits.npz"
    ids = np.arange(16, dtype="int64").reshape(1, 16) + 100
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "mask.npy", np.ones((1, 16), dtype="int64"))
    ran = run_cli("run", out, "--input", f"input_ids={tmp_path / 'ids.npy'}",
                  "--input", f"attention_mask={tmp_path / 'mask.npy'}", "--save", saved)
    assert ran.returncode == 0, ran.stderr[-2000:]
    with np.load(saved) as npz:
        assert npz.files == ["logits"] and npz["logits"].shape == (1, 16, 1000)


def test_corrupt_config_json_is_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"model_type": "gpt2", "n_layer": ')
    assert_one_line_error(run_cli("compile", bad, "-o", tmp_path / "x"), "bad.json", "not a transformers config")
    assert not (tmp_path / "x").exists()


def _help_of(parser, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(argv)
    return exit_info.value.code, capsys.readouterr().out


def test_every_help_page_renders_and_keeps_names_whole(capsys):
    """`canao --help` and each `canao COMMAND --help` print (a '%' in a help string once broke the
    top-level page), and hyphenated names are never split across lines."""
    from canao.cli import build_parser

    parser = build_parser()
    code, text = _help_of(parser, ["--help"], capsys)
    assert code == 0 and "COMMAND" in text
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert {"compile", "benchmark", "profile"} <= set(commands)
    for name in commands:
        code, text = _help_of(parser, [name, "--help"], capsys)
        assert code == 0 and f"canao {name}" in text, name
        assert not any(line.rstrip().endswith("-") and not line.rstrip().endswith(" -") for line in text.splitlines()), name
