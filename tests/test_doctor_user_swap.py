"""The activation swap on a user's model: activation modules (nn.Sigmoid or the user's own
class computing one) are replaced after building; activations called in forward, and the
head's activation, stay."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from trainwell.cli.candidates import candidate_patches, code_changes
from trainwell.cli.runner import build_data, build_model
from trainwell.config import apply_patch, load_config
from trainwell.doctor.findings import Finding
from trainwell.doctor.signals import LayerSignals, Signals
from trainwell.nn import activation_modules, swap_activations
from trainwell.nn.swap import computes

CASES = Path(__file__).resolve().parents[1] / "cases"
sys.path.insert(0, str(CASES))
import case_models  # noqa: E402


def _sat() -> Finding:
    return Finding("saturation", ("layers.0",), {"saturated_share": {"layers.0": 0.9},
                   "at_initialization": True}, "", ("swap_activation", "reinit_by_activation",
                   "add_batch_norm", "switch_optimizer"), 0.9)  # fmt: skip


def test_computes_reads_the_function_off_a_custom_module():
    assert computes(case_models.Squash()) == "sigmoid"
    assert computes(case_models.Bend()) == "tanh"
    assert computes(case_models.Rectifier()) == "relu"
    assert computes(case_models.Swish()) == "silu"
    assert computes(nn.Sigmoid()) == "sigmoid"
    for other in (nn.Dropout(0.5), nn.Identity(), nn.Flatten(), nn.Linear(3, 3)):
        assert computes(other) is None
    softmax = nn.Sequential(nn.Linear(3, 3), nn.Softmax(dim=1), nn.Linear(3, 2))
    assert activation_modules(softmax, torch.randn(2, 3)) == []  # not element-wise: stays


def test_swap_replaces_module_and_custom_activations_but_not_the_heads():
    x = torch.randn(4, 64)
    for style in ("module", "custom"):
        net = case_models.Net(depth=5, act="sigmoid", style=style, head="sigmoid")
        names = swap_activations(net, "elu", x)
        assert names == [f"acts.{i}" for i in range(5)]
        assert all(isinstance(a, nn.ELU) for a in net.acts)
        assert not isinstance(net.head_act, nn.ELU)  # runs on the output: stays
        assert net(x).shape == (4, 10)
    functional = case_models.Net(depth=5, act="sigmoid", style="functional")
    assert swap_activations(functional, "elu", x) == []  # in forward: a code change


def test_one_shared_activation_instance_is_replaced_in_every_slot():
    act = nn.Tanh()
    net = nn.Sequential(nn.Linear(4, 8), act, nn.Linear(8, 8), act, nn.Linear(8, 2))
    assert len(activation_modules(net, torch.randn(2, 4))) == 1
    swap_activations(net, "elu", torch.randn(2, 4))
    assert isinstance(net[1], nn.ELU) and isinstance(net[3], nn.ELU)


def test_user_swap_is_a_patch_for_activation_modules_and_a_code_change_otherwise():
    signals = Signals(task="classification", layer_names=("layers.0", "out"),
                      layers={"layers.0": LayerSignals(activation="sigmoid"),
                              "out": LayerSignals()})
    module = load_config(CASES / "module_sigmoid_normal_deep.toml")
    queue = candidate_patches(module, [_sat()], "sigmoid")
    # saturation at init on a user's model: the swap (with its re-init) first
    assert [n for n, _ in queue] == ["swap_activation", "reinit_by_activation",
                                     "switch_optimizer"]
    assert queue[0][1] == {"model.swap_activation": "elu", "model.reinit": True,
                           "model.init": "auto", "model.bias_init": "zeros",
                           "model.head_init": None, "model.activation": "elu"}
    assert [c["repair"] for c in code_changes(module, [_sat()], signals)] == ["add_batch_norm"]
    functional = load_config(CASES / "functional_sigmoid_normal_deep.toml")
    assert [n for n, _ in candidate_patches(functional, [_sat()], "sigmoid")] == [
        "reinit_by_activation", "switch_optimizer"]
    assert [c["repair"] for c in code_changes(functional, [_sat()], signals)] == [
        "swap_activation", "add_batch_norm"]


def test_model_swap_activation_builds_the_swapped_user_model():
    config = load_config(CASES / "custom_sigmoid_normal_deep.toml")
    data = build_data(config)
    patched = apply_patch(config, candidate_patches(config, [_sat()], "sigmoid")[0][1])
    model = build_model(patched, data)
    assert sum(isinstance(m, nn.ELU) for m in model.modules()) == 20
    assert not any(isinstance(m, case_models.Squash) for m in model.modules())
    w = model.layers[1].weight.detach()
    assert abs(float(w.std()) - (2 / 64) ** 0.5) < 0.03  # He normal, the init ELU takes


def test_a_case_whose_only_fix_is_a_stated_code_change_is_not_auto_repairable():
    from trainwell.cli.candidates import auto_repairable
    from trainwell.cli.doctor_text import code_change_lines
    from trainwell.cli.repair_loop import DoctorResult, Trial

    head = Finding("bad_output_head", ("out",), {}, "", ("fix_output_head",), 1.0)
    stated = [{"finding": "bad_output_head", "repair": "fix_output_head",
               "change": "in forward, return the logits"}]
    assert auto_repairable([head], stated) is False
    assert auto_repairable([_sat()], [{"finding": "saturation", "repair": "add_batch_norm",
                                       "change": "…"}]) is True  # re-init, Adam are tried
    assert auto_repairable([head], []) is True  # trainwell's own model: fix_output_head runs
    assert auto_repairable([], []) is None
    result = DoctorResult([head], Trial(None, {}, 0.2, 2.0, ["bad_output_head"], 0.0),
                          code_changes=stated)
    assert code_change_lines(result) == [
        "\nnot repaired: the fix is a change to your model's code, which the doctor does not "
        "make; make it yourself:", "  bad_output_head: in forward, return the logits"]


def test_without_a_sample_the_activation_registered_after_the_head_stays():
    net = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 2), nn.Sigmoid())
    assert [n for n, _, _ in activation_modules(net)] == ["1"]
    assert [n for n, _, _ in activation_modules(net, torch.randn(2, 4))] == ["1"]
