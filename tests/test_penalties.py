"""Weight penalties vs float64 references, and which parameters they cover."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainwell.errors import UserError
from trainwell.optim.penalties import Penalty, weight_parameters


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3),
        nn.BatchNorm2d(3),
        nn.Flatten(),
        nn.Linear(12, 5),
        nn.LayerNorm(5),
        nn.Linear(5, 2, bias=False),
    ).double()


def test_weight_parameters_selection():
    m = _model()
    conv, bn, lin, ln, head = m[0], m[1], m[3], m[4], m[5]
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(weight_parameters(m)) == ids([conv.weight, lin.weight, head.weight])
    assert ids(weight_parameters(m, include_bias=True)) == ids(
        [conv.weight, conv.bias, lin.weight, lin.bias, head.weight]
    )
    assert ids(weight_parameters(m, include_norm=True)) == ids(
        [conv.weight, bn.weight, bn.bias, lin.weight, ln.weight, ln.bias, head.weight]
    )
    head.weight.requires_grad_(False)
    assert id(head.weight) not in ids(weight_parameters(m))


def test_shared_parameter_counted_once():
    a = nn.Linear(3, 3)
    m = nn.Sequential(a, nn.ReLU(), a)
    assert len(weight_parameters(m)) == 1


def test_penalty_value_and_gradient_match_float64_reference():
    m = _model()
    pen = Penalty(l1=1e-3, l2=5e-4)
    ws = weight_parameters(m)
    ref = sum(1e-3 * w.detach().abs().sum() + 5e-4 * (w.detach() ** 2).sum() for w in ws)
    val = pen(m)
    assert val.item() == pytest.approx(ref.item(), rel=1e-14)
    val.backward()
    for w in ws:
        torch.testing.assert_close(
            w.grad, 1e-3 * torch.sign(w.detach()) + 2 * 5e-4 * w.detach(), rtol=1e-13, atol=0
        )
    assert m[0].bias.grad is None and m[1].weight.grad is None


def test_l2_equals_half_torch_weight_decay_with_sgd():
    m1, m2 = _model(), _model()
    x = torch.randn(4, 1, 4, 4, dtype=torch.float64)
    pen = Penalty(l2=0.01)
    ws2 = weight_parameters(m2)
    opt1 = torch.optim.SGD(m1.parameters(), lr=0.1)
    opt2 = torch.optim.SGD([{"params": ws2, "weight_decay": 0.02}], lr=0.1)
    (m1(x).sum() + pen(m1)).backward()
    opt1.step()
    m2(x).sum().backward()
    opt2.step()
    for p, q in zip(weight_parameters(m1), ws2):
        torch.testing.assert_close(p, q, rtol=1e-13, atol=1e-15)


def test_zero_penalty_and_errors():
    m = _model()
    z = Penalty()(m)
    assert z.item() == 0.0 and not z.requires_grad
    assert not Penalty().active and Penalty(l1=0.1).active
    assert "l2=0.5" in repr(Penalty(l2=0.5))
    with pytest.raises(
        UserError, match=r"l1: must be a finite number >= 0, got -0.1"
    ):
        Penalty(l1=-0.1)
    with pytest.raises(UserError, match=r"l2: .* got nan"):
        Penalty(l2=float("nan"))
