"""A too-high-LR finding without a loss rise is not primary over an init cause."""

from __future__ import annotations

from trainwell.doctor.causes import rank
from trainwell.doctor.findings import Finding


def _lr(rising: bool, up: float) -> Finding:
    # method_tanh_normal_deep: only a step of 44.8× a layer's weights, no loss rise
    ev = {"loss_rising": rising, "loss_up_share": up, "update_ratio_peak": 44.8}
    return Finding("lr_too_high", (), ev, "", ("lr_down",), 1.0)


def _sat() -> Finding:
    ev = {"saturated_share": {"layers.0": 0.99}, "at_initialization": True}
    return Finding("saturation", ("layers.0",), ev, "", ("swap_activation",), 0.6)


def test_saturation_at_init_explains_huge_steps_without_a_loss_rise():
    ranked = rank([_lr(False, 0.0), _sat()])
    assert [f.kind for f in ranked] == ["saturation", "lr_too_high"]
    assert ranked[1].explained_by == "saturation"


def test_a_loss_that_rises_or_oscillates_keeps_the_learning_rate_a_cause():
    for lr in (_lr(True, 0.0), _lr(False, 0.5)):
        ranked = rank([lr, _sat()])
        assert ranked[0].kind == "lr_too_high" and ranked[1].explained_by is None


def test_a_bad_head_explains_a_loss_trend_that_reads_as_a_high_rate():
    # functional_softmax_nll: softmax under nll, the "loss" falls below 0, up share 0.56
    head = Finding("bad_output_head", ("out",), {"loss": "nll"}, "", ("fix_output_head",), 1.0)
    ranked = rank([_lr(False, 0.56), head])
    assert [f.kind for f in ranked] == ["bad_output_head", "lr_too_high"]
    assert ranked[1].explained_by == "bad_output_head"
