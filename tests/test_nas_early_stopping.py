"""Early stopping (``TrainSettings.patience``): the run stops once dev accuracy has not improved for
``patience`` epochs, keeps the best epoch's weights, and a resumed run stops at the same place."""
import pytest
import torch

from canao.nas.spaces import load_space
from canao.nas.training import trainer
from canao.nas.training.trainer import TrainSettings, early_stopped, train_classifier

TINY = dict(batch=16, lr=1e-4, seq_len=32, limit=32, dev_limit=16)


def test_early_stopped_rule():
    s = TrainSettings(epochs=6, patience=2)
    assert not early_stopped([{}] * 3, {"epoch": 2, "dev_accuracy": 0.8}, s)
    assert early_stopped([{}] * 4, {"epoch": 2, "dev_accuracy": 0.8}, s)
    assert not early_stopped([{}] * 5, {"epoch": 2, "dev_accuracy": 0.8}, TrainSettings(epochs=6))


@pytest.mark.parametrize("interrupt", [None, 2])
def test_training_stops_after_patience_and_keeps_best_epoch(tmp_path, monkeypatch, interrupt):
    scores = iter([0.6, 0.7, 0.65, 0.64, 0.9, 0.95, 0.99] * 2)
    monkeypatch.setattr(trainer, "torch_accuracy", lambda module, data: next(scores))
    space = load_space("bert_minilm_small")
    torch.manual_seed(0)
    module = space.to_subnet(space.smallest())
    s = TrainSettings(epochs=6, patience=2, **TINY)
    if interrupt:  # killed after two epochs, resumed from the checkpoint
        first = train_classifier(module, s, tmp_path, progress=False, stop_after_epochs=interrupt)
        assert not first["finished"]
    result = train_classifier(module, s, tmp_path, progress=False)
    assert result["finished"] and result["stopped_early"]
    assert [r["epoch"] for r in result["history"]] == [1, 2, 3, 4]
    assert result["best_epoch"] == 2 and result["dev_accuracy"] == 0.7
