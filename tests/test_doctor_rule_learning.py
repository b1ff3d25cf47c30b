"""Findings on runs that still learn: a memorized training set (overfit_small_train), units
saturated by the initialization (cnn_sigmoid_normal), and a rise of the validation loss that
does not hold (healthy_selu_deep). Epoch figures are the cases' own (cases/, seed 0)."""

from __future__ import annotations

import math

import pytest

from trainwell.doctor.findings import Health
from trainwell.doctor.rules import RULES, diagnose_health
from trainwell.doctor.signals import LayerSignals, Signals
from trainwell.doctor.thresholds import MEMORIZED_ACC, MEMORIZED_LOSS_SHARE, OVERFIT_GAP

RULE = {r.kind: r for r in RULES}
NAMES = ("l0", "head")


def _sig(**kw) -> Signals:
    fields = dict(
        task="classification", loss="cross_entropy", num_classes=10, out_features=10,
        chance_loss=math.log(10), chance_acc=0.1, acc=0.9, loss_start=2.0, loss_end=0.1,
        failing=False, layer_names=NAMES,
        layers={n: LayerSignals(grad=1.0, update=1e-3, fan_out=8, spread=0.5) for n in NAMES},
    )  # fmt: skip
    fields.update(kw)
    return Signals(**fields)


def _epochs(rows):
    keys = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
    return tuple(dict(zip(keys, r, strict=True)) for r in rows)


# overfit_small_train's short look (4 of 40 epochs, 15% of digits for training)
SMALL_TRAIN = [(1.607, 0.5833, 0.9672, 0.7823), (0.2434, 0.9444, 1.044, 0.8429),
               (0.0877, 0.9722, 1.1765, 0.8576), (0.0259, 0.9954, 1.1933, 0.9026)]


def test_a_memorized_training_set_is_overfitting_while_val_accuracy_still_rises():
    assert MEMORIZED_ACC == 0.99 and MEMORIZED_LOSS_SHARE == 0.05 and OVERFIT_GAP == 0.08
    _, ev, text, _ = RULE["overfitting"].check(_sig(epochs=_epochs(SMALL_TRAIN)))
    assert ev["best_val_epoch"] == 1 and ev["train_accuracy"] == pytest.approx(0.9954)
    assert ev["accuracy_gap"] == pytest.approx(0.0928, abs=1e-4)
    assert ev["val_accuracy_gain_since_best"] == pytest.approx(0.1203, abs=1e-4)
    assert "memorized" in text and "still rose 12.0 points" in text
    # the rule's first repair would stop at epoch 1 and give the 12 points back: it goes last
    health = Health(epochs=[dict(e) for e in _epochs(SMALL_TRAIN)],
                    context={"task": "classification", "num_classes": 10})
    (f,) = [f for f in diagnose_health(health) if f.kind == "overfitting"]
    assert f.repairs == ("add_l2", "add_dropout", "early_stopping")


def test_no_memorization_finding_below_each_bar():
    def last(train_loss, train_acc, val_acc):
        rows = SMALL_TRAIN[:-1] + [(train_loss, train_acc, 1.1933, val_acc)]
        return RULE["overfitting"].check(_sig(epochs=_epochs(rows)))

    assert last(0.0259, 0.9954, 0.9026) is not None
    # healthy_custom_swish's full look: train 0.995, val 0.924 (gap 7.2 points < 8)
    assert last(0.0259, 0.995, 0.924) is None
    # healthy_cnn1d's: an 11.5-point gap, but training accuracy 0.981 < 0.99
    assert last(0.0259, 0.981, 0.866) is None
    # training loss 7% of the validation loss (> 5%): not memorized
    assert last(0.0835, 0.9954, 0.9026) is None


def test_a_val_loss_rise_that_does_not_hold_is_no_overfitting():
    # healthy_selu_deep's full look: best 0.273 at epoch 3, 0.520 at epoch 8, 0.283 at 9
    # (4% above), 0.345 at 10 (26%); its val accuracy peaked at epoch 9 (0.931 → 0.910)
    vl = [0.7563, 0.3593, 0.273, 0.2908, 0.4226, 0.4087, 0.3895, 0.5202, 0.2829, 0.3449]
    va = [0.7986, 0.9097, 0.9167, 0.8958, 0.9028, 0.9236, 0.9097, 0.8889, 0.9306, 0.9097]
    tl = [1.0079, 0.3527, 0.2055, 0.1312, 0.0825, 0.1806, 0.1334, 0.1485, 0.0999, 0.1094]
    ta = [0.6747, 0.8771, 0.9343, 0.9583, 0.9722, 0.9513, 0.9637, 0.9606, 0.9737, 0.9675]
    rows = list(zip(tl, ta, vl, va, strict=True))
    assert RULE["overfitting"].check(_sig(epochs=_epochs(rows))) is None
    # the same run with its epoch-9 loss 12% above the best too: the rise holds, a finding
    held = rows[:8] + [(0.0999, 0.9737, 0.306, 0.9306), rows[9]]
    assert RULE["overfitting"].check(_sig(epochs=_epochs(held))) is not None


def test_saturation_from_the_initialization_while_the_run_still_learns():
    # cnn_sigmoid_normal: 66% saturated at step 0, 67% over the run, accuracy 0.47 after one
    # epoch (above the failing bar); healthy sigmoid/tanh controls: ≤ 1% at step 0 and after
    layers = {"l0": LayerSignals(saturated=0.671, activation="sigmoid"), "head": LayerSignals()}
    out = RULE["saturation"].check(_sig(layers=layers, init_saturated=0.658, acc=0.47))
    assert out is not None
    names, ev, text, conf = out
    assert names == ["l0"] and ev["at_initialization"] is True and conf == pytest.approx(0.671)
    assert "still learns" in text
    # saturated over the run but not at step 0 (the training put them there): not while learning
    assert RULE["saturation"].check(_sig(layers=layers, init_saturated=0.01)) is None
    assert RULE["saturation"].check(_sig(layers=layers, init_saturated=None)) is None
    # saturated at step 0 but not over the run (they recovered): no finding
    fine = {"l0": LayerSignals(saturated=0.01, activation="sigmoid"), "head": LayerSignals()}
    assert RULE["saturation"].check(_sig(layers=fine, init_saturated=0.658)) is None
