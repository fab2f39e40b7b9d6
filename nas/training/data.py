"""The RT split tokenized once, and length-bucketed seeded batches.

RT sentences average ~27 tokens, so a batch is trimmed to its longest row: mean pooling and the
attention mask ignore padding, so the logits do not change, and training costs about half of
padding everything to 64. The batch order is a pure function of (seed, epoch): a resumed run sees
the same batches as an uninterrupted one."""
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator, List, Optional

import numpy as np


@dataclass(frozen=True)
class Encoded:
    input_ids: np.ndarray  # (N, seq_len) int64
    attention_mask: np.ndarray
    labels: np.ndarray  # (N,) int64

    def __len__(self):
        return len(self.labels)

    def lengths(self) -> np.ndarray:
        return self.attention_mask.sum(1)


@lru_cache(maxsize=8)
def encoded_split(part: str, seq_len: int = 64, limit: Optional[int] = None) -> Encoded:
    """One split part, tokenized with MiniLM's tokenizer to ``seq_len`` (cached per process)."""
    from canao.nas.data_split import split_rows
    from canao.text import tokenize
    from canao.zoo import minilm_dir

    texts, labels = split_rows(part, limit=limit)
    enc = tokenize(str(minilm_dir()), texts, seq_len, ["input_ids", "attention_mask"])
    return Encoded(enc["input_ids"], enc["attention_mask"], labels)


def epoch_batches(data: Encoded, batch: int, seed: int, epoch: int, bucket: int = 50) -> List[np.ndarray]:
    """Row indices per batch: shuffled, then sorted by length inside windows of ``bucket`` batches
    (similar lengths share a batch), and the batches shuffled again."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(data))
    lengths = data.lengths()
    out = []
    window = batch * bucket
    for start in range(0, len(order), window):
        chunk = order[start:start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        out += [chunk[i:i + batch] for i in range(0, len(chunk), batch)]
    return [out[i] for i in rng.permutation(len(out))]


def take(data: Encoded, rows: np.ndarray):
    """Torch tensors (input_ids, attention_mask, labels) of ``rows``, trimmed to their longest row."""
    import torch

    width = max(int(data.lengths()[rows].max()), 1)
    return (torch.from_numpy(data.input_ids[rows, :width]), torch.from_numpy(data.attention_mask[rows, :width]),
            torch.from_numpy(data.labels[rows]))


def ordered_batches(data: Encoded, batch: int) -> Iterator[np.ndarray]:
    """Evaluation order: sorted by length (fast), every row once."""
    order = np.argsort(data.lengths(), kind="stable")
    for i in range(0, len(order), batch):
        yield order[i:i + batch]
