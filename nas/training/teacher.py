"""The teacher: all-MiniLM-L6-v2 (real weights) + the supernet's mean-pool classifier, fine-tuned on
the RT train split until dev accuracy stops improving (``TEACHER_SETTINGS``); the best dev epoch is
kept and test accuracy is reported.

It is the supernet's LARGEST SubTransformer, so its weights can seed the supernet, and it is saved in
the SubTransformer folder format at ``teacher_dir()``, loadable with ``load_model(teacher_dir())``."""
import hashlib
from pathlib import Path
from typing import Optional

import numpy as np

from . import checkpoint
from .trainer import TrainSettings, train_and_score

SPACE = "bert_minilm"

# Trained to convergence: up to 6 epochs, stopped once 2 epochs in a row do not beat the best dev
# accuracy (~7 min per epoch on 2 idle cores). One epoch (the earlier default) left the teacher short,
# which flattered every student compared with it.
TEACHER_SETTINGS = TrainSettings(epochs=6, patience=2)


def teacher_dir() -> Path:
    """``$CANAO_CACHE/nas/teacher`` (default ``~/.cache/canao/nas/teacher``)."""
    return checkpoint.cache_root() / "nas" / "teacher"


def train_teacher(out=None, settings: Optional[TrainSettings] = None, progress: bool = True,
                  stop_after_epochs: Optional[int] = None, space=None,
                  test_limit: Optional[int] = None) -> Optional[Path]:
    """Fine-tune and save the teacher folder; resumes from ``OUT.work/`` after an interrupt.
    Returns the folder, or None when ``stop_after_epochs`` cut the run short."""
    from canao.nas.spaces import load_space

    from .folder import save_subtransformer

    out = Path(out or teacher_dir())
    s = settings or TEACHER_SETTINGS
    space = space or load_space(SPACE)
    genes = space.largest()
    module = space.to_subnet(genes)
    scored = train_and_score(module, s, out.with_name(out.name + ".work"), test_limit, progress,
                             stop_after_epochs, desc="teacher")
    if scored is None:
        return None
    result, metrics = scored
    save_subtransformer(out, space, genes, module, {"role": "teacher", "seq_len": s.seq_len, "metrics": metrics,
                                                    "training": result})
    return out


def ensure_teacher(folder=None, settings: Optional[TrainSettings] = None, progress: bool = True) -> Path:
    """The teacher folder, trained first if it does not exist yet."""
    from .folder import is_subtransformer

    folder = Path(folder or teacher_dir())
    if not is_subtransformer(folder):
        train_teacher(folder, settings, progress)
    return folder


def load_teacher(folder=None):
    """The teacher's torch module (eval mode)."""
    from .folder import load_subtransformer

    return load_subtransformer(ensure_teacher(folder))[2]


def teacher_logits(part: str = "train", seq_len: int = 64, limit: Optional[int] = None, folder=None,
                   batch: int = 64) -> np.ndarray:
    """The teacher's logits on one split part (rows aligned with ``encoded_split``), cached beside the
    teacher under a key of its weights, so the supernet's KD and every fine-tune compute them once."""
    import torch

    from .data import encoded_split, ordered_batches, take

    folder = ensure_teacher(folder)
    digest = hashlib.sha256((folder / "weights.pt").read_bytes()).hexdigest()[:16]
    cache = folder.with_name(folder.name + ".logits") / f"{digest}-{part}-s{seq_len}-n{limit}.npy"
    if cache.is_file():
        return np.load(cache)
    module = load_teacher(folder)
    data = encoded_split(part, seq_len, limit)
    out = np.zeros((len(data), module.classifier.out_features), dtype=np.float32)
    with torch.no_grad():
        for rows in ordered_batches(data, batch):
            ids, mask, _ = take(data, rows)
            out[rows] = module(input_ids=ids, attention_mask=mask).numpy()
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, out)
    tmp.replace(cache)
    return out


if __name__ == "__main__":
    import json

    from .folder import read_meta

    path = ensure_teacher()
    print(path, json.dumps(read_meta(path)["metrics"]))
