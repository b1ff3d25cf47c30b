"""The yardstick's recipe and verdict: repaired / improved / unresolved on known numbers."""

from __future__ import annotations

import pytest

from trainwell.cli.yardstick import (
    YARDSTICK_LR,
    judge,
    verdict,
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


@pytest.mark.parametrize(
    ("before", "trial", "after", "yard", "status"),
    [
        # within 2 points of the recipe at the short budget, and the full run holds it
        (0.10, 0.80, 0.93, 0.81, "repaired"),
        # within 2 points early, but the full run falls back below the recipe's short score
        (0.10, 0.80, 0.60, 0.81, "improved"),
        # …and below the broken run itself
        (0.10, 0.80, 0.11, 0.81, "unresolved"),
        # 6 points short of the recipe's complete short run early (the first part of a
        # full-length schedule), but it gained, and its full run reaches the recipe's score
        (0.10, 0.75, 0.95, 0.81, "repaired"),
        # gained early, full run 3 points short of the recipe's short run: improved
        (0.10, 0.75, 0.78, 0.81, "improved"),
        # gained early, lost it by the end
        (0.50, 0.60, 0.49, 0.81, "unresolved"),
        (0.50, 0.51, 0.95, 0.81, "unresolved"),  # no gain at the short budget
    ],
)
def test_verdict_gain_at_the_short_budget_and_the_recipe_at_the_full(before, trial, after, yard, status):
    assert verdict(_acc(before), _acc(trial), _acc(after), _acc(yard)) == status


def test_verdict_for_regression_by_val_loss():
    loss = lambda v: {"val_loss": v}  # noqa: E731
    assert verdict(loss(10.0), loss(0.105), loss(0.09), loss(0.1)) == "repaired"
    assert verdict(loss(10.0), loss(0.105), loss(0.5), loss(0.1)) == "improved"  # fell back
    # 2× the recipe's loss early, but a gain, and the full run reaches it
    assert verdict(loss(10.0), loss(0.2), loss(0.09), loss(0.1)) == "repaired"
    assert verdict(loss(10.0), loss(10.0), loss(0.09), loss(0.1)) == "unresolved"  # no gain


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
