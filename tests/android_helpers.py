"""Test helpers (only tests use them, so they live here): the emulated device or a clear skip, tiny models, artifacts.

``CANAO_REQUIRE_DEVICE=1`` (CI) turns every "skip" into a failure: there the device must exist.
"""
import json
import os
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from canao.errors import CanaoError

from canao.android_runner.provision import Emulator, ensure_emulator, tools_missing


def device_required() -> bool:
    return os.environ.get("CANAO_REQUIRE_DEVICE", "").strip() not in ("", "0", "false", "no")


def emulator_or_skip() -> Emulator:
    """The ready emulated device (set up on first use), or pytest.skip with the reason.

    Skips only when qemu / the cross compiler are absent and CANAO_REQUIRE_DEVICE is not set.
    """
    import pytest

    missing = tools_missing()
    if missing and not device_required():
        pytest.skip(f"emulated aarch64 device unavailable: {', '.join(missing)} not installed "
                    "(run `python -m canao.android_runner.provision`, or set CANAO_REQUIRE_DEVICE=1 to fail instead)")
    try:
        return ensure_emulator()
    except CanaoError as exc:
        if device_required():
            raise
        pytest.skip(f"emulated aarch64 device could not be set up: {exc.one_line()}")


def tiny_bert(seq_len: int = 32, seed: int = 0, name: str = "tiny-bert"):
    """A 2-layer BERT (hidden 128) from a transformers config with seeded weights, imported with
    canao.frontends.from_torch; its ``reference`` is PyTorch's last_hidden_state."""
    import torch
    from transformers import BertConfig, BertModel

    from canao.frontends import from_torch

    torch.manual_seed(seed)
    config = BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
                        vocab_size=1000, max_position_embeddings=max(64, seq_len))

    class LastHidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = BertModel(config).eval()

        def forward(self, input_ids, attention_mask):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    rng = np.random.default_rng(seed)
    mask = np.ones((1, seq_len), "int64")
    mask[0, seq_len * 3 // 4:] = 0  # padded tail: the attention mask really matters
    inputs = {"input_ids": rng.integers(1, 1000, (1, seq_len)).astype("int64"), "attention_mask": mask}
    return from_torch(LastHidden().eval(), inputs, name), inputs


def tiny_mlp(width: int = 64, seed: int = 0, name: str = "tiny-mlp"):
    """A two-layer GELU MLP (fast to build): enough for farm and fault tests."""
    import torch

    from canao.frontends import from_torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(width, width * 2), torch.nn.GELU(), torch.nn.Linear(width * 2, width))

    class Named(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x):
            return self.net(x)

    inputs = {"x": np.random.default_rng(seed).standard_normal((4, width)).astype("float32")}
    return from_torch(Named().eval(), inputs, name), inputs


def write_artifact(folder, compiled, imported, inputs: Dict[str, np.ndarray],
                   target_arch: Optional[str] = None) -> Path:
    """Write the artifact contract (lib.so, params.npz, manifest.json, reference.npz) for tests;
    ``canao compile`` writes the full one."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    compiled.export(str(folder / "lib.so"))
    np.savez(folder / "params.npz", *compiled.params)
    reference = imported.reference(inputs)
    np.savez(folder / "reference.npz", **{f"input:{k}": v for k, v in inputs.items()}, output=reference)
    manifest = {"model": imported.name, "inputs": [s.to_json() for s in imported.inputs],
                "target": dict(compiled.target.to_json(), arch=target_arch or compiled.target.arch),
                "pipeline": compiled.pipeline, "reference": "reference.npz"}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return folder
