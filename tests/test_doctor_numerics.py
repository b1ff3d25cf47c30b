"""Probe statistics stay finite and exact when a head's outputs collapse at any magnitude."""

from __future__ import annotations

import math

import pytest
import torch

from trainwell.doctor.probes import HIST_BINS, _activation_stats


@pytest.mark.parametrize("value", [1e12, 1e30, -1e30])
def test_collapsed_outputs_at_any_magnitude(value):
    # Every output equal: the old code set hi = lo + 1e-6, which is lo again above ~1e10,
    # and divided by zero.
    y = torch.full((8, 3), value, dtype=torch.float32)
    st = _activation_stats(None, (), y)
    assert st["hist"] == [24] + [0] * (HIST_BINS - 1)
    assert st["hist_range"] == [float(y[0, 0])] * 2
    assert st["act_mean"] == pytest.approx(float(y[0, 0]), rel=1e-6)
    assert st["act_std"] == 0.0


def test_spread_outputs_near_float32_limit_have_finite_moments():
    # 1e30 squared overflows float32; the pre-scaled float64 moments stay exact.
    y = torch.tensor([[1e30, 3e30], [1e30, 3e30]], dtype=torch.float32)
    st = _activation_stats(None, (), y)
    ref = torch.tensor([float(v) for v in y.flatten()], dtype=torch.float64)
    assert st["act_mean"] == pytest.approx(float(ref.mean()), rel=1e-6)
    assert st["act_std"] == pytest.approx(float(ref.std()), rel=1e-6)
    assert sum(st["hist"]) == 4 and st["hist"][0] == 2 and st["hist"][-1] == 2


def test_float64_values_whose_range_overflows():
    y = torch.tensor([[-1e308, 1e308], [0.0, 1e308]], dtype=torch.float64)
    st = _activation_stats(None, (), y)
    assert st["hist"][0] == 1 and st["hist"][HIST_BINS // 2] == 1 and st["hist"][-1] == 2
    assert math.isfinite(st["act_mean"]) and math.isfinite(st["act_std"])


def test_inf_and_nan_outputs_are_left_out():
    y = torch.tensor([[math.inf, 2.0], [math.nan, 4.0]])
    st = _activation_stats("sigmoid", (), y)
    assert st["act_mean"] == 3.0 and st["hist_range"] == [2.0, 4.0]
    assert st["act_std"] == pytest.approx(math.sqrt(2.0))
    every = _activation_stats("relu", (), torch.full((4, 2), math.nan))
    assert math.isnan(every["act_mean"]) and "hist" not in every and every["dead_share"] == 0.0
