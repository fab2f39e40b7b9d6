"""Fine-tuning one standalone classifier on the RT train split (the teacher, a found SubTransformer).

Loss = CE on labels, plus -- when teacher logits are given -- ``kd_weight`` x KL to the teacher's
softened logits (temperature T, scaled by T^2 as Hinton et al.). AdamW with linear warmup and decay.
The epoch with the best dev accuracy wins; with ``patience`` the run stops early once that many epochs
in a row did not beat it (the learning-rate schedule still spans ``epochs``, so a stopped run is the
prefix of the full one). A checkpoint after each epoch (atomic) makes the run
resumable; the batch order depends only on (seed, epoch), and the model has no dropout, so a resumed
run reproduces the uninterrupted one."""
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from . import checkpoint
from .data import encoded_split, epoch_batches, take
from .evaluate import torch_accuracy


@dataclass
class TrainSettings:
    epochs: int = 1              # one epoch: ~7 min on 2 idle cores, ~20 min while others train
    batch: int = 32
    lr: float = 8e-5
    warmup: float = 0.1          # share of all steps
    weight_decay: float = 0.01
    seq_len: int = 64
    seed: int = 0
    limit: Optional[int] = None  # train rows (None: all 6,826)
    dev_limit: Optional[int] = None
    kd_weight: float = 0.0       # 0: plain CE
    temperature: float = 2.0
    freeze_word_embeddings: bool = True  # 11.7M of MiniLM's 22.7M weights; RT is small
    patience: Optional[int] = None  # early stopping: stop after this many epochs without a better dev accuracy

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def linear_schedule(optimizer, warmup_steps: int, total_steps: int):
    import torch

    def factor(step):
        if step < warmup_steps:
            return (step + 1) / max(warmup_steps, 1)
        return max(0.0, (total_steps - step) / max(total_steps - warmup_steps, 1))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def kd_loss(logits, labels, teacher_logits, kd_weight: float, temperature: float):
    """(1 - w) CE(labels) + w T^2 KL(teacher_T || student_T)."""
    import torch.nn.functional as F

    ce = F.cross_entropy(logits, labels)
    if teacher_logits is None or kd_weight == 0:
        return ce
    t = temperature
    kl = F.kl_div(F.log_softmax(logits / t, -1), F.log_softmax(teacher_logits / t, -1), log_target=True,
                  reduction="batchmean") * t * t
    return (1 - kd_weight) * ce + kd_weight * kl


def trainable(module, s: TrainSettings):
    params = []
    for name, p in module.named_parameters():
        freeze = s.freeze_word_embeddings and name.endswith("embeddings.word.weight")
        p.requires_grad_(not freeze)
        if not freeze:
            params.append(p)
    return params


def early_stopped(history: list, best: dict, s: TrainSettings) -> bool:
    """True when the last ``s.patience`` epochs did not improve on the best dev accuracy."""
    return bool(s.patience) and best["epoch"] is not None and len(history) - best["epoch"] >= s.patience


def train_classifier(module, s: TrainSettings, work_dir, teacher_logits: Optional[np.ndarray] = None,
                     progress: bool = True, stop_after_epochs: Optional[int] = None, desc: str = "train") -> dict:
    """Train ``module`` in place; returns the history and the best epoch (whose weights ``module`` ends with).

    ``teacher_logits``: (train rows, classes) soft targets aligned with ``encoded_split('train', ...)``.
    ``stop_after_epochs`` simulates an interrupt (tests)."""
    import torch
    from tqdm import tqdm

    torch.manual_seed(s.seed)
    train = encoded_split("train", s.seq_len, s.limit)
    dev = encoded_split("dev", s.seq_len, s.dev_limit)
    params = trainable(module, s)
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": s.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=s.lr)
    steps_per_epoch = len(epoch_batches(train, s.batch, s.seed, 0))
    total = steps_per_epoch * s.epochs
    sched = linear_schedule(opt, int(total * s.warmup), total)
    path = Path(work_dir) / f"checkpoint-{s.key()}.pt"
    state = checkpoint.load(path)
    history, best = [], {"dev_accuracy": -1.0, "epoch": None}
    best_weights = None
    if state is not None:
        module.load_state_dict(state["module"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history, best, best_weights = state["history"], state["best"], state["best_weights"]
    teacher = None if teacher_logits is None else torch.from_numpy(np.asarray(teacher_logits, dtype=np.float32))
    for epoch in range(len(history), s.epochs):
        if early_stopped(history, best, s):
            break
        if stop_after_epochs is not None and epoch >= stop_after_epochs:
            break
        module.train()
        start, losses = time.perf_counter(), []
        bar = tqdm(epoch_batches(train, s.batch, s.seed, epoch), desc=f"{desc} epoch {epoch + 1}/{s.epochs}",
                   unit="batch", disable=not progress, leave=False)
        for rows in bar:
            ids, mask, labels = take(train, rows)
            logits = module(input_ids=ids, attention_mask=mask)
            loss = kd_loss(logits, labels, None if teacher is None else teacher[rows], s.kd_weight, s.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        module.eval()
        acc = torch_accuracy(module, dev)
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "first_loss": losses[0],
               "dev_accuracy": acc, "seconds": time.perf_counter() - start}
        history.append(row)
        if acc > best["dev_accuracy"]:
            best = {"dev_accuracy": acc, "epoch": epoch + 1}
            best_weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
        checkpoint.save(path, {"module": module.state_dict(), "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict(), "history": history, "best": best,
                               "best_weights": best_weights, "settings": asdict(s)})
        if progress:
            tqdm.write(f"{desc} epoch {epoch + 1}: loss {row['train_loss']:.4f}, dev accuracy {acc:.4f} "
                       f"({row['seconds']:.0f} s)")
    finished = len(history) >= s.epochs or early_stopped(history, best, s)
    if finished and best_weights is not None:
        module.load_state_dict(best_weights)
    module.eval()
    return {"history": history, "best_epoch": best["epoch"], "dev_accuracy": best["dev_accuracy"],
            "finished": finished, "stopped_early": len(history) < s.epochs and finished, "settings": asdict(s), "checkpoint": str(path)}


def train_and_score(module, s: TrainSettings, work_dir, test_limit: Optional[int] = None, progress: bool = True,
                    stop_after_epochs: Optional[int] = None, desc: str = "train",
                    teacher_logits: Optional[np.ndarray] = None):
    """``train_classifier`` then test accuracy: (training result, metrics), or None when stopped
    early (``stop_after_epochs``). What the teacher and a fine-tuned student both record."""
    from .evaluate import accuracy, torch_predict

    result = train_classifier(module, s, work_dir, teacher_logits=teacher_logits, progress=progress,
                              stop_after_epochs=stop_after_epochs, desc=desc)
    if not result["finished"]:
        return None
    test = accuracy(torch_predict(module), "test", s.seq_len, limit=test_limit, progress=progress)
    metrics = {"dev_accuracy": result["dev_accuracy"], "test_accuracy": test, "best_epoch": result["best_epoch"],
               "train_seconds": sum(r["seconds"] for r in result["history"]), "test_limit": test_limit}
    return result, metrics
