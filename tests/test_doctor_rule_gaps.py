"""Issue 9's rule gaps: regression heads, probability heads under MSE, overfitting by the
validation loss (as early stopping sees it), failing to learn against the yardstick."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainwell.cli.repair_loop import diagnose
from trainwell.config import validate
from trainwell.doctor import REPAIRS
from trainwell.doctor.findings import Health
from trainwell.doctor.rules import RULES, head_problem
from trainwell.doctor.signals import LayerSignals, Signals, signals
from trainwell.train import EarlyStopping

RULE = {r.kind: r for r in RULES}
NAMES = ("l0", "head")


def _sig(**kw) -> Signals:
    """A healthy-looking run (two layers, learning), then the given changes."""
    fields = dict(
        task="classification", loss="cross_entropy", num_classes=3, out_features=3,
        chance_loss=math.log(3), chance_acc=1 / 3, acc=0.9, loss_start=1.1, loss_end=0.3,
        failing=False, layer_names=NAMES,
        layers={n: LayerSignals(grad=1.0, update=1e-3, fan_out=8, spread=0.5) for n in NAMES},
    )  # fmt: skip
    fields.update(kw)
    return Signals(**fields)


def _regression(act: str | None, rng: tuple[float, float] | None) -> Signals:
    return _sig(task="regression", loss="mse", num_classes=None, out_features=1,
                output_activation=act, target_range=rng, acc=None)  # fmt: skip


# ---- heads -------------------------------------------------------------------------------
def test_bounded_head_on_unbounded_regression_targets():
    found = RULE["bad_output_head"].check(_regression("sigmoid", (-3.2, 41.0)))
    assert found is not None
    _, ev, text, conf = found
    assert (ev["target_min"], ev["target_max"]) == (-3.2, 41.0) and conf == 1.0
    assert "(0, 1)" in text and "-3.2 to 41" in text
    assert RULE["bad_output_head"].check(_regression("tanh", (-5.0, 5.0))) is not None
    assert RULE["bad_output_head"].check(_regression("softmax", (0.0, 2.0))) is not None


@pytest.mark.parametrize(
    ("act", "rng"),
    [("sigmoid", (0.0, 1.0)), ("sigmoid", (0.02, 1.04)), ("tanh", (-1.0, 0.5)),
     (None, (-3.2, 41.0)), ("sigmoid", None)],
)  # fmt: skip
def test_head_that_reaches_the_targets_or_unknown_range_is_not_flagged(act, rng):
    assert RULE["bad_output_head"].check(_regression(act, rng)) is None


def test_probability_head_under_a_distance_loss_on_classes():
    for act in ("softmax", "sigmoid"):
        for loss in ("mse", "mae"):
            s = _sig(output_activation=act, loss=loss)
            assert f"a {act} head under a {loss} loss" in head_problem(s)
    # watch(loss="mse") calls the task regression; the class count still says "classes"
    assert head_problem(_sig(task="regression", output_activation="softmax", loss="mse"))
    assert head_problem(_sig(loss="cross_entropy", output_activation=None)) == ""
    assert head_problem(_sig(loss="mse", output_activation=None)) == ""


def test_regression_target_range_reaches_the_signals():
    h = Health(context={"task": "regression", "loss": "mse", "target_range": [-1.5, 30.0]})
    assert signals(h).target_range == (-1.5, 30.0)
    assert signals(Health(context={"task": "regression"})).target_range is None


def test_a_real_regression_run_with_a_sigmoid_head_blames_the_head():
    before = torch.get_num_threads()
    config = validate({
        "name": "t", "seed": 0, "device": "cpu",
        "data": {"source": "synthetic", "num_samples": 300, "options": {"task": "regression"}},
        "model": {"depth": 2, "width": 16, "output_activation": "sigmoid"},
        "optim": {"name": "adam", "lr": 3e-3}, "schedule": {"name": "constant"},
        "train": {"epochs": 3, "batch_size": 32, "checkpoint_every": 100, "threads": 1},
    })  # fmt: skip
    try:
        result = diagnose(config)
    finally:
        torch.set_num_threads(before)
    head = result.findings[0]
    assert head.kind == "bad_output_head" and "fix_output_head" in head.repairs
    assert head.evidence["target_min"] < -1.0 and head.evidence["target_max"] > 1.0
    # 3 epochs: the short look is 1 epoch (10%, at least 1), the yardstick a 1-epoch run
    assert result.judged_at_epochs == 1 and result.yardstick["epochs"] == 1


# ---- overfitting -------------------------------------------------------------------------
def _epochs(val_losses, train_acc=0.55, val_acc=0.5):
    return tuple(
        {"train_loss": 1.0 / (e + 1), "val_loss": v, "train_accuracy": train_acc,
         "val_accuracy": val_acc}
        for e, v in enumerate(val_losses)
    )  # fmt: skip


def test_overfitting_from_val_loss_with_noisy_labels_small_accuracy_gap():
    # Label noise: train accuracy on the noisy labels is barely above val (gap 5 points),
    # while the clean validation loss rose 50% over 3 epochs.
    _, ev, text, _ = RULE["overfitting"].check(_sig(epochs=_epochs([1.0, 0.8, 0.9, 1.0, 1.2])))
    assert ev["best_val_epoch"] == 2 and ev["epochs_since_best"] == 3
    assert ev["val_loss_rise"] == pytest.approx(0.5) and ev["accuracy_gap"] == pytest.approx(0.05)
    assert "50% above its best, 3 epochs later" in text


def test_no_overfitting_that_early_stopping_with_patience_3_would_not_see():
    # best at epoch 3, only 2 epochs after it: early stopping (patience 3) would go on
    assert RULE["overfitting"].check(_sig(epochs=_epochs([1.0, 0.9, 0.8, 1.0, 1.2]))) is None
    # risen for 3 epochs but by 5% only
    assert RULE["overfitting"].check(_sig(epochs=_epochs([1.0, 0.8, 0.82, 0.83, 0.84]))) is None
    # healthy: the validation loss still falls
    assert RULE["overfitting"].check(_sig(epochs=_epochs([1.0, 0.8, 0.7, 0.6, 0.5]))) is None


def test_no_overfitting_when_the_val_loss_rises_but_accuracy_does_not_suffer():
    # healthy_relu_adam's full look (cases/, 10 epochs): val loss +22% over its best at epoch
    # 5, val accuracy still rising to 0.951, train/val gap 4.9 points: no finding
    vl = [0.496, 0.419, 0.392, 0.356, 0.352, 0.421, 0.395, 0.415, 0.423, 0.429]
    va = [0.854, 0.896, 0.924, 0.938, 0.931, 0.931, 0.951, 0.951, 0.951, 0.951]
    epochs = tuple(
        {"train_loss": 1.0 / (e + 1), "val_loss": v, "val_accuracy": a, "train_accuracy": 1.0}
        for e, (v, a) in enumerate(zip(vl, va, strict=True))
    )
    ok = tuple({**e, "train_accuracy": e["val_accuracy"] + 0.049} for e in epochs)
    assert RULE["overfitting"].check(_sig(epochs=ok)) is None
    # the same losses with a 9.7-point gap: the accuracy rose 2 points after the loss's best
    # epoch (0.931 → 0.951), so stopping there would cost accuracy: still no finding …
    gap = tuple({**e, "train_accuracy": e["val_accuracy"] + 0.097} for e in epochs)
    assert RULE["overfitting"].check(_sig(epochs=gap)) is None
    # … but with the accuracy flat since that epoch, the 9.7-point gap is overfitting …
    flat = gap[:2] + tuple({**e, "val_accuracy": 0.91, "train_accuracy": 1.0} for e in gap[2:])
    assert RULE["overfitting"].check(_sig(epochs=flat))[1]["accuracy_gap"] == pytest.approx(0.09)
    # … and so is a val accuracy ending 3 points below its best (0.951 → 0.921)
    drop = ok[:-1] + ({**ok[-1], "val_accuracy": 0.921, "train_accuracy": 0.97},)
    assert RULE["overfitting"].check(_sig(epochs=drop)) is not None


def test_early_stopping_is_overfittings_first_repair_and_builds_the_callback():
    assert RULE["overfitting"].repairs[0] == "early_stopping"
    model = nn.Linear(2, 2)
    out = REPAIRS["early_stopping"].apply(model, torch.optim.SGD(model.parameters(), lr=0.1))
    (cb,) = out["callbacks"]
    assert isinstance(cb, EarlyStopping)
    assert (cb.monitor, cb.mode, cb.patience, cb.restore_best) == ("val_loss", "min", 3, True)


# ---- failing to learn, against the yardstick ----------------------------------------------
def _health(acc: float, yardstick: float | None) -> Health:
    ctx = {"task": "classification", "loss": "cross_entropy", "num_classes": 3}
    if yardstick is not None:
        ctx["yardstick_accuracy"] = yardstick
    # the training loss is low (0.3 < 0.8 ln 3): only the accuracy can make it "failing"
    return Health(losses=[0.3] * 40, epochs=[{"val_accuracy": acc}], context=ctx)


def test_failing_relative_to_the_yardstick():
    # 0.695 on 3 classes passes the fixed bar (1/3 + 0.4·2/3 = 0.6) ...
    assert signals(_health(0.695, None)).failing is False
    # ... but closes (0.695 − 1/3)/(0.95 − 1/3) = 0.59 < 0.8 of the recipe's gap
    s = signals(_health(0.695, 0.95))
    assert s.failing is True and s.yardstick_acc == 0.95
    assert signals(_health(0.9, 0.95)).failing is False  # 0.92 of the gap
    assert signals(_health(0.5, 0.30)).failing is True  # the fixed bar still holds
    assert signals(_health(0.7, 0.30)).failing is False  # a recipe at chance sets no bar
