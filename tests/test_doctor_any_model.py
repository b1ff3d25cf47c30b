"""The probes see every activation however it is written: modules, functions, custom modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from test_doctor_rules import _train
from trainwell.doctor import Probe
from trainwell.doctor.actstats import infer_activation, infer_head

FUNCS = {"relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


class Custom(nn.Module):
    """A user's own activation module (not in trainwell's registry)."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class Functional(nn.Module):
    """The same layers, activations called in ``forward``."""

    def __init__(self, linears: list[nn.Linear], act: str, head_fn=None) -> None:
        super().__init__()
        self.linears = nn.ModuleList(linears)
        self.act, self.head_fn = FUNCS[act], head_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for lin in self.linears[:-1]:
            x = self.act(lin(x))
        x = self.linears[-1](x)
        return self.head_fn(x) if self.head_fn is not None else x


def _linears(depth: int, bias: float | None = None, std: float | None = None, out: int = 4):
    torch.manual_seed(0)
    sizes = [16] + [12] * depth + [out]
    layers = [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
    with torch.no_grad():
        for i, lin in enumerate(layers[:-1]):
            if std is not None:
                lin.weight.normal_(0.0, std)
            if bias is not None:
                lin.bias.fill_(bias * (i % 2))  # every other layer shifted down
    return layers


def _three_ways(act: str, **kw) -> list[nn.Module]:
    mods = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
    out = []
    for way in ("module", "functional", "custom"):
        lins = _linears(**kw)
        if way == "functional":
            out.append(Functional(lins, act))
            continue
        seq: list[nn.Module] = []
        for lin in lins[:-1]:
            seq += [lin, mods[act]() if way == "module" else Custom(FUNCS[act])]
        out.append(nn.Sequential(*seq, lins[-1]))
    return out


def _record(model: nn.Module) -> dict:
    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(2)) * 2.0
    probe = Probe(model)
    probe.arm()
    F.cross_entropy(model(x), torch.arange(64) % 4).backward()
    probe.grads()
    return probe.record(0)


@pytest.mark.parametrize(
    ("act", "kw", "key"),
    [
        ("relu", {"depth": 4, "bias": -2.0}, "dead_share"),
        ("sigmoid", {"depth": 3, "std": 3.0}, "saturated_share"),
        ("tanh", {"depth": 3, "std": 3.0}, "saturated_share"),
    ],
)
def test_same_net_written_three_ways_gives_the_same_statistics(act, kw, key):
    records = [_record(m) for m in _three_ways(act, **kw)]
    stats = [[layer[key] for layer in list(r["layers"].values())[:-1]] for r in records]
    assert stats[0] == stats[1] == stats[2]
    assert all(v is not None for v in stats[0]) and max(stats[0]) > 0.3  # a real signal


def test_dead_units_from_negative_biases_found_when_relu_is_functional():
    model = Functional(_linears(4, bias=-3.0), "relu")
    kinds, w = _train(model, lr=0.05)
    assert kinds[0] == "dying_relu"
    assert w.health.probes[1]["layers"]["linears.1"]["act_kind"] == "relu"


def test_healthy_sigmoid_before_bce_is_not_a_bad_head():
    torch.manual_seed(0)
    model = Functional(
        [nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 1)], "relu", torch.sigmoid
    )
    kinds, w = _train(model, loss="bce", k=2, lr=0.2, epochs=4)
    assert "bad_output_head" not in kinds
    assert {p["output_activation"] for p in w.health.probes} == {"sigmoid"}


@pytest.mark.parametrize("way", ["functional", "custom"])
def test_softmax_over_one_unit_is_flagged_however_written(way):
    torch.manual_seed(0)
    lins = [nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 1)]
    head = lambda z: torch.softmax(z, dim=1)  # noqa: E731
    if way == "functional":
        model: nn.Module = Functional(lins, "relu", head)
    else:
        model = nn.Sequential(lins[0], nn.ReLU(), lins[1], nn.ReLU(), lins[2], Custom(head))
    kinds, w = _train(model, loss="bce", k=2)
    assert kinds[0] == "bad_output_head" and "dying_relu" not in kinds
    assert w.health.probes[0]["output_activation"] == "softmax"


def test_inference_by_match_and_by_range():
    z = torch.linspace(-3, 3, 60).reshape(5, 12)
    assert infer_activation(z, torch.relu(z)) == "relu"
    assert infer_activation(z, torch.sigmoid(z)) == "sigmoid"
    assert infer_activation(z, torch.tanh(z)) == "tanh"
    assert infer_activation(z, z) is None
    pooled = torch.relu(z)[:, ::2]  # shapes differ: the range decides
    assert infer_activation(z, pooled) == "relu"
    assert infer_activation(z, torch.sigmoid(z)[:, ::2]) == "sigmoid"
    assert infer_activation(z, 5 * z[:, ::2]) is None
    assert infer_head(z, z + 0) is None
    assert infer_head(z, torch.softmax(z, -1)) == "softmax"
    assert infer_head(z, torch.sigmoid(z).reshape(-1)) == "sigmoid"
    assert infer_head(z.abs(), z.abs()) is None  # all-positive logits are still logits
