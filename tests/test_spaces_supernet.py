"""Weight sharing: supernet forward with genes == materialized SubTransformer == independent references."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from canao.nas.spaces import load_config, load_space
from canao.nas.spaces.decoder_step import CachedEncoder, DecoderStep, torch_decode
from canao.nas.spaces.lsra import DynamicConv, LightweightConv, LiteTransformerEncoder


def _inputs(space, seq_len, seed=0):
    return {k: torch.from_numpy(v) for k, v in space.example_inputs(seq_len, seed=seed).items()}


@pytest.fixture(scope="module")
def hat():
    return load_space("hat_tiny")


@pytest.fixture(scope="module")
def bert():
    return load_space("bert_minilm")


def test_hat_supernet_equals_materialized_subnet(hat):
    inputs = _inputs(hat, 10)
    sizes = set()
    for seed in range(6):
        genes = hat.sample(seed)
        with torch.no_grad():
            shared = hat.supernet()(genes, **inputs)
            standalone = hat.to_subnet(genes)(**inputs)
        torch.testing.assert_close(standalone, shared, rtol=0, atol=1e-6)
        sizes.add(sum(p.numel() for p in hat.to_subnet(genes).parameters()))
    assert len(sizes) > 1


def test_hat_weight_sharing_is_front_slicing(hat):
    """Gradients through a SubTransformer land only in the front slice [:out, :in] of shared weights."""
    genes = hat.smallest()
    supernet = hat.supernet()
    supernet.zero_grad()
    supernet(genes, **_inputs(hat, 8)).square().mean().backward()
    d, f = genes["encoder"]["embed"], genes["encoder"]["ffn"][0]
    grad = supernet.body.encoder.layers[0].ffn.fc1.weight.grad
    assert grad[:f, :d].abs().sum() > 0
    assert grad[f:, :].abs().sum() == 0 and grad[:, d:].abs().sum() == 0
    supernet.zero_grad()
    sub = hat.to_subnet(genes)
    assert sub.encoder.layers[0].ffn.fc1.weight.shape == (f, d)
    torch.testing.assert_close(sub.encoder.layers[0].ffn.fc1.weight,
                               supernet.body.encoder.layers[0].ffn.fc1.weight[:f, :d], rtol=0, atol=0)
    with torch.no_grad():  # its own copy: editing it leaves the supernet alone
        sub.encoder.layers[0].ffn.fc1.weight.add_(1.0)
    assert not torch.equal(sub.encoder.layers[0].ffn.fc1.weight, supernet.body.encoder.layers[0].ffn.fc1.weight[:f, :d])


def test_arbitrary_encoder_decoder_attention_uses_last_layers(hat):
    genes = hat.largest()
    sub = hat.to_subnet(genes)
    states = [torch.full((1, 4, 32), float(i)) for i in range(3)]
    for k in (1, 2, 3):
        sub.decoder.layers[0].ende_attn = k
        memory = sub.decoder.layers[0].memory(states)
        assert memory.shape[1] == 4 * k
        assert sorted({int(v) for v in memory[0, :, 0]}) == list(range(3 - k, 3))


def test_bert_largest_is_minilm(bert):
    """The largest SubTransformer equals transformers' BertModel on MiniLM's real weights (padding too)."""
    from transformers import BertModel

    from canao.zoo import minilm_dir

    hf = BertModel.from_pretrained(str(minilm_dir())).eval()
    inputs = _inputs(bert, 16, seed=3)
    inputs["attention_mask"][:, 12:] = 0
    genes = bert.largest()
    assert genes["encoder"]["hidden"] == 384 and genes["encoder"]["heads"] == [12] * 6
    with torch.no_grad():
        ref = hf(**inputs).last_hidden_state[:, :12]
        shared = bert.supernet()(genes, **inputs)
        ours = bert.to_subnet(genes).encode(**inputs)[:, :12]
        logits = bert.to_subnet(genes)(**inputs)
    torch.testing.assert_close(ours, ref, rtol=0, atol=2e-5)
    torch.testing.assert_close(shared, logits, rtol=0, atol=1e-6)


def test_bert_smaller_hidden_slices_embeddings_and_layernorm_like_a_smaller_bert(bert):
    """A homogeneous SubTransformer == a smaller transformers BertModel holding the front slices."""
    from transformers import BertConfig, BertModel

    h, heads, ffn, layers = 192, 6, 768, 3
    genes = {"encoder": {"hidden": h, "layers": layers, "ffn": [ffn] * layers, "heads": [heads] * layers,
                         "type": ["attention"] * layers}}
    sub = bert.to_subnet(genes)
    config = BertConfig(hidden_size=h, num_attention_heads=heads, intermediate_size=ffn, num_hidden_layers=layers,
                        max_position_embeddings=512, vocab_size=30522, layer_norm_eps=1e-12)
    hf = BertModel(config, add_pooling_layer=False).eval()
    body = dict(bert.supernet().body.named_parameters())
    from canao.nas.spaces.bert import HF_EMBEDDING_NAMES as names, HF_LAYER_NAMES as per_layer

    with torch.no_grad():
        for name, p in hf.named_parameters():
            stem, _, leaf = name.rpartition(".")
            if stem in names:
                src = f"{names[stem]}.{leaf}"
            else:
                idx, _, rest = stem[len("encoder.layer."):].partition(".")
                src = f"layers.{idx}.{per_layer[rest]}.{leaf}"
            p.copy_(body[src][tuple(slice(0, s) for s in p.shape)])
    inputs = _inputs(bert, 16, seed=5)
    with torch.no_grad():
        ref = hf(**inputs).last_hidden_state
        ours = sub.encode(**inputs)
    torch.testing.assert_close(ours, ref, rtol=0, atol=2e-5)


def test_bert_supernet_equals_materialized_subnet(bert):
    inputs = _inputs(bert, 16)
    inputs["attention_mask"][:, 13:] = 0
    kinds = set()
    for seed in range(4):
        genes = bert.sample(seed)
        kinds |= set(genes["encoder"]["type"])
        with torch.no_grad():
            shared = bert.supernet()(genes, **inputs)
            standalone = bert.to_subnet(genes)(**inputs)
        torch.testing.assert_close(standalone, shared, rtol=0, atol=1e-6)
    assert kinds == {"attention", "lsra"}


def _conv_reference(x, kernels, causal):
    """Depthwise conv as an explicit loop: out[t, c] = sum_i w[t, head(c), i] * x[t - left + i, c]."""
    b, t, c = x.shape
    k = kernels.shape[-1]
    heads = kernels.shape[-2]
    left = k - 1 if causal else k // 2
    out = torch.zeros_like(x)
    for pos in range(t):
        for i in range(k):
            src = pos - left + i
            if 0 <= src < t:
                w = kernels[:, pos, :, i].repeat_interleave(c // heads, dim=-1)  # (B, C)
                out[:, pos] += w * x[:, src]
    return out


@pytest.mark.parametrize("causal", [False, True])
def test_lsra_convolutions_match_an_explicit_loop(causal):
    torch.manual_seed(0)
    x = torch.randn(2, 9, 8)
    light = LightweightConv(8, 5, 2, causal=causal)
    kernels = F.softmax(light.weight, -1)[None, None].expand(2, 9, 2, 5)
    torch.testing.assert_close(light(x), _conv_reference(x, kernels, causal), rtol=0, atol=1e-6)
    dyn = DynamicConv(8, 5, 2, causal=causal)
    torch.testing.assert_close(dyn(x), _conv_reference(x, dyn.kernels(x), causal), rtol=0, atol=1e-6)
    assert torch.allclose(dyn.kernels(x).sum(-1), torch.ones(2, 9, 2))  # softmax-normalized taps


def test_lite_transformer_encoder_standalone():
    torch.manual_seed(0)
    model = LiteTransformerEncoder(vocab_size=100, dim=32, layers=2, heads=4, kernel_sizes=(3, 7), conv_heads=4).eval()
    ids = torch.randint(0, 100, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 9:] = 0
    with torch.no_grad():
        full = model(ids, mask)
        alone = model(ids[1:, :9])  # padding must not leak into real tokens
    assert full.shape == (2, 12, 32)
    torch.testing.assert_close(full[1:, :9], alone, rtol=0, atol=1e-5)


@pytest.mark.parametrize("conv", ["dynamic", "lightweight"])
def test_cached_decoder_step_equals_full_forward(conv):
    config = load_config("hat_tiny")
    config["lsra"]["conv"] = conv
    space = load_space(config)
    rng = np.random.default_rng(0)
    kinds = set()
    for seed in range(4):
        genes = space.sample(seed)
        kinds |= set(genes["decoder"]["type"])
        sub = space.to_subnet(genes)
        src = rng.integers(4, 64, size=(1, 7))
        prev = rng.integers(4, 64, size=(2, 6))
        steps = torch_decode(CachedEncoder(sub, 2), DecoderStep(sub, 2, 6), src, prev)
        with torch.no_grad():
            full = sub(torch.from_numpy(src).repeat(2, 1), torch.from_numpy(prev)).numpy()
        np.testing.assert_allclose(steps.transpose(1, 0, 2), full, rtol=0, atol=2e-5)
    assert kinds == {"attention", "lsra"}
