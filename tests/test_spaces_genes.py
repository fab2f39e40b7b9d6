"""Gene encoding, sampling/mutation/crossover, config validation and counting of the search spaces."""
import json
import random

import pytest
import torch
import yaml

from canao.errors import CanaoError
from canao.nas.spaces import load_config, load_space

ALL_CONFIGS = ["hat_wmt14_en_de", "hat_lsra_wmt14_en_de", "bert_minilm", "hat_tiny", "bert_minilm_small"]


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_sampling_is_deterministic_and_valid(name):
    space = load_space(name)
    first = [space.sample(seed) for seed in range(8)]
    assert first == [space.sample(seed) for seed in range(8)]
    assert len({space.to_json(g) for g in first}) > 1  # different seeds explore
    rng = random.Random(7)
    for g in first:
        assert space.validate(g) == g
        for _ in range(5):
            child = space.mutate(g, 0.3, rng)
            assert space.validate(child) == child
            other = space.crossover(g, space.sample(rng), rng)
            assert space.validate(other) == other
    assert space.mutate(first[0], 0.0, rng) == first[0]
    assert space.crossover(first[0], first[0], rng) == first[0]


def test_genes_json_is_stable_and_canonical():
    space = load_space("hat_wmt14_en_de")
    genes = space.sample(3)
    text = space.to_json(genes)
    shuffled = {k: dict(reversed(list(v.items()))) for k, v in reversed(list(genes.items()))}
    assert space.to_json(shuffled) == text
    assert space.from_json(text) == genes
    for stack in genes.values():  # canonical: one value per existing layer, never padding
        assert all(len(v) == stack["layers"] for v in stack.values() if isinstance(v, list))


def test_hat_space_is_hats():
    space = load_space("hat_wmt14_en_de")
    s_enc, s_dec = space.schemas
    assert s_enc.widths["embed"] == (640, 512) and s_dec.widths["embed"] == (640, 512)
    assert s_enc.per_layer["ffn"] == (3072, 2048, 1024) and s_dec.per_layer["heads"] == (8, 4)
    assert s_dec.depth == (6, 5, 4, 3, 2, 1) and s_dec.per_layer["ende_attn"] == (1, 2, 3)
    assert s_dec.per_layer["ende_heads"] == (8, 4)


def _one_line(exc_info, *needles):
    text = exc_info.value.one_line()
    assert "\n" not in text and "(fix: " in text, text
    for n in needles:
        assert n in text, (n, text)


def test_bad_genes_are_one_line_errors():
    space = load_space("hat_wmt14_en_de")
    good = space.sample(0)
    bad_value = json.loads(json.dumps(good))
    bad_value["encoder"]["ffn"][0] = 999
    with pytest.raises(CanaoError) as e:
        space.validate(bad_value)
    _one_line(e, "encoder.ffn[0]", "999", "3072")
    bad_len = json.loads(json.dumps(good))
    bad_len["decoder"]["heads"].append(8)
    with pytest.raises(CanaoError) as e:
        space.validate(bad_len)
    _one_line(e, "decoder.heads", "decoder.layers")
    missing = json.loads(json.dumps(good))
    del missing["decoder"]["ende_attn"]
    with pytest.raises(CanaoError) as e:
        space.validate(missing)
    _one_line(e, "ende_attn")
    bad_type = json.loads(json.dumps(good))
    bad_type["encoder"]["type"][0] = "lsra"  # HAT's own space has attention only
    with pytest.raises(CanaoError) as e:
        space.validate(bad_type)
    _one_line(e, "lsra")
    with pytest.raises(CanaoError) as e:
        space.from_json("{not json")
    _one_line(e, "JSON")


BAD_CONFIGS = [
    ("hat_wmt14_en_de", ("encoder", "heads"), [8, 3], "does not divide"),
    ("hat_wmt14_en_de", ("decoder", "ende_attn"), [1, 2, 7], "ende_attn"),
    ("hat_wmt14_en_de", ("encoder", "type"), ["attention", "conv"], "type"),
    ("hat_wmt14_en_de", ("encoder", "ffn"), [], "non-empty"),
    ("hat_wmt14_en_de", ("encoder", "colour"), [1], "colour"),
    ("hat_lsra_wmt14_en_de", ("lsra", "kernel_sizes"), [3, 4, 15, 31, 31, 31], "odd"),
    ("hat_lsra_wmt14_en_de", ("lsra", "kernel_sizes"), [3, 7], "kernel"),
    ("bert_minilm", ("encoder", "hidden"), [512, 384], "MiniLM"),
    ("bert_minilm", ("encoder", "heads"), [12, 5], "even"),
    ("bert_minilm", ("model", "init"), "bert-base", "init"),
]


@pytest.mark.parametrize("name,key,value,needle", BAD_CONFIGS)
def test_bad_configs_are_one_line_errors(tmp_path, name, key, value, needle):
    config = load_config(name)
    config.pop("_source")
    config[key[0]][key[1]] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(CanaoError) as e:
        load_space(str(path))
    _one_line(e, "bad.yaml", needle)


def test_unknown_space_and_missing_file(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("space: gpt\n")
    with pytest.raises(CanaoError) as e:
        load_space(str(path))
    _one_line(e, "gpt")
    with pytest.raises(CanaoError) as e:
        load_space(str(tmp_path / "missing.yaml"))
    _one_line(e, "missing.yaml", "hat_wmt14_en_de")


EXCLUDED = ("embed_tokens", "positions", "embeddings.", "classifier")


@pytest.mark.parametrize("name", ["hat_lsra_wmt14_en_de", "bert_minilm"])
def test_param_count_matches_the_built_module(name):
    """The closed-form count equals numel of the SubTransformer's module (embeddings/output left out)."""
    space = load_space(name)
    for seed in range(6):
        genes = space.sample(seed)
        with torch.device("meta"):
            module = space.build(genes)
        numel = sum(p.numel() for n, p in module.named_parameters() if not n.startswith(EXCLUDED)
                    and ".embed_tokens" not in n)
        assert space.count(genes)["params"] == numel, space.describe(genes)


@pytest.mark.parametrize("conv", ["lightweight"])
def test_mac_count_matches_torch_flop_counter(conv):
    """MACs = half the FLOPs torch counts for matmuls/convs, minus the vocabulary projection."""
    from torch.utils.flop_counter import FlopCounterMode

    config = load_config("hat_tiny")
    config["lsra"]["conv"] = conv
    space = load_space(config)
    s, t = space.count_lengths["src_len"], space.count_lengths["tgt_len"]
    for seed in range(4):
        genes = space.sample(seed)
        module = space.to_subnet(genes)
        src = torch.randint(4, 60, (1, s))
        prev = torch.randint(4, 60, (1, t))
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            module(src, prev)
        output_layer = t * genes["decoder"]["embed"] * space.model["vocab_size"]
        assert counter.get_total_flops() // 2 - output_layer == space.count(genes)["macs"], space.describe(genes)
