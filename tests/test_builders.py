"""MLP and CNN builders: layer names, options, init, determinism, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import trainwell as tw
from trainwell.errors import UserError
from trainwell.nn import CNN, MLP, Block


def _state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_mlp_layout_has_stable_names():
    model = MLP(40, [32, 16], 10)
    assert isinstance(model.blocks, nn.ModuleList) and len(model.blocks) == 2
    assert all(isinstance(b, Block) for b in model.blocks)
    assert list(model.blocks[0]._modules) == ["linear", "act"]
    assert model.blocks[1].linear.in_features == 32 and model.blocks[1].linear.out_features == 16
    assert isinstance(model.blocks[0].act, nn.ReLU)
    assert isinstance(model.head, nn.Linear) and model.head.out_features == 10
    assert model.output_act is None and model.activation_name == "relu"
    assert [n for n, _ in model.named_children()] == ["blocks", "head"]


def test_mlp_options_place_norm_between_linear_and_activation():
    model = MLP(8, [6], 3, activation="tanh", dropout=0.3, batch_norm=True)
    block = model.blocks[0]
    assert list(block._modules) == ["linear", "norm", "act", "dropout"]
    assert isinstance(block.norm, nn.BatchNorm1d) and block.linear.bias is None
    assert type(block.dropout) is nn.Dropout and block.dropout.p == 0.3


def test_selu_uses_alpha_dropout():
    model = MLP(8, [6], 3, activation="selu", dropout=0.1)
    assert isinstance(model.blocks[0].dropout, tw.nn.AlphaDropout)


def test_output_activation_and_activation_kwargs():
    model = MLP(
        8,
        [6],
        3,
        activation="leaky_relu",
        output_activation="softmax",
        activation_kwargs={"alpha": 0.2},
    )
    assert model.blocks[0].act.negative_slope == 0.2
    out = model(torch.randn(5, 8))
    torch.testing.assert_close(out.sum(dim=1), torch.ones(5))


def test_mlp_flattens_images_and_equals_a_plain_sequential(generator):
    model = MLP(40, [32, 32], 10, generator=generator).eval()
    plain = nn.Sequential(*[layer for b in model.blocks for layer in b], model.head)
    x = torch.randn(7, 1, 5, 8, generator=generator)
    out = model(x)
    assert out.shape == (7, 10)
    assert torch.equal(out, plain(x.flatten(1)))


def test_mlp_without_hidden_layers_is_its_head():
    model = MLP(4, [], 2)
    assert len(model.blocks) == 0 and model(torch.randn(3, 4)).shape == (3, 2)


@pytest.mark.parametrize("kwargs", [{"activation": "selu", "dropout": 0.2, "batch_norm": True}, {}])
def test_same_seed_gives_bit_identical_weights(kwargs):
    a = MLP(20, [16, 16], 4, generator=torch.Generator().manual_seed(3), **kwargs)
    b = MLP(20, [16, 16], 4, generator=torch.Generator().manual_seed(3), **kwargs)
    c = MLP(20, [16, 16], 4, generator=torch.Generator().manual_seed(4), **kwargs)
    assert _state_equal(a, b) and not _state_equal(a, c)


def test_mlp_init_policy_by_activation(generator):
    selu = MLP(600, [600], 2, activation="selu", generator=generator).double()
    assert selu.blocks[0].linear.weight.var().item() == pytest.approx(1 / 600, rel=0.03)
    tanh = MLP(600, [600], 2, activation="tanh", generator=generator).double()
    assert tanh.blocks[0].linear.weight.var().item() == pytest.approx(2 / 1200, rel=0.03)


def test_mlp_trains_a_step_with_batch_norm_and_dropout(generator):
    model = MLP(10, [16, 16], 3, dropout=0.2, batch_norm=True, generator=generator)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 10, generator=generator), torch.randint(0, 3, (32,), generator=generator)
    before = nn.functional.cross_entropy(model.eval()(x), y).item()
    model.train()
    for _ in range(20):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert nn.functional.cross_entropy(model.eval()(x), y).item() < before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden": [8, 0]}, r"hidden: must be a positive integer, got 0"),
        ({"in_features": -1}, r"in_features: must be a positive integer, got -1"),
        ({"dropout": 1.0}, r"dropout: must be in \[0, 1\), got 1.0"),
        ({"activation": "relu7"}, r"activation: unknown activation 'relu7'"),
        ({"init": "glorious"}, r"init: unknown initializer 'glorious'"),
        ({"output_activation": "nope"}, r"activation: unknown activation 'nope'"),
    ],
)
def test_mlp_bad_arguments_are_user_errors(kwargs, message):
    args = {"in_features": 4, "hidden": [8], "out_features": 2, **kwargs}
    with pytest.raises(UserError, match=message):
        MLP(**args)


def test_cnn_layout_and_shapes():
    model = CNN(
        (1, 28, 28), channels=(8, 16), out_features=10, hidden=(32,), dropout=0.25, batch_norm=True
    )
    assert list(model.blocks[0]._modules) == ["conv", "norm", "act", "pool"]
    assert isinstance(model.blocks[1].pool, nn.MaxPool2d)
    assert model.dense[0].linear.in_features == 16 * 7 * 7
    assert list(model.dense[0]._modules) == ["linear", "norm", "act", "dropout"]
    assert isinstance(model.head, nn.Linear) and model.activation_name == "relu"
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_cnn_pool_options_and_kernel_sizes():
    avg = CNN((3, 9, 9), channels=(4,), out_features=2, pool="avg", kernel_size=5)
    assert isinstance(avg.blocks[0].pool, nn.AvgPool2d) and avg.head.in_features == 4 * 4 * 4
    none = CNN((3, 9, 9), channels=(4,), out_features=2, pool=None)
    assert "pool" not in none.blocks[0]._modules and none.head.in_features == 4 * 9 * 9
    assert none(torch.randn(1, 3, 9, 9)).shape == (1, 2)


def test_cnn_conv_init_uses_conv_fans(generator):
    model = CNN((64, 8, 8), channels=(128, 128), out_features=2, generator=generator).double()
    w = model.blocks[1].conv.weight  # (128, 128, 3, 3): n_in = 128·9
    assert w.var().item() == pytest.approx(2 / (128 * 9), rel=0.03)
    assert torch.count_nonzero(model.blocks[1].conv.bias) == 0


def test_cnn_same_seed_gives_bit_identical_weights():
    a = CNN((1, 8, 8), generator=torch.Generator().manual_seed(1), hidden=(8,))
    b = CNN((1, 8, 8), generator=torch.Generator().manual_seed(1), hidden=(8,))
    assert _state_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_shape": (1, 2, 28, 28)}, r"in_shape: expected \(length,\), \(channels, length\) "
                                       r"or \(channels, height, width\)"),
        ({"in_shape": (1, 4, 4), "channels": (4, 4, 4)}, r"below 1 pixel"),
        ({"pool": "min"}, r"pool: unknown pooling 'min'"),
        ({"channels": (0,)}, r"channels: must be a positive integer"),
    ],
)
def test_cnn_bad_arguments_are_user_errors(kwargs, message):
    args = {"in_shape": (1, 8, 8), **kwargs}
    with pytest.raises(UserError, match=message):
        CNN(**args)


def test_public_names_have_docstrings():
    for name in tw.nn.__all__:
        obj = getattr(tw.nn, name)
        if callable(obj) or isinstance(obj, type):
            assert obj.__doc__, name
