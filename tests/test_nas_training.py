"""Teacher, SubTransformer folder, supernet KD and canao finetune on tiny budgets (a few steps, small
subsets, seq_len 32): learning happens, KD touches only what a SubTransformer uses, resuming equals the
uninterrupted run, and a folder compiles with TVM to the torch module's logits."""
import argparse
import json

import numpy as np
import pytest
import torch

from canao.errors import CanaoError
from canao.nas.spaces import load_space
from canao.nas.training.data import encoded_split
from canao.nas.training.distill import (DistillSettings, load_supernet, make_optimizer, sandwich_step,
                                        train_supernet)
from canao.nas.training.evaluate import accuracy, torch_predict
from canao.nas.training.folder import load_subtransformer, read_meta
from canao.nas.training.teacher import teacher_logits, train_teacher
from canao.nas.training.trainer import TrainSettings

SEQ = 32
TINY_TEACHER = TrainSettings(epochs=1, batch=16, lr=1e-4, seq_len=SEQ, limit=48, dev_limit=16)
TINY_KD = DistillSettings(steps=2, batch=8, seq_len=SEQ, limit=16, checkpoint_every=1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private $CANAO_CACHE holding a tiny teacher (4 steps on 64 sentences)."""
    root = tmp_path_factory.mktemp("canao-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CANAO_CACHE", str(root))
        from canao.nas.training.teacher import teacher_dir

        train_teacher(teacher_dir(), TINY_TEACHER, progress=False, test_limit=16)
        yield teacher_dir()


@pytest.fixture(scope="module")
def small():
    return load_space("bert_minilm_small")


def cross_entropy(module, data):
    with torch.no_grad():
        logits = module(input_ids=torch.from_numpy(data.input_ids), attention_mask=torch.from_numpy(data.attention_mask))
        return float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(data.labels)))


def test_teacher_training_lowers_the_loss_on_its_sentences(cache):
    space, genes, trained, meta = load_subtransformer(cache)
    assert genes == space.largest() and meta["role"] == "teacher"
    start = load_space("bert_minilm").to_subnet(genes)
    data = encoded_split("train", SEQ, 48)
    assert cross_entropy(trained, data) < cross_entropy(start, data) - 0.01
    m = meta["metrics"]
    assert 0 <= m["test_accuracy"] <= 1 and m["best_epoch"] == 1
    # the stored test accuracy is what accuracy() gives for the saved module
    assert m["test_accuracy"] == accuracy(torch_predict(trained), "test", SEQ, limit=16)


def test_kd_step_changes_only_the_slices_a_small_subtransformer_uses(small, cache):
    supernet = small.make_supernet().train()
    genes = small.smallest()
    s = DistillSettings(seq_len=SEQ)
    opt = make_optimizer(supernet, s)
    before = {k: v.detach().clone() for k, v in supernet.body.state_dict().items()}
    data = encoded_split("train", SEQ, 8)
    soft = torch.from_numpy(teacher_logits("train", SEQ, 8, cache))
    ids, mask = torch.from_numpy(data.input_ids), torch.from_numpy(data.attention_mask)
    sandwich_step(supernet, [genes], ids, mask, torch.from_numpy(data.labels), soft, opt, s)
    skeleton = supernet.skeleton(genes)
    used = {n: t.shape for n, t in skeleton.state_dict().items()}
    after = supernet.body.state_dict()
    changed_used = 0
    for name, old in before.items():
        new = after[name]
        if name in used and not name.endswith("embeddings.word.weight"):
            inside = tuple(slice(0, d) for d in used[name])
            changed_used += int(not torch.equal(new[inside], old[inside]))
            outside = old.clone()
            outside[inside] = new[inside]
            assert torch.equal(new, outside), f"{name} changed outside the SubTransformer's slice"
        else:
            assert torch.equal(new, old), f"{name} is not used by the SubTransformer but changed"
    assert changed_used > 0.8 * len([n for n in used if not n.endswith("embeddings.word.weight")])


@pytest.fixture(scope="module")
def trained_supernet(small, cache, tmp_path_factory):
    """Two uninterrupted KD steps on 16 sentences."""
    return train_supernet(small, tmp_path_factory.mktemp("kd") / "supernet.pt", TINY_KD, cache, progress=False)


def test_supernet_resume_after_interrupt_equals_the_uninterrupted_run(small, cache, trained_supernet, tmp_path):
    assert train_supernet(small, tmp_path / "supernet.pt", TINY_KD, cache, progress=False, stop_after_steps=1) is None
    resumed = train_supernet(small, tmp_path / "supernet.pt", TINY_KD, cache, progress=False)
    a, b = load_supernet(trained_supernet).body.state_dict(), load_supernet(resumed, small).body.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    fresh = small.make_supernet().body.state_dict()
    assert any(not torch.equal(a[k], fresh[k]) for k in a)  # training did something


def test_dev_accuracy_of_a_trained_supernet_matches_its_materialized_subnet(small, trained_supernet):
    from canao.nas.fitness import DevAccuracy

    genes = small.sample(5)
    fit = DevAccuracy(small, SEQ, limit=48, supernet=str(trained_supernet))
    sub = load_supernet(trained_supernet, small).materialize(genes)
    assert fit(genes) == accuracy(torch_predict(sub), "dev", SEQ, limit=48)


def finetune_parser():
    from canao.nas import finetune_cli

    parser = argparse.ArgumentParser()
    finetune_cli.register(parser.add_subparsers())
    return parser


def test_finetune_cli_writes_a_folder_that_compiles_to_the_torch_logits(small, cache, tmp_path):
    from canao.codegen import resolve_target
    from canao.codegen.build import build
    from canao.frontends import load_model
    from canao.runtime import LocalModel

    genes = tmp_path / "best_genes.json"
    genes.write_text(json.dumps(small.smallest()))
    out = tmp_path / "student"
    args = finetune_parser().parse_args(["finetune", str(genes), "--space", "bert_minilm_small", "-o", str(out),
                                         "--seq-len", str(SEQ), "--limit", "32", "--dev-limit", "16",
                                         "--test-limit", "15", "--batch", "16"])
    assert args.func(args) == 0
    meta = read_meta(out)
    assert meta["genes"] == small.smallest() and meta["teacher"] == str(cache)
    _, _, module, _ = load_subtransformer(out)
    imported = load_model(str(out), seq_len=SEQ, batch=2)
    compiled = build(imported, resolve_target("x86"), "canao")
    model = LocalModel.from_compiled(compiled, imported.inputs)
    data = encoded_split("test", SEQ, 4)
    inputs = {"input_ids": data.input_ids[:2], "attention_mask": data.attention_mask[:2]}
    ref = torch_predict(module)(inputs)
    assert np.abs(model.run(inputs) - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())
    # the compiled model (fixed batch 2, odd test count) scores as the torch module does
    assert accuracy(model.run, "test", SEQ, limit=15, batch=2) == meta["metrics"]["test_accuracy"]


def test_finetune_cli_rejects_bad_input(small, tmp_path):
    parser = finetune_parser()
    bad_genes = parser.parse_args(["finetune", '{"encoder": {"hidden": 999}}', "--space", "bert_minilm_small",
                                   "-o", str(tmp_path / "x")])
    with pytest.raises(CanaoError):
        bad_genes.func(bad_genes)
    no_supernet = parser.parse_args(["finetune", json.dumps(small.smallest()), "--space", "bert_minilm_small",
                                     "-o", str(tmp_path / "y"), "--supernet", str(tmp_path / "missing.pt")])
    with pytest.raises(CanaoError, match="does not exist"):
        no_supernet.func(no_supernet)


def test_classifier_training_resumes_per_epoch_to_the_uninterrupted_state(small, tmp_path):
    from canao.nas.training.trainer import train_classifier

    s = TrainSettings(epochs=2, batch=16, seq_len=SEQ, limit=32, dev_limit=16)
    whole = small.to_subnet(small.smallest())
    done = train_classifier(whole, s, tmp_path / "a", progress=False)
    cut = small.to_subnet(small.smallest())
    assert not train_classifier(cut, s, tmp_path / "b", progress=False, stop_after_epochs=1)["finished"]
    resumed = small.to_subnet(small.smallest())  # a fresh process: weights come from the checkpoint
    again = train_classifier(resumed, s, tmp_path / "b", progress=False)
    def numbers(history):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in history]

    assert numbers(again["history"]) == numbers(done["history"]) and again["best_epoch"] == done["best_epoch"]
    a, b = whole.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
