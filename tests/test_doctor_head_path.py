"""The head's nature comes from what produces the output, however the net is written."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from trainwell.doctor.findings import Health
from trainwell.doctor.probes import Probe
from trainwell.doctor.signals import signals

CASES = Path(__file__).resolve().parents[1] / "cases"
STYLES = ("module", "functional", "method", "custom")


def _case_models():
    spec = importlib.util.spec_from_file_location("case_models_head", CASES / "case_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _probe(net: torch.nn.Module) -> dict:
    probe = Probe(net, every=1)
    probe.arm()
    net.train()
    out = net(torch.randn(64, 64, generator=torch.Generator().manual_seed(0)))
    out.sum().backward()
    probe.grads()
    probe.update()
    return probe.record(0, 1.0, 0)


@pytest.mark.parametrize("style", STYLES)
def test_a_linear_head_after_module_activations_registered_last_is_logits(style):
    # module style registers the 20 sigmoids after the head Linear: the first of them is no
    # output activation (module_sigmoid_normal_deep got bad_output_head from it)
    torch.manual_seed(0)
    net = _case_models().Net(depth=20, act="sigmoid", style=style, init="normal")
    rec = _probe(net)
    assert rec["head_measured"] is True and rec["output_activation"] is None
    hidden = [rec["layers"][f"layers.{i}"]["act_kind"] for i in range(20)]
    assert hidden == ["sigmoid"] * 20  # every style, every hidden layer
    assert rec["layers"]["out"]["act_kind"] is None


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("head", ["sigmoid", "relu", "softmax"])
def test_an_output_activation_is_seen_in_every_style(style, head):
    if style == "custom" and head == "softmax":
        pytest.skip("the case models have no custom softmax")
    torch.manual_seed(0)
    net = _case_models().Net(depth=3, act="relu", style=style, head=head)
    rec = _probe(net)
    assert rec["head_measured"] is True and rec["output_activation"] == head


def test_signals_prefer_the_measured_head_over_the_declared_one():
    torch.manual_seed(0)
    net = _case_models().Net(depth=4, act="sigmoid", style="module", init="normal")
    probe = Probe(net, every=1)
    assert probe.layers[-1].activation == "sigmoid"  # the registration-order guess
    health = Health(layers=[i.meta() for i in probe.layers], probes=[_probe(net)],
                    context={"task": "classification", "loss": "cross_entropy",
                             "num_classes": 10, "output_activation": "sigmoid",
                             "out_features": 10})
    s = signals(health)
    assert s.output_activation is None and s.layers["out"].activation is None
    assert s.layers["layers.0"].activation == "sigmoid"
    # an old record without the flag keeps the declared head
    old = Health(layers=health.layers, probes=[{**health.probes[0], "head_measured": False}],
                 context=health.context)
    assert signals(old).output_activation == "sigmoid"
