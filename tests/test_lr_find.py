"""The LR finder on a small synthetic problem: suggestion in range, exact restore, PNG; the
rate it suggests named for the configured schedule, with the config line to set."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from trainwell.cli import main
from trainwell.cli.lr_find import rate_advice
from trainwell.config import apply_patch, validate
from trainwell.data.dataset import Split
from trainwell.errors import UserError
from trainwell.train.lr_find import SUGGEST_DIVISOR, LRFindResult, lr_find, plot


def _problem(n: int = 512) -> tuple[nn.Module, Split]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    y = (x @ torch.randn(8, 3, generator=g)).argmax(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    return model, Split(x, y)


def test_sweep_suggests_in_range_and_restores_exactly():
    model, split = _problem()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt_before = opt.state_dict()
    rng = torch.get_rng_state()
    res = lr_find(
        model,
        opt,
        split,
        nn.functional.cross_entropy,
        start_lr=1e-5,
        end_lr=10.0,
        steps=120,
        batch_size=64,
        generator=torch.Generator().manual_seed(1),
    )
    assert isinstance(res, LRFindResult)
    assert 1e-5 <= res.suggestion <= 10.0
    assert len(res.lrs) == len(res.losses) == len(res.raw_losses) <= 120
    assert res.lrs[0] == pytest.approx(1e-5)
    ratios = [b / a for a, b in zip(res.lrs, res.lrs[1:])]
    assert all(r == pytest.approx((1e6) ** (1 / 119), rel=1e-9) for r in ratios)
    assert min(res.losses) < res.losses[0]  # it learned before diverging
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert opt.state_dict() == opt_before and opt.param_groups[0]["lr"] == 1e-3
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_smoothing_is_bias_corrected_ema():
    model, split = _problem(64)
    res = lr_find(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        split,
        nn.functional.cross_entropy,
        start_lr=1e-6,
        end_lr=1e-5,
        steps=10,
        batch_size=32,
        smooth=0.9,
    )
    avg = 0.0
    for i, (raw, sm) in enumerate(zip(res.raw_losses, res.losses)):
        avg = 0.9 * avg + 0.1 * raw
        assert sm == pytest.approx(avg / (1 - 0.9 ** (i + 1)), rel=1e-12)
    assert len(res.lrs) == 10  # tiny lrs never diverge; split of 64 cycled


def test_stops_on_divergence():
    model, split = _problem()
    res = lr_find(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        split,
        nn.functional.cross_entropy,
        start_lr=1e-3,
        end_lr=1e6,
        steps=200,
        batch_size=64,
        generator=torch.Generator().manual_seed(0),
    )
    assert len(res.lrs) < 200
    last = res.losses[-1]
    assert not math.isfinite(last) or last > 4 * min(res.losses[:-1])


def test_plot_writes_png(tmp_path):
    res = LRFindResult([1e-4, 1e-3, 1e-2, 1e-1], [1.0, 0.8, 0.5, 2.0], 1e-2, [1.0, 0.8, 0.5, 2.0])
    out = plot(res, tmp_path / "sub" / "lr.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"start_lr": 0}, r"lr_find.start_lr: must be a finite number > 0, got 0"),
        ({"end_lr": 1e-8}, r"lr_find.end_lr: must be finite and > start_lr"),
        ({"steps": 1}, r"lr_find.steps: must be an integer >= 2, got 1"),
        ({"smooth": 1.0}, r"lr_find.smooth: must be in \[0, 1\)"),
        ({"diverge_factor": 1}, r"lr_find.diverge_factor: must be > 1"),
    ],
)
def test_bad_arguments(kw, match):
    model, split = _problem(8)
    with pytest.raises(UserError, match=match):
        lr_find(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            split,
            nn.functional.cross_entropy,
            **kw,
        )


def test_the_suggestion_is_the_lowest_loss_lr_over_ten():
    model, split = _problem()
    res = lr_find(model, torch.optim.Adam(model.parameters(), lr=1e-3), split,
                  nn.functional.cross_entropy, start_lr=1e-5, end_lr=10.0, steps=120,
                  batch_size=64, generator=torch.Generator().manual_seed(1))
    kept = res.losses[:-1] if len(res.lrs) < 120 else res.losses  # the diverged point is dropped
    assert res.min_loss_lr == res.lrs[kept.index(min(kept))]
    assert res.suggestion == pytest.approx(res.min_loss_lr / SUGGEST_DIVISOR, rel=1e-12)
    assert res.steepest is not None and res.lrs[0] <= res.steepest <= res.lrs[-1]


@pytest.mark.parametrize(
    ("schedule", "params", "field", "meaning"),
    [
        ("constant", {}, "optim.lr", "the constant learning rate"),
        ("one_cycle", {}, "optim.lr", "the 1cycle peak (max_lr)"),
        ("one_cycle", {"max_lr": 0.01}, "schedule.params.max_lr", "the 1cycle peak (max_lr)"),
        ("cosine", {}, "optim.lr", "the cosine schedule's starting, highest rate (lr0)"),
        ("cosine", {"lr0": 0.1}, "schedule.params.lr0", "starting, highest rate (lr0)"),
        ("performance", {}, "optim.lr", "the starting rate"),
    ],
)
def test_rate_advice_names_the_field_the_schedule_reads(schedule, params, field, meaning):
    config = validate({"schedule": {"name": schedule, "params": params}})
    advice = rate_advice(config, 0.00293)
    assert advice["field"] == field and advice["value"] == 0.0029
    assert advice["line"] == f"{field} = 0.0029" and advice["set"] == f"--set {field}=0.0029"
    assert meaning in advice["meaning"]
    # The printed field is the one the run reads: setting it there sets the schedule's rate.
    patched = apply_patch(config, {field: advice["value"]})
    assert patched.schedule.params.get(ARGS[schedule], patched.optim.lr) == 0.0029


ARGS = {"constant": "lr", "one_cycle": "max_lr", "cosine": "lr0", "performance": "lr"}


def test_piecewise_advice_says_to_scale_its_values():
    config = validate({"schedule": {"name": "piecewise",
                                    "params": {"boundaries": [10], "values": [0.1, 0.01]}}})
    advice = rate_advice(config, 0.00293)
    assert advice["line"] is None and "first (highest) of schedule.params.values" in advice["meaning"]


@pytest.mark.parametrize(
    ("schedule", "says", "where"),
    [
        ("constant", "is the constant learning rate", ""),
        ("one_cycle", "is the 1cycle peak (max_lr)", " (the schedule takes its max_lr from optim.lr)"),
    ],
)
def test_lr_find_prints_which_rate_and_the_config_line(tmp_path, capsys, schedule, says, where):
    before = torch.get_num_threads()
    out = tmp_path / "lrf"
    try:
        code = main(["lr-find", "--set", "data.source=synthetic", "--set", "data.num_samples=400",
                     "--set", "model.depth=2", "--set", "model.width=16", "--set",
                     f"schedule.name={schedule}", "--set", "train.threads=1", "--steps", "60",
                     "--out", str(out)])
    finally:
        torch.set_num_threads(before)
    stdout = capsys.readouterr().out
    assert code == 0
    saved = json.loads((out / "lr_find.json").read_text())
    value = repr(float(f"{saved['suggestion']:.2g}"))
    assert f"schedule {schedule}: the suggestion {float(value):g} (lowest-loss lr ÷ 10) {says}" in stdout
    assert f"set in the config: optim.lr = {value}{where}   or: --set optim.lr={value}\n" in stdout
    assert saved["advice"]["field"] == "optim.lr"
