"""Supernet training by knowledge distillation from the teacher (HAT / once-for-all "sandwich" rule).

Each step takes one batch and runs the largest, the smallest and ``random_subnets`` sampled
SubTransformers on the shared weights (front slices); each loss is ``(1-w) CE + w T^2 KL(teacher)``;
their gradients add up in the shared tensors, then one AdamW step. The supernet starts from the
teacher's weights, so the largest SubTransformer starts as good as the teacher.

Weight decay defaults to 0: AdamW decays a whole tensor whenever any slice of it has a gradient, which
would shrink the parts only larger SubTransformers use every time a small one trains.

Resumable: the state (shared weights, optimizer, scheduler, step, losses) is checkpointed atomically
every ``checkpoint_every`` steps; batches and sampled genes depend only on (seed, step)."""
import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

from canao.errors import CanaoError

from . import checkpoint
from .data import encoded_split, epoch_batches, take
from .trainer import kd_loss, linear_schedule


@dataclass
class DistillSettings:
    steps: int = 300
    batch: int = 32
    lr: float = 5e-5
    warmup: float = 0.05
    weight_decay: float = 0.0
    seq_len: int = 64
    seed: int = 0
    limit: Optional[int] = None
    random_subnets: int = 2
    kd_weight: float = 0.5
    temperature: float = 2.0
    checkpoint_every: int = 25
    freeze_word_embeddings: bool = True

    def key(self) -> str:
        fields = {k: v for k, v in asdict(self).items() if k != "checkpoint_every"}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def init_from_teacher(supernet, teacher_state: dict) -> List[str]:
    """Copy the teacher's tensors into the front of the supernet's same-named tensors; returns the names."""
    import torch

    from canao.nas.spaces.supernet import front_slice, named_tensors

    copied = []
    with torch.no_grad():
        for name, shared in named_tensors(supernet.body).items():
            if name in teacher_state:
                src = teacher_state[name]
                shape = [min(a, b) for a, b in zip(shared.shape, src.shape)]
                front_slice(shared, shape, name).copy_(front_slice(src, shape, name))
                copied.append(name)
    return copied


def step_genes(space, step: int, seed: int, random_subnets: int) -> list:
    """The sandwich of one step: largest, smallest, then seeded random SubTransformers."""
    rng = random.Random(seed * 1_000_003 + step)
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(random_subnets)]


def sandwich_step(supernet, genes_list, ids, mask, labels, teacher, optimizer, s: DistillSettings) -> List[float]:
    """One optimizer step over several SubTransformers on the same batch; returns each one's loss."""
    optimizer.zero_grad(set_to_none=True)
    losses = []
    for genes in genes_list:
        logits = supernet(genes, input_ids=ids, attention_mask=mask)
        loss = kd_loss(logits, labels, teacher, s.kd_weight, s.temperature)
        loss.backward()
        losses.append(loss.item())
    optimizer.step()
    return losses


def make_optimizer(supernet, s: DistillSettings):
    import torch

    params = []
    for name, p in supernet.body.named_parameters():
        p.requires_grad_(not (s.freeze_word_embeddings and name.endswith("embeddings.word.weight")))
        if p.requires_grad:
            params.append(p)
    return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)


def train_supernet(space, out, s: Optional[DistillSettings] = None, teacher_folder=None, progress: bool = True,
                   stop_after_steps: Optional[int] = None) -> Optional[Path]:
    """KD-train ``space``'s supernet from the teacher and save it to ``out`` (a .pt file for
    ``load_supernet`` / ``canao search --supernet``). Returns ``out``, or None if stopped early."""
    import torch
    from tqdm import tqdm

    from .folder import load_subtransformer
    from .teacher import ensure_teacher, teacher_logits

    s = s or DistillSettings()
    out = Path(out)
    teacher_folder = ensure_teacher(teacher_folder)
    _, _, teacher_module, _ = load_subtransformer(teacher_folder)
    supernet = space.make_supernet()  # a fresh copy: the space's cached one may be in use elsewhere
    init_from_teacher(supernet, teacher_module.state_dict())
    del teacher_module
    soft = torch.from_numpy(teacher_logits("train", s.seq_len, s.limit, teacher_folder))
    train = encoded_split("train", s.seq_len, s.limit)
    torch.manual_seed(s.seed)
    opt = make_optimizer(supernet, s)
    sched = linear_schedule(opt, int(s.steps * s.warmup), s.steps)
    ckpt = out.with_name(out.name + ".work") / f"checkpoint-{s.key()}.pt"
    state = checkpoint.load(ckpt)
    step, history = 0, []
    if state is not None:
        supernet.body.load_state_dict(state["body"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, history = state["step"], state["history"]
    supernet.train()
    per_epoch = epoch_batches(train, s.batch, s.seed, 0)
    start = time.perf_counter()
    bar = tqdm(total=s.steps, initial=step, desc="supernet KD", unit="step", disable=not progress)
    while step < s.steps:
        if stop_after_steps is not None and step >= stop_after_steps:
            break
        epoch, index = divmod(step, len(per_epoch))
        rows = epoch_batches(train, s.batch, s.seed, epoch)[index] if epoch else per_epoch[index]
        ids, mask, labels = take(train, rows)
        losses = sandwich_step(supernet, step_genes(space, step, s.seed, s.random_subnets), ids, mask, labels,
                               soft[rows], opt, s)
        sched.step()
        step += 1
        history.append(losses)
        bar.update(1)
        bar.set_postfix(largest=f"{np.mean([h[0] for h in history[-20:]]):.3f}",
                        smallest=f"{np.mean([h[1] for h in history[-20:]]):.3f}")
        if step % s.checkpoint_every == 0 or step == s.steps:
            checkpoint.save(ckpt, {"body": supernet.body.state_dict(), "optimizer": opt.state_dict(),
                                   "scheduler": sched.state_dict(), "step": step, "history": history})
    bar.close()
    if step < s.steps:
        return None
    config = {k: v for k, v in space.config.items() if not k.startswith("_")}
    checkpoint.save(out, {"format": "canao-supernet", "space": {"name": space.name, "config": config,
                                                                "source": space.config.get("_source")},
                          "body": supernet.body.state_dict(), "settings": asdict(s), "history": history,
                          "teacher": str(teacher_folder), "seconds_this_run": time.perf_counter() - start})
    return out


def load_supernet(path, space=None):
    """The trained Supernet of ``path`` (eval mode); ``space`` defaults to the one stored in the file."""
    from canao.nas.spaces import load_space

    state = checkpoint.load(path)
    if state is None or state.get("format") != "canao-supernet":
        raise CanaoError(f"{path} is not a trained supernet file",
                         "pass the file written by train_supernet (benchmarks/run_nas_pipeline.py writes supernet.pt)")
    if space is None:
        space = load_space(dict(state["space"]["config"], _source=state["space"].get("source") or str(path)))
    supernet = space.make_supernet()
    try:
        supernet.body.load_state_dict(state["body"], strict=True)
    except RuntimeError as exc:
        raise CanaoError(f"{path} was trained for another space than {space.name}: {str(exc).splitlines()[0][:160]}",
                         "pass the --space the supernet was trained with") from exc
    return supernet.eval()
