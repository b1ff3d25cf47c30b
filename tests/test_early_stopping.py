"""EarlyStopping on a run whose validation loss has a known minimum.

The run: y = w·x with w starting at 0, one full batch per epoch, x = 1, training targets
2 and validation targets 1, MSE, SGD with η = 0.1. The gradient is 2(w − 2), so after
epoch t: w_t = 2(1 − 0.8^t), and the validation loss (w_t − 1)² is 0.36, 0.0784,
0.000576, 0.0327, 0.119, … — it falls until epoch 3 (0.8³ = 0.512 is closest to 1/2) and
rises after: the model overfits its training targets.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

import trainwell as tw
from trainwell.data import Dataset, Split
from trainwell.errors import UserError
from trainwell.train import BestCheckpoint, Callback, EarlyStopping

BEST = 3  # argmin_t |0.8^t − 1/2|


def _w(t: int) -> float:
    return 2 * (1 - 0.8**t)


def _data() -> Dataset:
    ones = torch.ones(8, 1)
    return Dataset(Split(ones, 2 * ones), Split(ones[:4], ones[:4]),
                   Split(torch.empty(0, 1), torch.empty(0, 1)), "regression", None, "line")


def _trainer(epochs=10, callbacks=(), run_dir=None) -> tw.Trainer:
    torch.set_num_threads(1)
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return tw.Trainer(model, opt, epochs=epochs, batch_size=8, seed=0, progress=False,
                      device="cpu", run_dir=run_dir, callbacks=list(callbacks))


def _weight(trainer: tw.Trainer) -> torch.Tensor:
    return trainer.model.weight.detach().clone()


def test_the_run_has_its_minimum_where_the_formula_says():
    history = _trainer(epochs=6).fit(_data())
    losses = [h["val_loss"] for h in history]
    expected = [(_w(t) - 1) ** 2 for t in range(1, 7)]
    assert losses == pytest.approx(expected, rel=1e-4, abs=1e-7)
    assert min(range(6), key=losses.__getitem__) + 1 == BEST


@pytest.mark.parametrize("patience", [1, 2, 4])
def test_stops_patience_epochs_after_the_best_and_restores_its_weights(patience):
    stop = EarlyStopping(patience=patience)
    trainer = _trainer(callbacks=[stop])
    history = trainer.fit(_data())
    assert len(history) == trainer.epoch == BEST + patience < 10
    assert (stop.best_epoch, stop.stopped_epoch, stop.wait) == (BEST, BEST + patience, patience)
    assert stop.best == history[BEST - 1]["val_loss"]
    reference = _trainer(epochs=BEST)  # the same run stopped at the best epoch
    reference.fit(_data())
    assert torch.equal(_weight(trainer), _weight(reference))
    assert _weight(trainer).item() == pytest.approx(_w(BEST), rel=1e-6)


def test_restore_best_false_keeps_the_last_weights():
    stop = EarlyStopping(patience=2, restore_best=False)
    trainer = _trainer(callbacks=[stop])
    trainer.fit(_data())
    assert trainer.epoch == BEST + 2
    assert _weight(trainer).item() == pytest.approx(_w(BEST + 2), rel=1e-6)


def test_without_running_out_of_patience_the_best_is_restored_at_the_end():
    stop = EarlyStopping(patience=5)
    trainer = _trainer(epochs=BEST + 2, callbacks=[stop])
    trainer.fit(_data())
    assert trainer.epoch == BEST + 2 and stop.stopped_epoch is None and stop.wait == 2
    assert _weight(trainer).item() == pytest.approx(_w(BEST), rel=1e-6)


def test_min_delta_and_max_mode():
    # min_delta 0.1: epoch 2 improves (0.0784 < 0.36 − 0.1), epoch 3 does not (0.000576 is not
    # < 0.0784 − 0.1), so the best stays at epoch 2 and patience 2 stops at epoch 4.
    stop = EarlyStopping(patience=2, min_delta=0.1)
    trainer = _trainer(callbacks=[stop])
    trainer.fit(_data())
    assert (stop.best_epoch, stop.stopped_epoch) == (2, 4)
    assert _weight(trainer).item() == pytest.approx(_w(2), rel=1e-6)
    # mode="max" on the training loss, which only falls: the first epoch stays the best.
    up = EarlyStopping("train_loss", mode="max", patience=3)
    _trainer(callbacks=[up]).fit(_data())
    assert (up.best_epoch, up.stopped_epoch) == (1, 4)


def _resumed(tmp_path, until, with_best, **stop_args):
    """Fit until epoch ``until``, then resume in fresh objects (as a new process would)."""
    first = [EarlyStopping(patience=2, **stop_args)] + ([BestCheckpoint()] if with_best else [])
    _trainer(callbacks=first, run_dir=tmp_path).fit(_data(), until=until)
    stop = EarlyStopping(patience=2, **stop_args)
    again = [stop] + ([BestCheckpoint()] if with_best else [])
    trainer = _trainer(callbacks=again, run_dir=tmp_path)
    trainer.fit(_data(), resume=True)
    return trainer, stop


def test_resume_keeps_the_counters_and_reloads_the_best_from_best_checkpoint(tmp_path):
    straight = EarlyStopping(patience=2)
    _trainer(callbacks=[straight]).fit(_data())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the weights come from disk: nothing to warn about
        trainer, stop = _resumed(tmp_path, until=BEST + 1, with_best=True)
    assert stop.state_dict() == straight.state_dict()
    assert stop.state_dict() == {"monitor": "val_loss", "mode": "min", "best": straight.best,
                                 "best_epoch": BEST, "wait": 2, "stopped_epoch": BEST + 2}
    assert trainer.epoch == BEST + 2
    assert _weight(trainer).item() == pytest.approx(_w(BEST), rel=1e-6)


def test_resume_after_the_best_without_best_checkpoint_warns_once_and_keeps_last(tmp_path):
    with pytest.warns(UserWarning, match=r"EarlyStopping: the best epoch \(3, val_loss = "
                                         r".*\) came before the resume") as caught:
        trainer, stop = _resumed(tmp_path, until=BEST + 1, with_best=False)
    assert len([w for w in caught if "EarlyStopping" in str(w.message)]) == 1
    assert (stop.best_epoch, stop.stopped_epoch) == (BEST, BEST + 2)
    assert _weight(trainer).item() == pytest.approx(_w(BEST + 2), rel=1e-6)


def test_resume_before_the_best_restores_from_memory(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer, stop = _resumed(tmp_path, until=BEST - 1, with_best=False)
    assert (stop.best_epoch, stop.stopped_epoch) == (BEST, BEST + 2)
    assert _weight(trainer).item() == pytest.approx(_w(BEST), rel=1e-6)


def test_a_pause_restores_nothing_and_continues_exactly(tmp_path):
    class Weights(Callback):
        def __init__(self):
            self.seen: list[float] = []

        def on_epoch_end(self, trainer, epoch, metrics):
            self.seen.append(trainer.model.weight.item())

    watch, stop = Weights(), EarlyStopping(patience=2)
    trainer = _trainer(callbacks=[stop, watch], run_dir=tmp_path)
    trainer.fit(_data(), until=BEST + 1)  # past the best: a restore here would move w back
    assert _weight(trainer).item() == pytest.approx(_w(BEST + 1), rel=1e-6)
    trainer.fit(_data())
    assert watch.seen == pytest.approx([_w(t) for t in range(1, BEST + 3)], rel=1e-6)
    assert _weight(trainer).item() == pytest.approx(_w(BEST), rel=1e-6)


def test_a_stopped_run_resumed_stays_stopped(tmp_path):
    _trainer(callbacks=[EarlyStopping(patience=2), BestCheckpoint()], run_dir=tmp_path).fit(_data())
    stop = EarlyStopping(patience=2)
    trainer = _trainer(callbacks=[stop, BestCheckpoint()], run_dir=tmp_path)
    history = trainer.fit(_data(), resume=True)
    assert len(history) == BEST + 2 and trainer.epoch == BEST + 2
    assert _weight(trainer).item() == pytest.approx(_w(BEST), rel=1e-6)


def test_state_is_json():
    stop = EarlyStopping(patience=2)
    _trainer(callbacks=[stop]).fit(_data())
    fresh = EarlyStopping(patience=2)
    fresh.load_state_dict(json.loads(json.dumps(stop.state_dict())))
    assert fresh.state_dict() == stop.state_dict()


def test_nan_never_improves():
    stop = EarlyStopping(patience=3)
    assert stop.improves(1.0) and not stop.improves(float("nan"))
    stop.best = 1.0
    assert stop.improves(0.5) and not stop.improves(1.0) and not stop.improves(float("inf"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "lowest"}, r"^mode: must be 'min' or 'max', got 'lowest'$"),
        ({"patience": 0}, r"^patience: must be an integer >= 1, got 0; e\.g\. 5 epochs$"),
        ({"patience": 2.5}, r"^patience: must be an integer >= 1, got 2\.5"),
        ({"min_delta": -0.1}, r"^min_delta: must be >= 0, got -0\.1$"),
    ],
)
def test_bad_arguments_are_user_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        EarlyStopping(**kwargs)


def test_unknown_monitor_and_mismatched_resume_are_user_errors():
    with pytest.raises(UserError, match=r"^monitor: 'val_acc' is not an epoch metric of this "
                                        r"run \(it has epoch, train_loss, val_loss"):
        _trainer(callbacks=[EarlyStopping("val_acc")]).fit(_data())
    with pytest.raises(UserError, match=r"^monitor: the checkpoint tracked 'val_loss' \(min\) "
                                        r"but this run monitors 'val_loss' \(max\)"):
        EarlyStopping(mode="max").load_state_dict(EarlyStopping().state_dict())
