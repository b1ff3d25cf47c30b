"""Activations: values and derivatives against closed-form float64 formulas."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainwell.errors import UserError
from trainwell.nn import ACTIVATIONS, activation, name_of_activation

POINTS = [-3.0, -0.5, -1e-3, 1e-3, 0.5, 3.0]
SELU_L = 1.0507009873554804934193349852946
SELU_A = 1.6732632423543772848170429916717
RRELU_SLOPE = (1.0 / 8.0 + 1.0 / 3.0) / 2.0  # eval-mode slope (l + u)/2 with torch's l, u


def sig(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def phi(z: float) -> float:  # standard normal density
    return math.exp(-z * z / 2.0) / math.sqrt(2.0 * math.pi)


def Phi(z: float) -> float:  # standard normal CDF
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def sp(z: float) -> float:
    return math.log1p(math.exp(z))


def leaky(a: float):
    return (lambda z: z if z > 0 else a * z, lambda z: 1.0 if z > 0 else a)


# name → (kwargs, f, f')
CASES = {
    "relu": ({}, lambda z: max(0.0, z), lambda z: 1.0 if z > 0 else 0.0),
    "leaky_relu": ({}, *leaky(0.01)),
    "prelu": ({}, *leaky(0.25)),
    "rrelu": ({}, *leaky(RRELU_SLOPE)),
    "elu": (
        {},
        lambda z: z if z > 0 else math.expm1(z),
        lambda z: 1.0 if z > 0 else math.exp(z),
    ),
    "selu": (
        {},
        lambda z: SELU_L * (z if z > 0 else SELU_A * math.expm1(z)),
        lambda z: SELU_L * (1.0 if z > 0 else SELU_A * math.exp(z)),
    ),
    "gelu": ({}, lambda z: z * Phi(z), lambda z: Phi(z) + z * phi(z)),
    "silu": ({}, lambda z: z * sig(z), lambda z: sig(z) * (1.0 + z * (1.0 - sig(z)))),
    "swish": ({}, lambda z: z * sig(z), lambda z: sig(z) * (1.0 + z * (1.0 - sig(z)))),
    "mish": (
        {},
        lambda z: z * math.tanh(sp(z)),
        lambda z: math.tanh(sp(z)) + z * (1.0 - math.tanh(sp(z)) ** 2) * sig(z),
    ),
    "sigmoid": ({}, sig, lambda z: sig(z) * (1.0 - sig(z))),
    "tanh": ({}, math.tanh, lambda z: 1.0 - math.tanh(z) ** 2),
    "softplus": ({}, sp, sig),
    "identity": ({}, lambda z: z, lambda z: 1.0),
    "linear": ({}, lambda z: z, lambda z: 1.0),
    # non-default parameters reach the module
    "leaky_relu(alpha=0.2)": ({"alpha": 0.2}, *leaky(0.2)),
    "elu(alpha=0.5)": (
        {"alpha": 0.5},
        lambda z: z if z > 0 else 0.5 * math.expm1(z),
        lambda z: 1.0 if z > 0 else 0.5 * math.exp(z),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_values_and_derivatives_match_formulas(case):
    kwargs, f, df = CASES[case]
    module = activation(case.split("(")[0], **kwargs).double().eval()
    z = torch.tensor(POINTS, dtype=torch.float64, requires_grad=True)
    y = module(z)
    (grad,) = torch.autograd.grad(y.sum(), z)
    expected = torch.tensor([f(p) for p in POINTS], dtype=torch.float64)
    expected_grad = torch.tensor([df(p) for p in POINTS], dtype=torch.float64)
    torch.testing.assert_close(y.detach(), expected, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-15)


def test_softmax_values_and_jacobian():
    z = torch.tensor([[-3.0, -0.5, -1e-3, 1e-3, 0.5, 3.0]], dtype=torch.float64)
    module = activation("softmax")
    e = [math.exp(v) for v in z[0].tolist()]
    p = torch.tensor([[v / sum(e) for v in e]], dtype=torch.float64)
    torch.testing.assert_close(module(z), p, rtol=1e-14, atol=0)
    jac = torch.autograd.functional.jacobian(module, z)[0, :, 0, :]
    expected = torch.diag(p[0]) - p[0][:, None] * p[0][None, :]  # ∂pᵢ/∂zⱼ = pᵢ(δᵢⱼ − pⱼ)
    torch.testing.assert_close(jac, expected, rtol=1e-12, atol=1e-16)


def test_softmax_dim_argument():
    z = torch.randn(3, 4, dtype=torch.float64)
    torch.testing.assert_close(activation("softmax", dim=0)(z).sum(dim=0), torch.ones(4).double())


def test_rrelu_train_mode_samples_slopes_in_range(generator):
    module = activation("rrelu").train()
    z = -torch.rand(10_000, generator=generator) - 0.1
    slope = module(z) / z
    assert slope.min() >= 1 / 8 - 1e-6 and slope.max() <= 1 / 3 + 1e-6
    assert slope.std() > 0.05  # random, not the fixed eval slope


def test_defaults_are_torch_modules():
    assert isinstance(activation("leaky_relu"), nn.LeakyReLU)
    assert activation("leaky_relu").negative_slope == 0.01
    assert activation("elu").alpha == 1.0
    assert isinstance(activation("swish"), nn.SiLU)
    assert isinstance(activation("linear"), nn.Identity)
    assert activation("ReLU").__class__ is nn.ReLU  # names are case-insensitive


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_registered_name_builds_and_round_trips(name):
    module = activation(name)
    assert isinstance(module, nn.Module)
    canonical = {"swish": "silu", "linear": None, "identity": None}.get(name, name)
    assert name_of_activation(module) == canonical


def test_unknown_activation_is_a_user_error():
    with pytest.raises(
        UserError, match=r"activation: unknown activation 'relu6'; choose one of \["
    ):
        activation("relu6")


def test_bad_arguments_are_a_user_error():
    with pytest.raises(UserError, match=r"activation: bad arguments \['slope'\] for 'relu'"):
        activation("relu", slope=0.1)
