"""Accuracy on the RT split for any engine: a compiled TVM model, a torch module, an ONNX Runtime session
or LiteRT are all scored by the same ``predict_fn(inputs) -> logits``."""
from typing import Callable, Dict, Optional

import numpy as np

PredictFn = Callable[[Dict[str, np.ndarray]], np.ndarray]


def accuracy(predict_fn: PredictFn, split: str = "test", seq_len: int = 64, limit: Optional[int] = None,
             batch: int = 32, progress: bool = False) -> float:
    """Share of correctly classified sentences of ``split``.

    ``predict_fn`` gets ``{"input_ids", "attention_mask"}`` as int64 arrays of exactly (batch, seq_len)
    -- the last batch is padded with repeats of its first row and the extra logits dropped -- so a model
    compiled for a fixed shape (even batch 1) can be scored."""
    from tqdm import tqdm

    from .data import encoded_split

    data = encoded_split(split, seq_len, limit)
    correct = 0
    starts = range(0, len(data), batch)
    for i in tqdm(starts, desc=f"{split} accuracy", unit="batch", disable=not progress, leave=False):
        rows = np.arange(i, min(i + batch, len(data)))
        n = len(rows)
        rows = np.concatenate([rows, np.full(batch - n, rows[0])])
        logits = np.asarray(predict_fn({"input_ids": data.input_ids[rows], "attention_mask": data.attention_mask[rows]}))
        if logits.ndim != 2 or logits.shape[0] != batch:
            from canao.errors import CanaoError

            raise CanaoError(f"predict_fn returned shape {logits.shape}, expected ({batch}, num_labels) logits",
                             "return the classifier logits, one row per sentence")
        correct += int((logits[:n].argmax(-1) == data.labels[rows[:n]]).sum())
    return correct / len(data)


def torch_predict(module) -> PredictFn:
    """A torch module ``(input_ids, attention_mask) -> logits`` as a predict_fn."""
    import torch

    module.eval()

    def predict(inputs):
        with torch.no_grad():
            return module(input_ids=torch.from_numpy(inputs["input_ids"]),
                          attention_mask=torch.from_numpy(inputs["attention_mask"])).numpy()
    return predict


def torch_accuracy(module_or_call, data, batch: int = 64) -> float:
    """Fast accuracy of a torch callable ``(input_ids=, attention_mask=) -> logits`` on an Encoded set
    (length-sorted, trimmed batches: what training uses for its dev checks)."""
    import torch

    from .data import ordered_batches, take

    correct = 0
    with torch.no_grad():
        for rows in ordered_batches(data, batch):
            ids, mask, labels = take(data, rows)
            correct += int((module_or_call(input_ids=ids, attention_mask=mask).argmax(-1) == labels).sum())
    return correct / len(data)
