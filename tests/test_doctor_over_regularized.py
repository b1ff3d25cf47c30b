"""over_regularized: dropout/penalties that keep a run at chance, and its repair."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from trainwell.cli.yardstick import yardstick_patch
from trainwell.config import apply_patch, load_config
from trainwell.doctor import REPAIRS
from trainwell.doctor.causes import rank
from trainwell.doctor.findings import KINDS, Finding
from trainwell.doctor.rules import RULES, over_regularized
from trainwell.doctor.signals import Signals

CASES = Path(__file__).resolve().parents[1] / "cases"


def _s(**kw) -> Signals:
    # digits after a 1-epoch look of the over_regularized case: 0.222 val, 0.092 train,
    # training loss 7.70 against chance's 2.30
    base = dict(task="classification", num_classes=10, chance_loss=math.log(10),
                chance_acc=0.1, acc=0.222, train_acc=0.092, loss_start=38.7, loss_end=7.70,
                failing=True, dropout=0.9, l2=0.5)  # fmt: skip
    return Signals(**{**base, **kw})


def test_the_rule_fires_on_strong_regularization_at_chance():
    layers, ev, text, conf = over_regularized(_s())
    assert layers == [] and conf == 1.0
    assert ev["dropout"] == 0.9 and ev["l2"] == 0.5 and ev["train_accuracy"] == 0.092
    assert ev["train_loss_end"] == 7.7 and ev["chance_loss"] == 2.303
    assert "dropout 0.9 and an L2 penalty λ2 = 0.5" in text
    assert "training loss ends at 7.7 (chance's is 2.3)" in text
    # dropout alone, at the threshold: confidence 0.5
    assert over_regularized(_s(l2=0.0, dropout=0.5))[3] == 0.5


def test_the_rule_needs_chance_level_a_training_loss_at_chance_and_strong_settings():
    assert over_regularized(_s(dropout=0.3, l2=1e-3)) is None  # usual strengths
    assert over_regularized(_s(acc=0.40)) is None  # val above 0.1 + 0.25·0.9 = 0.325
    assert over_regularized(_s(train_acc=0.5)) is None  # the training set is fitted
    assert over_regularized(_s(loss_end=1.0)) is None  # the loss left chance's 2.30
    assert over_regularized(_s(task="regression")) is None


def test_it_is_in_the_table_and_explains_the_noise_it_makes():
    assert "over_regularized" in KINDS
    assert {r.kind: r.repairs for r in RULES}["over_regularized"] == ("reduce_regularization",)
    lr = Finding("lr_too_high", (), {}, "", ("lr_down",), 1.0)
    over = Finding("over_regularized", (), {}, "", ("reduce_regularization",), 1.0)
    ranked = rank([lr, over])
    assert [f.kind for f in ranked] == ["over_regularized", "lr_too_high"]
    assert ranked[1].explained_by == "over_regularized"


def test_reduce_regularization_patch_and_live_action():
    config = load_config(CASES / "over_regularized.toml")
    patch = REPAIRS["reduce_regularization"].patch(config)
    assert patch == {"model.dropout": 0.09, "regularization.l2": 1e-3, "regularization.l1": 0.0}
    fixed = apply_patch(config, patch)
    assert REPAIRS["reduce_regularization"].patch(fixed) == {
        "model.dropout": 0.009, "regularization.l2": 1e-4, "regularization.l1": 0.0}
    clean = apply_patch(config, {"model.dropout": 0.0, "regularization.l2": 0.0})
    assert REPAIRS["reduce_regularization"].patch(clean) is None
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(0.9),
                                torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = REPAIRS["reduce_regularization"].apply(model, opt)
    assert model[2].p == 0.09 and len(model) == 4  # the rate ÷10, no second dropout
    assert "penalty" not in out  # live objects: the Trainer's penalty is the caller's


def test_the_yardstick_caps_regularization():
    config = load_config(CASES / "over_regularized.toml")
    p = yardstick_patch(config)
    assert (p["model.dropout"], p["regularization.l2"], p["regularization.l1"]) == (0.3, 1e-3, 0.0)
