"""Each rule of the table on its own, over a small synthetic Signals object."""

from __future__ import annotations

import math

import pytest

from trainwell.doctor.findings import KINDS
from trainwell.doctor.rules import RULES, confidence, share_confidence
from trainwell.doctor.signals import LayerSignals, Signals

RULE = {r.kind: r for r in RULES}
NAMES = ("l0", "l1", "head")


def _sig(layers: dict[str, dict] | None = None, **kw) -> Signals:
    """A failing 10-class run with three healthy layers, then the given changes."""
    base = {n: {"grad": 1.0, "update": 1e-3, "fan_out": 8, "spread": 0.5} for n in NAMES}
    for name, over in (layers or {}).items():
        base[name].update(over)
    fields = dict(
        loss="cross_entropy", num_classes=10, out_features=10, chance_loss=math.log(10),
        chance_acc=0.1, acc=0.1, loss_start=2.3, loss_end=2.3, failing=True, layer_names=NAMES,
        layers={n: LayerSignals(**v) for n, v in base.items()}, grad_ratio=1.0,
        max_grad_ratio=1.0, global_grad=1.0, peak_update=1e-2, input_scale=1.0, steps=100,
    )  # fmt: skip
    fields.update(kw)
    return Signals(**fields)


def test_the_table_has_one_rule_per_kind_in_report_order():
    # not_learning is no row: diagnose_health adds it when no row fires on a run at chance
    assert [r.kind for r in sorted(RULES, key=lambda r: r.order)] == \
        [k for k in KINDS if k != "not_learning"]
    assert all(r.repairs for r in RULES)


def test_a_plain_failing_run_fires_no_rule():
    assert [k for k, r in RULE.items() if r.check(_sig())] == []


def test_non_finite():
    layers, ev, text, conf = RULE["non_finite"].check(
        _sig(non_finite_steps=3, first_non_finite_step=7, non_finite_layers=("l0",))
    )
    assert layers == ["l0"] and ev == {"non_finite_steps": 3, "first_step": 7}
    assert "on 3 steps (first at step 7)" in text and conf == 1.0


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"out_features": 1, "output_activation": "softmax"}, "softmax over one output unit"),
        ({"output_activation": "relu"}, "a relu on the output"),
        ({"out_features": 3}, "3 outputs for 10 classes"),
        ({"loss": "bce", "out_features": 1, "num_classes": 2}, "put a sigmoid"),
        ({"output_activation": "softmax"}, "cross-entropy applies its own softmax"),
    ],
)
def test_bad_output_head(kw, words):
    layers, ev, text, _ = RULE["bad_output_head"].check(_sig(**kw))
    assert layers == ["head"] and words in text
    assert ev["output_activation"] == kw.get("output_activation")


def test_sigmoid_before_bce_and_regression_heads_are_fine():
    bce = _sig(loss="bce", out_features=1, num_classes=2, output_activation="sigmoid")
    assert RULE["bad_output_head"].check(bce) is None
    assert RULE["bad_output_head"].check(_sig(task="regression", output_activation="relu")) is None


def test_symmetric_init_needs_more_than_one_unit():
    layers, ev, text, _ = RULE["symmetric_init"].check(_sig({"l1": {"spread": 0.0}}))
    assert layers == ["l1"] and ev == {"unit_spread": {"l1": 0.0}} and "spread 0 <" in text
    assert RULE["symmetric_init"].check(_sig({"l1": {"spread": 0.0, "fan_out": 1}})) is None


def test_unnormalized_inputs():
    layers, ev, text, conf = RULE["unnormalized_inputs"].check(_sig(input_scale=100.0))
    assert layers == ["l0"] and ev == {"input_scale": 100.0} and "scale 100 " in text
    assert conf == 1.0  # one decade past the threshold of 10
    assert RULE["unnormalized_inputs"].check(_sig(input_scale=10.0)) is None


