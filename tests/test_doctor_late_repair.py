"""Overfitting found only by the full look: early stopping is judged on a replay of the run
the full look trained (the weights it would restore, evaluated), at no extra epoch."""

from __future__ import annotations

import types
from pathlib import Path

import torch
from torch import nn

from trainwell.cli.late_repair import EarlyStopReplay, repair_late_overfitting
from trainwell.cli.repair_loop import DoctorResult, Trial
from trainwell.config import load_config
from trainwell.doctor.findings import Finding

CASES = Path(__file__).resolve().parents[1] / "cases"


class _Trainer:
    def __init__(self) -> None:
        self.model = nn.Linear(2, 2)
        self.stop_training = False
        self.callbacks: list = []

    def evaluate(self, split):
        w = float(self.model.weight.detach().sum())
        return {"accuracy": 0.84 if w == 0.0 else 0.6, "loss": 0.9}


def test_the_replay_keeps_early_stoppings_epochs_and_weights_but_never_stops():
    trainer, replay = _Trainer(), EarlyStopReplay()  # patience 3, val loss
    # label_noise_overfit's val losses (rounded): best at epoch 3, then up for good
    for epoch, vl in enumerate([1.2, 0.95, 0.89, 0.93, 1.0, 1.1, 1.3, 0.5]):
        with torch.no_grad():
            trainer.model.weight.fill_(0.0 if epoch == 2 else 1.0)
        replay.on_epoch_end(trainer, epoch, {"epoch": epoch + 1, "val_loss": vl})
        assert trainer.stop_training is False
    # early stopping stops after epoch 6 (3 epochs without a better loss); the dip at
    # epoch 8 comes after it and changes nothing
    assert (replay.best_epoch, replay.stopped_epoch) == (3, 6)
    fresh = EarlyStopReplay()
    fresh.on_epoch_end(trainer, 0, {"epoch": 1, "train_loss": 1.0})  # no validation split
    assert fresh.best_epoch is None and fresh.stopped_epoch is None
    assert float(replay._best_state["weight"].sum()) == 0.0


def test_a_late_overfitting_finding_keeps_early_stopping_judged_on_the_replay():
    config = load_config(CASES / "label_noise_overfit.toml")
    trainer = _Trainer()
    replay = EarlyStopReplay()
    replay.best_epoch, replay.stopped_epoch = 3, 6
    replay._best_state = {k: torch.zeros_like(v) for k, v in trainer.model.state_dict().items()}
    trainer.callbacks.append(replay)
    session = types.SimpleNamespace(built=types.SimpleNamespace(
        trainer=trainer, data=types.SimpleNamespace(val="val", test="test")))
    over = Finding("overfitting", (), {}, "", ("early_stopping", "add_l2", "add_dropout"), 0.7)
    result = DoctorResult([over], Trial(None, {}, 0.83, 0.9, ["overfitting"], 0.0),
                          full_look={"val_accuracy": 0.61, "val_loss": 2.98},
                          yardstick={"val_accuracy": 0.85})
    assert repair_late_overfitting(result, config, session)
    assert result.chosen == "early_stopping" and result.status == "repaired"  # 0.84 ≥ 0.85 − 0.02
    assert result.patch == {"train.early_stopping": {"patience": 3, "restore_best": True}}
    assert result.after["epochs"] == 6 and result.after["best_epoch"] == 3
    assert result.repaired_config.train.early_stopping is not None
    assert float(trainer.model.weight.detach().sum()) != 0.0  # the model's own weights back
    # a primary finding of another kind is not touched
    other = DoctorResult([Finding("lr_too_high", (), {}, "", ("lr_down",), 1.0)],
                         result.diagnostic, full_look={"val_accuracy": 0.5})
    assert not repair_late_overfitting(other, config, session) and other.chosen is None
