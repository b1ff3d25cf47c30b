"""The yardstick's recipe and verdict: repaired / improved / unresolved on known numbers."""

from __future__ import annotations

import pytest

from trainwell.cli.yardstick import (
    YARDSTICK_LR,
    judge,
    needs_full_yardstick,
    yardstick_config,
    yardstick_patch,
)
from trainwell.config import validate


def _acc(v: float) -> dict:
    return {"val_accuracy": v, "val_loss": 1.0}


@pytest.mark.parametrize(
    ("before", "after", "yard", "status"),
    [
        (0.10, 0.90, 0.91, "repaired"),  # 1 point short: within 2
        (0.10, 0.89, 0.91, "repaired"),  # exactly 2 points short
        (0.10, 0.85, 0.91, "improved"),  # +75 points, but 6 short of the recipe
        (0.80, 0.81, 0.91, "unresolved"),  # +1 point only
        (0.80, 0.95, 0.91, "repaired"),  # above the recipe
        (0.10, 0.50, None, "repaired"),  # no yardstick: the old +2-point criterion
        (0.50, 0.51, None, "unresolved"),
    ],
)
def test_judge_classification(before, after, yard, status):
    assert judge(_acc(before), _acc(after), None if yard is None else _acc(yard)) == status


@pytest.mark.parametrize(
    ("before", "after", "yard", "status"),
    [
        (10.0, 0.105, 0.1, "repaired"),  # within 10% of the yardstick's val loss
        (10.0, 0.2, 0.1, "improved"),  # 2× the yardstick's loss, far below before
        (0.2, 0.19, 0.1, "unresolved"),  # 5% better than before only
        (float("nan"), 0.5, 0.1, "improved"),  # a non-finite before: any finite loss gains
    ],
)
def test_judge_regression_by_val_loss(before, after, yard, status):
    assert judge({"val_loss": before}, {"val_loss": after}, {"val_loss": yard}) == status


def test_judge_without_a_final_score_is_unresolved():
    assert judge(_acc(0.1), {"val_accuracy": float("nan"), "val_loss": None}, _acc(0.9)) == (
        "unresolved"
    )


def test_full_yardstick_only_when_the_verdict_needs_it():
    assert not needs_full_yardstick(_acc(0.70), _acc(0.80))  # short of the recipe's early score
    assert needs_full_yardstick(_acc(0.79), _acc(0.80))  # within 2 points of it: must see full
    assert not needs_full_yardstick({"val_loss": 0.5}, {"val_loss": 0.1})
    assert needs_full_yardstick({"val_loss": 0.105}, {"val_loss": 0.1})


def _config(**over) -> object:
    raw = {
        "name": "t", "seed": 0, "device": "cpu",
        "data": {"source": "synthetic", "num_samples": 200, "input_scale": 100.0},
        "model": {"depth": 3, "width": 8, "activation": "sigmoid", "init": "normal",
                  "output_activation": "relu"},
        "optim": {"name": "sgd", "lr": 5.0},
        "schedule": {"name": "constant"},
        "train": {"epochs": 4, "batch_size": 32, "threads": 1},
    }  # fmt: skip
    for section, values in over.items():
        raw[section] = {**raw[section], **values}
    return validate(raw)


def test_yardstick_keeps_the_architecture_and_replaces_the_recipe():
    config = _config()
    y = yardstick_config(config)
    assert y is not None
    assert (y.model.depth, y.model.width, y.model.activation) == (3, 8, "sigmoid")
    assert y.model.init == "auto" and y.model.output_activation is None
    assert y.data.standardize is True and y.data.input_scale == 1.0
    assert (y.optim.name, y.optim.lr, y.schedule.name) == ("adam", YARDSTICK_LR, "one_cycle")
    assert y.train.loss == "auto" and y.train.epochs == config.train.epochs


def test_yardstick_keeps_a_sane_adam_rate_only():
    assert yardstick_patch(_config(optim={"name": "adam", "lr": 1e-3}))["optim.lr"] == 1e-3
    assert yardstick_patch(_config(optim={"name": "adam", "lr": 1e-10}))["optim.lr"] == YARDSTICK_LR
    assert yardstick_patch(_config(optim={"name": "adam", "lr": 1.0}))["optim.lr"] == YARDSTICK_LR