def test_exploding_gradients_only_while_failing():
    layers, ev, text, conf = RULE["exploding_gradients"].check(_sig(max_grad_ratio=1000.0))
    assert ev["max_grad_ratio_first_to_head"] == 1000.0 and "1e+03× the head's" in text
    assert conf == 1.0
    assert RULE["exploding_gradients"].check(_sig(max_grad_ratio=1000.0, failing=False)) is None
    _, ev, text, _ = RULE["exploding_gradients"].check(_sig(global_grad=1e5))
    assert "global gradient norm is 1e+05" in text


def test_lr_too_high_says_only_what_its_evidence_shows():
    _, ev, text, _ = RULE["lr_too_high"].check(_sig(up_share=0.6))
    assert ev["loss_rising"] is False and ev["loss_up_share"] == 0.6
    assert text.startswith("the loss went up in 60% of the windows") and "rose" not in text
    _, ev, text, _ = RULE["lr_too_high"].check(_sig(loss_end=4.6))
    assert ev["loss_rising"] is True and "rose from 2.3 to 4.6" in text
    _, _, text, conf = RULE["lr_too_high"].check(_sig(peak_update=50.0))
    assert "moved a layer by 50× its weights" in text and conf == 1.0
    # Overflow alone is the non_finite finding, not evidence of its cause.
    assert RULE["lr_too_high"].check(_sig(non_finite_steps=4)) is None


def test_saturation():
    layers, ev, text, conf = RULE["saturation"].check(
        _sig({"l0": {"saturated": 0.75, "activation": "sigmoid"}})
    )
    assert layers == ["l0"] and ev == {"saturated_share": {"l0": 0.75}, "at_initialization": False}
    assert text.startswith("75% of the sigmoid outputs of layer l0") and conf == 0.75
    assert RULE["saturation"].check(_sig({"l0": {"saturated": 0.4}})) is None


def test_vanishing_gradients_and_what_suppresses_it():
    s = _sig({"l0": {"grad": 1e-6}}, grad_ratio=1e-6)
    layers, ev, text, conf = RULE["vanishing_gradients"].check(s)
    assert layers == ["l0"] and ev["grad_ratio_first_to_head"] == 1e-6 and conf == 1.0
    assert "gradient is 1e-06 of the head's" in text
    assert (
        RULE["vanishing_gradients"].check(_sig(grad_ratio=1e-6, output_activation="relu")) is None
    )
    tiny = _sig({"head": {"update": 1e-9}}, grad_ratio=1e-6)
    assert RULE["vanishing_gradients"].check(tiny) is None


def test_dying_relu_names_a_negative_bias():
    s = _sig({"l0": {"dead": 1.0, "bias": -3.0}, "l1": {"dead": 0.6}})
    layers, ev, text, conf = RULE["dying_relu"].check(s)
    assert layers == ["l0", "l1"] and ev["dead_share"] == {"l0": 1.0, "l1": 0.6}
    assert "100% of the ReLU units of layer l0" in text and "mean of -3" in text
    assert conf == 1.0 and share_confidence(0.6, 0.5) == 0.6
    assert RULE["dying_relu"].check(_sig({"head": {"dead": 1.0}})) is None  # hidden layers only


def test_lr_too_low_and_overfitting():
    s = _sig({"head": {"update": 1e-9}}, loss_drop=0.01)
    _, ev, text, conf = RULE["lr_too_low"].check(s)
    assert ev == {"head_update_ratio": 1e-9, "loss_drop": 0.01} and "only 1.0%" in text
    assert conf == 1.0 and confidence(1e-6, 1e-5, above=False) == 1.0
    epochs = tuple(
        {"train_loss": 1.0 / (e + 1), "val_loss": v, "train_accuracy": 0.9, "val_accuracy": 0.7}
        for e, v in enumerate([1.0, 0.8, 0.9, 1.0, 1.2])
    )
    _, ev, text, _ = RULE["overfitting"].check(_sig(epochs=epochs))
    assert ev["best_val_epoch"] == 2 and "rose from 0.8 (epoch 2) to 1.2" in text
    assert "50% above its best, 3 epochs later" in text and ev["accuracy_gap"] == 0.2
