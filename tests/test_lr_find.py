"""The LR finder on a small synthetic problem: suggestion in range, exact restore, PNG."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainwell.data.dataset import Split
from trainwell.errors import UserError
from trainwell.train.lr_find import LRFindResult, lr_find, plot


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
