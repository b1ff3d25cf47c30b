"""Repairs for a user's model: re-initialization by walking its modules, code changes stated
plainly for what only its code can change, and a repair that keeps the user's loss."""

from __future__ import annotations

from pathlib import Path

import torch

from trainwell.cli.candidates import candidate_patches, code_change, code_changes
from trainwell.cli.runner import build_data, build_model
from trainwell.config import apply_patch, load_config
from trainwell.doctor import REPAIRS
from trainwell.doctor.findings import Finding
from trainwell.doctor.signals import LayerSignals, Signals

CASES = Path(__file__).resolve().parents[1] / "cases"


def _dead(bias: float = -3.0) -> Finding:
    return Finding("dying_relu", ("layers.0",), {"dead_share": {"layers.0": 1.0},
                   "bias_mean_start": bias}, "", ("swap_activation", "reinit_by_activation",
                   "lr_down"), 1.0)  # fmt: skip


def test_a_user_models_dead_biases_are_repaired_by_reinit_first_and_no_code_edit_is_tried():
    config = load_config(CASES / "functional_relu_negative_bias.toml")
    names = [n for n, _ in candidate_patches(config, [_dead()], "relu")]
    assert names == ["reinit_by_activation", "lr_down"]  # swap_activation cannot edit forward
    patch = candidate_patches(config, [_dead()], "relu")[0][1]
    assert patch == {"model.reinit": True, "model.init": "auto", "model.bias_init": "zeros",
                     "model.head_init": None, "model.activation": "relu"}


def test_reinit_goes_first_for_an_init_cause_on_trainwells_own_models_too():
    config = load_config(CASES / "relu_negative_bias.toml")
    assert [n for n, _ in candidate_patches(config, [_dead()])][0] == "reinit_by_activation"
    # dead units without negative biases keep the rule's order
    assert [n for n, _ in candidate_patches(config, [_dead(0.0)])][0] == "swap_activation"
    assert REPAIRS["reinit_by_activation"].patch(config) == {"model.init": "auto",
                                                             "model.bias_init": "zeros"}


def test_model_reinit_walks_a_user_models_modules():
    config = load_config(CASES / "functional_relu_negative_bias.toml")
    data = build_data(config)
    broken = build_model(config, data)
    fixed = build_model(apply_patch(config, {"model.reinit": True, "model.activation": "relu"}),
                        data)
    assert float(broken.layers[0].bias.detach().mean()) == -3.0
    assert all(float(layer.bias.detach().abs().max()) == 0.0 for layer in fixed.layers)
    w = fixed.layers[1].weight.detach()
    assert abs(float(w.std()) - (2 / 64) ** 0.5) < 0.03  # He normal for relu: std √(2/64)
    again = build_model(apply_patch(config, {"model.reinit": True}), data)
    assert torch.equal(again.layers[1].weight.detach(), w)  # seeded: the same weights each build


def _signals(act: str | None, loss: str, task: str = "classification") -> Signals:
    return Signals(task=task, loss=loss, output_activation=act, layer_names=("l0", "out"),
                   layers={"l0": LayerSignals(activation="relu"), "out": LayerSignals()})


def test_code_changes_name_the_exact_edit():
    config = load_config(CASES / "functional_relu_output_head.toml")
    head = Finding("bad_output_head", ("out",), {}, "", ("fix_output_head",), 1.0)
    assert candidate_patches(config, [head], "relu") == []  # nothing to try: say so
    changes = code_changes(config, [head], _signals("relu", "cross_entropy"))
    assert changes == [{"finding": "bad_output_head", "repair": "fix_output_head", "change":
                        "in forward, return the output layer's logits without the relu on "
                        "them, one per class, and set train.loss = \"auto\" (cross-entropy "
                        "applies the softmax itself)"}]
    assert code_change("fix_output_head", _signals("softmax", "nll")).startswith(
        "in forward, apply log_softmax instead of softmax to the output")
    assert code_change("swap_activation", _signals(None, "cross_entropy")) == (
        "in forward, replace the relu activations with LeakyReLU (F.leaky_relu)")
    own = load_config(CASES / "relu_negative_bias.toml")
    assert code_changes(own, [head], _signals("relu", "cross_entropy")) == []


def test_fix_output_head_keeps_a_regression_loss():
    config = load_config(CASES / "regression_sigmoid_mae.toml")
    patch = REPAIRS["fix_output_head"].patch(config)
    assert patch == {"model.output_activation": None, "model.out_features": None,
                     "train.loss": "mae"}
    ce = apply_patch(load_config(CASES / "relu_negative_bias.toml"),
                     {"model.output_activation": "softmax"})
    assert REPAIRS["fix_output_head"].patch(ce)["train.loss"] == "auto"


def test_no_trials_for_the_symptoms_of_a_head_only_code_can_fix():
    config = load_config(CASES / "functional_softmax_nll.toml")
    head = Finding("bad_output_head", ("out",), {}, "", ("fix_output_head",), 1.0)
    lr = Finding("lr_too_high", (), {}, "", ("lr_down", "add_schedule"), 1.0,
                 explained_by="bad_output_head")
    assert candidate_patches(config, [head, lr], "relu") == []
    alone = Finding("lr_too_high", (), {}, "", ("lr_down", "add_schedule"), 1.0)
    assert [n for n, _ in candidate_patches(config, [head, alone], "relu")] == [
        "lr_down", "add_schedule"]  # an independent cause is still repaired
