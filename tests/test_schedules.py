"""Schedules vs float64 reference formulas, validation messages, composition and apply()."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from trainwell.errors import UserError
from trainwell.optim import schedules as S

STEPS = [0, 1, 2, 5, 9, 10, 11, 99, 100, 101, 500, 999, 1000, 5000]


def test_constant_power_exponential_match_formulas():
    t = np.array(STEPS, dtype=np.float64)
    np.testing.assert_allclose([S.constant(0.3)(k) for k in STEPS], 0.3, rtol=0)
    ref = 0.1 / (1 + t / 20.0) ** 1.5
    np.testing.assert_allclose([S.power(0.1, 20.0, 1.5)(k) for k in STEPS], ref, rtol=1e-15)
    ref = 0.1 / (1 + t / 7.0)
    np.testing.assert_allclose([S.power(0.1, 7)(k) for k in STEPS], ref, rtol=1e-15)
    ref = 0.05 * 0.1 ** (t / 100.0)
    np.testing.assert_allclose([S.exponential(0.05, 100)(k) for k in STEPS], ref, rtol=1e-14)


def test_piecewise_switches_at_boundaries():
    s = S.piecewise([10, 100], [1.0, 0.5, 0.1])
    assert [s(k) for k in (0, 9, 10, 11, 99, 100, 5000)] == [1.0, 1.0, 0.5, 0.5, 0.5, 0.1, 0.1]


def test_cosine_formula_and_hold():
    s = S.cosine(0.2, 1000, final_lr=0.01)
    for k in STEPS:
        tc = min(k, 1000)
        ref = 0.01 + (0.2 - 0.01) * 0.5 * (1 + math.cos(math.pi * tc / 1000))
        assert s(k) == pytest.approx(ref, rel=1e-14, abs=1e-17)
    assert s.total_steps == 1000
    with pytest.raises(ValueError, match="cosine: total_steps is unset"):
        S.cosine(0.1)(3)


@pytest.mark.parametrize(
    ("factory", "kwargs", "match"),
    [
        (S.power, {"lr0": 0.1, "s": 0}, r"power: s must be > 0, got 0"),
        (S.power, {"lr0": -1, "s": 1}, r"power: lr0 must be > 0, got -1"),
        (S.power, {"lr0": 0.1, "s": 1, "c": math.inf}, r"power: c must be a finite number"),
        (S.exponential, {"lr0": 0.1, "s": -2}, r"exponential: s must be > 0, got -2"),
        (
            S.piecewise,
            {"boundaries": [5, 5], "values": [1, 2, 3]},
            r"piecewise: boundaries must be strictly",
        ),
        (
            S.piecewise,
            {"boundaries": [5], "values": [1]},
            r"piecewise: values must have len\(boundaries\)\+1 = 2",
        ),
        (
            S.cosine,
            {"lr0": 0.1, "total_steps": 0},
            r"cosine: total_steps must be an integer >= 1, got 0",
        ),
        (
            S.one_cycle,
            {"max_lr": 0.1, "total_steps": 100, "warmup_fraction": 0.7},
            r"warmup_fraction must be <= 0.5",
        ),
        (
            S.one_cycle,
            {"max_lr": 0.1, "total_steps": 100, "anneal": "exp"},
            r"anneal must be 'linear' or 'cos'",
        ),
        (
            S.one_cycle,
            {"max_lr": 0.1, "total_steps": 2},
            r"one_cycle: total_steps must be an integer >= 3",
        ),
        (
            S.one_cycle,
            {"max_lr": 0.1, "total_steps": 4, "warmup_fraction": 0.1},
            r"total_steps is too short",
        ),
        (
            S.one_cycle,
            {"max_lr": 0.1, "momentum": (0.9, 1.5)},
            r"one_cycle: momentum must be None or two",
        ),
        (
            S.warmup,
            {"schedule": S.constant(1.0), "warmup_steps": 0},
            r"warmup: warmup_steps must be an integer >= 1",
        ),
        (
            S.join,
            {"schedules": [S.constant(1.0)], "boundaries": [3]},
            r"join: schedules must number",
        ),
        (S.Performance, {"factor": 1.0}, r"performance: factor must be < 1, got 1.0"),
        (S.Performance, {"patience": -1}, r"performance: patience must be an integer >= 0"),
        (S.Performance, {"mode": "up"}, r"performance: mode must be 'min' or 'max'"),
    ],
)
def test_validation_messages(factory, kwargs, match):
    with pytest.raises(ValueError, match=match):
        factory(**kwargs)


def test_negative_step_is_refused():
    with pytest.raises(ValueError, match="step must be >= 0"):
        S.constant(1.0)(-1)


def test_one_cycle_shape_and_momentum():
    T, peak = 1000, 0.4
    s = S.one_cycle(peak, T)  # n = 450: up over [0, 450], down over [450, 900], anneal to 999
    start, final = peak / 10, peak / 10 / 1e3
    assert s(0) == pytest.approx(start, rel=1e-15)
    assert s(450) == pytest.approx(peak, rel=1e-15)
    assert s(900) == pytest.approx(start, rel=1e-15)
    assert s(999) == pytest.approx(final, rel=1e-12)
    assert s(5000) == pytest.approx(final, rel=1e-12)
    lrs = np.array([s(k) for k in range(T)])
    assert int(np.argmax(lrs)) == 450
    # float64 reference by np.interp through the anchors
    ref = np.interp(np.arange(T), [0, 450, 900, 999], [start, peak, start, final])
    np.testing.assert_allclose(lrs, ref, rtol=1e-12)
    mom = np.array([s.momentum(k) for k in range(T)])
    np.testing.assert_allclose(
        mom, np.interp(np.arange(T), [0, 450, 900, 999], [0.95, 0.85, 0.95, 0.95]), rtol=1e-12
    )
    # inverse: lr up while momentum down
    assert np.all(np.diff(lrs[:450]) > 0) and np.all(np.diff(mom[:450]) < 0)
    assert S.one_cycle(peak, T, momentum=None).momentum(10) is None


def test_one_cycle_cos_anneal():
    s = S.one_cycle(1.0, 101, warmup_fraction=0.5, anneal="cos", start_div=4)  # n = 50
    for k in (0, 10, 25, 50, 75):
        frac = (k if k <= 50 else 100 - k) / 50
        ref = 0.25 + 0.75 * 0.5 * (1 - math.cos(math.pi * frac))
        assert s(k) == pytest.approx(ref, rel=1e-14)
    assert s(100) == pytest.approx(0.25 / 1e3)


def test_schedules_pickle_repr_and_equality():
    for s in (
        S.power(0.1, 3),
        S.one_cycle(0.1, 50),
        S.warmup(S.cosine(0.1, 30), 5),
        S.piecewise([2], [1, 2]),
    ):
        assert pickle.loads(pickle.dumps(s)) == s
    assert repr(S.power(0.1, 3)) == "Power(lr0=0.1, s=3, c=1.0)"


def test_warmup_unshifted_and_shifted():
    inner = S.cosine(1.0, 100)
    w = S.warmup(inner, 10, start_lr=0.1)
    assert w(0) == pytest.approx(0.1)
    assert w(5) == pytest.approx(0.1 + (inner(10) - 0.1) * 0.5, rel=1e-14)
    assert [w(k) for k in (10, 50, 100)] == [inner(10), inner(50), inner(100)]
    assert w.total_steps == 100
    ws = S.warmup(inner, 10, shift=True)
    assert ws(5) == pytest.approx(0.5 * inner(0), rel=1e-14)
    assert [ws(k) for k in (10, 60)] == [inner(0), inner(50)]
    assert ws.total_steps == 110
    assert S.warmup(S.one_cycle(1.0, 100), 10, shift=True).momentum(3) == pytest.approx(0.95)


def test_join_shifts_each_schedule():
    a, b = S.constant(0.5), S.exponential(1.0, 10)
    j = S.join([a, b], [20])
    assert j(19) == 0.5 and j(20) == 1.0 and j(30) == pytest.approx(0.1, rel=1e-14)
    assert S.join([a, S.cosine(1.0, 80)], [20]).total_steps == 100


def test_check_and_with_total_steps():
    s = S.one_cycle(0.1, 1000)
    msg = (
        r"schedule.total_steps: one_cycle was built for 1000 steps but the run has 2260 "
        r"\(20 epochs × 113 batches\); set total_steps=2260 or leave it unset"
    )
    with pytest.raises(UserError, match=msg):
        S.check_total_steps(s, 2260, epochs=20, steps_per_epoch=113)
    S.check_total_steps(s, 1000)
    S.check_total_steps(S.constant(1.0), 7)
    unset = S.one_cycle(0.1)
    assert unset.total_steps is None
    filled = S.with_total_steps(unset, 2260)
    assert filled.total_steps == 2260 and unset.total_steps is None
    assert S.with_total_steps(s, 5) is s
    w = S.with_total_steps(S.warmup(S.cosine(1.0), 10, shift=True), 110)
    assert w.total_steps == 110 and w.schedule.total_steps == 100
    j = S.with_total_steps(S.join([S.constant(1.0), S.cosine(1.0)], [20]), 100)
    assert j.total_steps == 100
    p = S.with_total_steps(S.Performance(schedule=S.cosine(1.0)), 50)
    assert p.total_steps == 50


def test_performance_reduces_after_patience_and_respects_min_lr():
    p = S.Performance(factor=0.5, patience=2, min_lr=0.03, schedule=S.constant(0.1))
    reduced = [p.update(v) for v in [1.0, 0.9, 0.9, 0.9, 0.9, 0.95, 0.95, 0.95]]
    # best 0.9 at epoch 2; bad epochs 3, 4 (== patience), 5 -> reduce; 6, 7, 8 -> reduce
    assert reduced == [False, False, False, False, True, False, False, True]
    assert p.scale == 0.25 and p.num_reductions == 2
    assert p(0) == 0.03  # 0.1 * 0.25 = 0.025, floored at min_lr
    assert p.lr(1.0) == 0.25


def test_performance_threshold_mode_max_and_cooldown():
    p = S.Performance(factor=0.1, patience=0, mode="max", threshold=0.01, cooldown=2)
    assert p.update(0.5) is False  # first value is the best
    assert p.update(0.504) is True  # < 0.5 * 1.01: no improvement
    assert [p.update(0.4), p.update(0.4), p.update(0.4)] == [False, False, True]
    assert p.scale == pytest.approx(0.01)
    assert p.update(float("nan")) is False


def test_performance_state_round_trip():
    a = S.Performance(patience=1, schedule=S.constant(1.0))
    for v in [3.0, 2.0, 2.5, 2.5, 2.4]:
        a.update(v)
    b = S.Performance(patience=1, schedule=S.constant(1.0))
    b.load_state_dict(pickle.loads(pickle.dumps(a.state_dict())))
    assert b.state_dict() == a.state_dict()
    for v in [2.6, 2.7, 1.0, 3.0]:
        assert a.update(v) == b.update(v)
    assert a.scale == b.scale
    with pytest.raises(ValueError, match="missing keys"):
        b.load_state_dict({})


def test_performance_composes_with_warmup():
    p = S.Performance(factor=0.5, patience=0, schedule=S.warmup(S.constant(1.0), 4))
    assert p(2) == 0.5
    p.update(1.0)
    p.update(2.0)
    assert p(2) == 0.25 and p(10) == 0.5


def test_apply_writes_groups_lr_scale_and_momentum():
    w1, w2 = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    sgd = torch.optim.SGD(
        [{"params": [w1]}, {"params": [w2], "lr_scale": 0.1}], lr=1.0, momentum=0.9
    )
    s = S.one_cycle(1.0, 100)
    assert S.apply(sgd, s, 45, scale=0.5) == 0.5
    assert sgd.param_groups[1]["lr"] == pytest.approx(0.05)
    assert sgd.param_groups[0]["momentum"] == pytest.approx(0.85)
    adam = torch.optim.Adam([w1], lr=1.0, betas=(0.9, 0.999))
    S.apply(adam, s, 0)
    assert adam.param_groups[0]["betas"] == (0.95, 0.999) and adam.param_groups[0][
        "lr"
    ] == pytest.approx(0.1)
    S.apply(adam, S.constant(0.3), 0)
    assert adam.param_groups[0]["betas"] == (0.95, 0.999)  # no momentum: left alone


def test_build_registry_and_user_errors():
    assert set(S.SCHEDULES) == {
        "constant",
        "power",
        "exponential",
        "piecewise",
        "cosine",
        "one_cycle",
    }
    assert S.build("piecewise", boundaries=[3], values=[1.0, 0.1])(3) == 0.1
    assert S.build("one_cycle", max_lr=0.1, total_steps=100, momentum=[0.9, 0.8]).momentum(0) == 0.9
    p = S.build("performance", lr=0.2, patience=3)
    assert isinstance(p, S.Performance) and p(0) == 0.2 and p.patience == 3
    with pytest.raises(UserError, match=r"^schedule.s: power: s must be > 0, got 0$"):
        S.build("power", lr0=0.1, s=0)
    with pytest.raises(
        UserError, match=r"schedule.gamma: unknown argument for power; valid: lr0, s, c"
    ):
        S.build("power", lr0=0.1, s=1, gamma=2)
    with pytest.raises(UserError, match=r"schedule.lr0: required by exponential"):
        S.build("exponential", s=1)
    with pytest.raises(UserError, match=r"schedule.name: unknown schedule 'step'"):
        S.build("step")
    with pytest.raises(UserError, match=r"schedule.factor: performance: factor must be < 1"):
        S.build("performance", lr=0.1, factor=2.0)


def test_performance_factory_reduces_after_patience_and_composes():
    from trainwell.optim.schedules import constant, performance

    ctl = performance(factor=0.5, patience=2, min_lr=0.02, schedule=constant(0.1))
    for metric in (1.0, 1.1, 1.2):  # best, then 2 bad epochs: patience not yet exceeded
        ctl.update(metric)
    assert ctl.scale == 1.0
    ctl.update(1.3)  # the 3rd bad epoch in a row
    assert ctl.scale == 0.5 and ctl(0) == pytest.approx(0.05)
    for metric in (1.3, 1.4, 1.5, 1.6, 1.7, 1.8):
        ctl.update(metric)
    assert ctl(0) == 0.02  # never below min_lr
