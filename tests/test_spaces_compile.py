"""Sampled SubTransformers import into Relax, build through the canao pipeline for this CPU and match
PyTorch; so do the standalone Lite Transformer encoder and HAT's cached decoder step."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from canao.nas.spaces import LiteTransformerEncoder, load_space
from canao.nas.spaces.check import check_subnet, run_vm


@pytest.fixture(scope="module")
def target():
    from canao.codegen import resolve_target

    return resolve_target("x86")


@pytest.mark.parametrize("name,seeds", [("hat_tiny", (0, 4)), ("bert_minilm_small", (2, 4))])
def test_sampled_subnets_compile_and_match_pytorch(name, seeds, target):
    space = load_space(name)
    kinds = set()
    for seed in seeds:
        genes = space.sample(seed)
        kinds |= {t for stack in genes.values() for t in stack["type"]}
        result = check_subnet(space, genes, target, seq_len=8, seed=seed)
        assert result.ran and result.ok, (space.describe(genes), result.to_json())
    assert kinds == {"attention", "lsra"}


def test_lite_transformer_encoder_compiles(target):
    from canao.codegen.build import build
    from canao.frontends import from_torch

    torch.manual_seed(0)
    model = LiteTransformerEncoder(vocab_size=100, dim=32, layers=2, heads=4, kernel_sizes=(3, 7), conv_heads=4,
                                   conv="lightweight").eval()
    inputs = {"input_ids": np.random.default_rng(0).integers(0, 100, size=(1, 8)).astype("int64")}
    imported = from_torch(model, inputs, name="lite")
    compiled = build(imported, target, pipeline="canao")
    out = run_vm(compiled, [inputs["input_ids"]])
    np.testing.assert_allclose(out, imported.reference(inputs), rtol=0, atol=1e-4)


def test_compiled_decoder_step_matches_pytorch(target):
    """Encoder once, then the fixed-shape step three times, state fed back as the VM returned it."""
    from canao.codegen.build import build
    from canao.frontends import from_torch
    from canao.nas.spaces.decoder_step import CachedEncoder, DecoderStep, step_inputs, torch_decode

    space = load_space("hat_tiny")
    genes = space.sample(1)
    genes["decoder"]["type"] = ["lsra"] * genes["decoder"]["layers"]  # the stateful case
    sub = space.to_subnet(genes)
    beam, steps = 2, 3
    encoder, step = CachedEncoder(sub, beam), DecoderStep(sub, beam, steps)
    src = np.random.default_rng(0).integers(4, 64, size=(1, 6)).astype("int64")
    prev = np.random.default_rng(1).integers(4, 64, size=(beam, steps)).astype("int64")
    cross_names = [n for n, _ in step.cross_specs(src.shape[1])]
    enc_build = build(from_torch(encoder, {"src_tokens": src}, name="hat-encoder"), target)
    cross = dict(zip(cross_names, run_vm(enc_build, [src])))
    cache = step.zero_cache()
    example = step_inputs(step, prev[:, :1], 0, cross, cache)
    step_import = from_torch(step, example, name="hat-step")
    step_build = build(step_import, target)
    got = []
    for t in range(steps):
        inputs = step_inputs(step, prev[:, t:t + 1], t, cross, cache)
        out = run_vm(step_build, [inputs[s.name] for s in step_import.inputs])
        got.append(out[0])
        cache = dict(zip(cache, out[1:]))
    np.testing.assert_allclose(np.stack(got), torch_decode(encoder, step, src, prev), rtol=0, atol=1e-4)


def _cli(*args):
    code = ("import sys, argparse\nfrom canao.nas import cli\nfrom canao.errors import CanaoError\n"
            "p = argparse.ArgumentParser(prog='canao'); cli.register(p.add_subparsers())\n"
            "a = p.parse_args(sys.argv[1:])\n"
            "try:\n    sys.exit(a.func(a))\n"
            "except CanaoError as e:\n    print('canao: error: ' + e.one_line(), file=sys.stderr); sys.exit(2)\n")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)


def test_cli_sample_prints_genes_params_macs_and_checks():
    proc = _cli("space", "sample", "hat_tiny", "-n", "2", "--seed", "4", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    space = load_space("hat_tiny")
    for row in rows:
        assert space.validate(row["genes"]) == row["genes"]
        assert {"params": row["params"], "macs": row["macs"]} == space.count(row["genes"])
    again = _cli("space", "sample", "hat_tiny", "-n", "2", "--seed", "4", "--json")
    assert again.stdout == proc.stdout  # seeded: same SubTransformers
    checked = _cli("space", "sample", "bert_minilm_small", "-n", "1", "--check", "--seq-len", "8")
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert "max|err|" in checked.stdout and " yes " in checked.stdout


def test_cli_bad_config_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("space: hat\nmodel: {vocab_size: 10, qkv_dim: 30}\n")
    proc = _cli("space", "sample", str(bad), "-n", "1")
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("canao: error: bad.yaml") and "(fix: " in last
