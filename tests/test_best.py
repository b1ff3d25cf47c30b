"""Best-model checkpointing: the right epoch, exact values, loadable files, resume."""

from __future__ import annotations

import json

import pytest
import torch

from _tiny_run import Recorder, blobs, trainer
from trainwell.errors import UserError
from trainwell.train import BestCheckpoint, load_best, load_checkpoint


def test_best_val_loss_file_holds_that_epochs_weights_and_value(tmp_path):
    rec, best = Recorder(), BestCheckpoint("val_loss", mode="min")
    t = trainer(tmp_path, [rec, best])
    history = t.fit(blobs())
    losses = [h["val_loss"] for h in history]
    i = min(range(3), key=lambda k: (losses[k], k))
    meta = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert (meta["epoch"], meta["value"], meta["monitor"], meta["mode"]) == (
        i + 1, losses[i], "val_loss", "min")
    assert meta["metrics"]["train_loss"] == history[i]["train_loss"]
    assert "grad_norms" not in meta["metrics"]
    tensors, _ = load_checkpoint(tmp_path / "checkpoints" / "best.json")  # hash verified
    assert sorted(tensors) == sorted(f"model/{k}" for k in rec.states[i])
    for k, v in rec.states[i].items():
        assert torch.equal(tensors[f"model/{k}"], v)
    assert (best.best, best.best_epoch) == (losses[i], i + 1)
    # the trainer's own checkpoints are untouched beside it
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["best.json", "best.safetensors", "epoch-0002.json", "epoch-0002.safetensors",
                     "epoch-0003.json", "epoch-0003.safetensors"]


def test_an_earlier_best_is_not_overwritten_and_load_best_restores_it(tmp_path):
    # The training loss falls every epoch, so "max" keeps epoch 1: a best that is not the last.
    rec = Recorder()
    t = trainer(tmp_path, [rec, BestCheckpoint("train_loss", mode="max")])
    history = t.fit(blobs())
    assert history[0]["train_loss"] > history[1]["train_loss"] > history[2]["train_loss"]
    model = t.model
    meta = load_best(model, tmp_path)
    assert (meta["epoch"], meta["value"]) == (1, history[0]["train_loss"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, rec.states[0][k])


def test_min_delta_ignores_small_improvements():
    best = BestCheckpoint("val_loss", min_delta=0.1)
    assert best.improves(5.0)
    best.best = 5.0
    assert not best.improves(4.95) and not best.improves(4.9) and best.improves(4.89)
    assert not best.improves(float("nan")) and not best.improves(float("-inf"))
    up = BestCheckpoint("val_accuracy", mode="max")
    up.best = 0.5
    assert up.improves(0.51) and not up.improves(0.5)  # a tie keeps the earlier epoch


def test_resume_keeps_the_best_so_far(tmp_path):
    first = trainer(tmp_path, [BestCheckpoint("train_loss", mode="max")], epochs=2)
    h = first.fit(blobs())
    again = BestCheckpoint("train_loss", mode="max")
    resumed = trainer(tmp_path, [again], epochs=3)
    resumed.fit(blobs(), resume=True)
    # Without the restored state, epoch 3 (the first one this process sees) would be "best".
    assert (again.best, again.best_epoch) == (h[0]["train_loss"], 1)
    meta = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert meta["epoch"] == 1


def test_state_dict_round_trip_and_mismatch():
    a = BestCheckpoint("val_accuracy", mode="max")
    a.best, a.best_epoch = 0.75, 4
    b = BestCheckpoint("val_accuracy", mode="max")
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert (b.best, b.best_epoch) == (0.75, 4)
    with pytest.raises(UserError, match="^monitor:"):
        BestCheckpoint("val_loss").load_state_dict(a.state_dict())


def test_no_run_dir_tracks_without_writing(tmp_path):
    best = BestCheckpoint("val_loss")
    trainer(None, [best]).fit(blobs())
    assert best.best_epoch in (1, 2, 3) and list(tmp_path.iterdir()) == []


def test_unknown_monitor_and_bad_arguments(tmp_path):
    with pytest.raises(UserError, match="^monitor: 'val_acc' is not an epoch metric"):
        trainer(tmp_path, [BestCheckpoint("val_acc", mode="max")]).fit(blobs())
    with pytest.raises(UserError, match="^mode:"):
        BestCheckpoint(mode="lowest")
    with pytest.raises(UserError, match="^min_delta:"):
        BestCheckpoint(min_delta=-1)
    with pytest.raises(UserError, match="^run_dir:"):
        load_best(torch.nn.Linear(1, 1), tmp_path)
