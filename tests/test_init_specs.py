"""Initializer specs with a number ("uniform:0.05"), bias_init and head_init."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from trainwell.errors import UserError
from trainwell.nn import CNN, MLP, InitSpec, apply_init, parse_init

N = 1000  # weights of N×N = 10⁶ samples


@pytest.mark.parametrize(
    ("spec", "expected", "text"),
    [
        ("he_normal", InitSpec("he_normal"), "he_normal"),
        ("  Glorot_Uniform ", InitSpec("glorot_uniform"), "glorot_uniform"),
        ("auto", InitSpec("auto"), "auto"),
        ("constant:0.1", InitSpec("constant", 0.1), "constant:0.1"),
        ("constant:-1", InitSpec("constant", -1.0), "constant:-1.0"),
        ("constant", InitSpec("constant"), "constant"),
        ("uniform:0.05", InitSpec("uniform", 0.05), "uniform:0.05"),
        ("normal: 0.5", InitSpec("normal", 0.5), "normal:0.5"),
        ("normal:1e-2", InitSpec("normal", 0.01), "normal:0.01"),
    ],
)
def test_parse_init_reads_names_and_numbers(spec, expected, text):
    parsed = parse_init(spec)
    assert parsed == expected and str(parsed) == text
    assert parse_init(text) == parsed  # str() gives a spec that parses back


@given(name=st.sampled_from(["constant", "uniform", "normal"]),
       value=st.floats(min_value=1e-300, max_value=1e300))
def test_str_reads_back_exactly(name, value):
    spec = InitSpec(name, -value if name == "constant" else value)
    assert parse_init(str(spec)) == spec


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("uniform:-1",
         r"^init: 'uniform:-1' needs the half-width A > 0 of U\(−A, A\), got -1\.0;"),
        ("uniform:0", r"^init: 'uniform:0' needs the half-width A > 0"),
        ("normal:abc", r"^init: 'normal:abc' needs a number after the colon, the standard "
                       r"deviation S > 0 of N\(0, S²\), got 'abc'; write e\.g\. 'normal:0\.5'$"),
        ("normal:0", r"^init: 'normal:0' needs the standard deviation S > 0"),
        ("constant:nan", r"^init: 'constant:nan' needs the value V of w = V, got nan"),
        ("constant:", r"^init: 'constant:' needs a number after the colon"),
        ("he_normal:2", r"^init: 'he_normal' takes no number, got 'he_normal:2'; only constant, "
                        r"uniform, normal do"),
        ("glorious", r"^init: unknown initializer 'glorious'; choose one of \['auto', "
                     r"'constant', .*'constant:V', 'uniform:A', 'normal:S'\]$"),
        ("auto:1", r"^init: unknown initializer 'auto:1'"),
        (0.1, r"^init: expected an initializer spec such as 'he_normal' or 'constant:0\.1', "
              r"got 0\.1$"),
    ],
)
def test_bad_specs_are_one_line_user_errors(spec, message):
    with pytest.raises(UserError, match=message) as info:
        parse_init(spec)
    assert "\n" not in str(info.value)


def test_argument_name_starts_the_message():
    with pytest.raises(UserError, match=r"^head_init: 'uniform:-1' needs"):
        MLP(4, [4], 2, head_init="uniform:-1")
    with pytest.raises(UserError, match=r"^bias_init: unknown initializer 'auto'; choose one of"):
        MLP(4, [4], 2, bias_init="auto")  # a bias has no activation policy
    with pytest.raises(UserError, match=r"^bias_init: 'he_normal' scales by a layer's fans, "
                                        r"which a bias \(1-D\) does not have"):
        MLP(4, [4], 2, bias_init="he_normal")


# Sample variance of n i.i.d. draws: relative standard deviation √((κ − 1)/n), κ the
# kurtosis (9/5 uniform, 3 normal): 0.09% and 0.14% at n = 10⁶. A 1% tolerance is > 7σ.
@pytest.mark.parametrize(
    ("spec", "variance", "bound"),
    [("uniform:0.05", 0.05**2 / 3, 0.05), ("uniform:2", 4 / 3, 2.0), ("normal:0.5", 0.25, None),
     ("normal:0.01", 1e-4, None)],
)
def test_random_specs_match_their_formula(spec, variance, bound, generator):
    w = parse_init(spec)(torch.empty(N, N, dtype=torch.float64), generator)
    assert w.var().item() == pytest.approx(variance, rel=0.01)
    assert abs(w.mean().item()) < 5 * math.sqrt(variance / N**2)
    if bound is not None:  # P(max |w| < 0.999·a) = 0.999^(10⁶) ≈ e^(−1000)
        assert bound * 0.999 < w.abs().max().item() <= bound


def test_constant_spec_is_exact():
    w = parse_init("constant:0.1")(torch.empty(3, 5, dtype=torch.float64))
    assert torch.equal(w, torch.full((3, 5), 0.1, dtype=torch.float64))


def test_bias_init_sets_hidden_biases_and_leaves_the_head_bias_zero(generator):
    model = MLP(40, [32, 16], 10, bias_init="constant:-1.0", generator=generator)
    for block in model.blocks:
        assert torch.equal(block.linear.bias, torch.full_like(block.linear.bias, -1.0))
    assert torch.count_nonzero(model.head.bias) == 0
    # The dying-ReLU-by-bias case: |Wx| ≤ 40·0.01·1 = 0.4 < 1 for x in [−1, 1], so every
    # pre-activation is below −0.6, every ReLU outputs 0 and the logits are the head bias.
    small = MLP(40, [32], 10, init="uniform:0.01", bias_init="constant:-1.0", generator=generator)
    x = torch.rand(64, 40, generator=generator) * 2 - 1
    assert torch.count_nonzero(small.blocks[0](x)) == 0
    assert torch.equal(small(x), torch.zeros(64, 10))


def test_random_bias_init_matches_its_formula(generator):
    # 10⁵ biases: relative sd of the variance √(2/10⁵) = 0.45%; 3% is > 6σ.
    model = MLP(2, [100_000], 2, bias_init="normal:0.5", generator=generator).double()
    assert model.blocks[0].linear.bias.var().item() == pytest.approx(0.25, rel=0.03)
    uni = MLP(2, [100_000], 2, bias_init="uniform:0.2", generator=generator)
    assert uni.blocks[0].linear.bias.abs().max() <= torch.tensor(0.2)
    assert uni.blocks[0].linear.bias.double().var().item() == pytest.approx(0.04 / 3, rel=0.03)


def test_head_init_differs_from_hidden_layers(generator):
    model = MLP(800, [800], 1200, head_init="normal:0.5", generator=generator).double()
    assert model.blocks[0].linear.weight.var().item() == pytest.approx(2 / 800, rel=0.02)  # He
    assert model.head.weight.var().item() == pytest.approx(0.25, rel=0.02)
    # head_init="auto" is what the auto policy gives a head: Glorot, Var = 2/(800 + 1200).
    lecun = MLP(800, [800], 1200, init="lecun_normal", head_init="auto", generator=generator)
    assert lecun.blocks[0].linear.weight.double().var().item() == pytest.approx(1 / 800, rel=0.02)
    assert lecun.head.weight.double().var().item() == pytest.approx(2 / 2000, rel=0.02)


def test_a_named_init_without_head_init_covers_the_head(generator):
    model = MLP(800, [800], 1200, init="uniform:0.05", generator=generator)
    for layer in (model.blocks[0].linear, model.head):
        assert layer.weight.double().var().item() == pytest.approx(0.05**2 / 3, rel=0.02)
        assert layer.weight.abs().max() <= torch.tensor(0.05)  # the bound as float32


def test_specs_are_reproducible_per_seed():
    def build(seed):
        return MLP(20, [16, 16], 4, init="normal:0.3", bias_init="uniform:0.1",
                   head_init="uniform:0.5", generator=torch.Generator().manual_seed(seed))

    a, b, c = build(3), build(3), build(4)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])
    assert not torch.equal(a.blocks[0].linear.bias, c.blocks[0].linear.bias)


def test_zero_bias_draws_nothing_so_weights_do_not_move(generator):
    # bias_init="zeros" (the default) must leave seeded weights as they were before
    # bias_init existed: the same draws as initializing the weights alone, in order.
    model = MLP(30, [20], 5, activation="tanh", generator=torch.Generator().manual_seed(9))
    ref = torch.Generator().manual_seed(9)
    a0, a1 = math.sqrt(3.0 * (2.0 / 50)), math.sqrt(3.0 * (2.0 / 25))  # Glorot: √(3·Var)
    w0 = torch.empty(20, 30).uniform_(-a0, a0, generator=ref)
    w1 = torch.empty(5, 20).uniform_(-a1, a1, generator=ref)
    assert torch.equal(model.blocks[0].linear.weight, w0) and torch.equal(model.head.weight, w1)


def test_constant_hidden_spec_warns_about_symmetry():
    with pytest.warns(UserWarning, match=r"'constant:0\.1' initialization of hidden layer\(s\) "
                                         r"blocks\.0\.linear"):
        MLP(4, [8], 3, init="constant:0.1", head_init="auto")


def test_cnn_passes_bias_init_and_head_init_through(generator):
    model = CNN((1, 8, 8), channels=(4, 6), out_features=3, hidden=(5,),
                bias_init="constant:0.5", head_init="zeros", generator=generator)
    for layer in (model.blocks[0].conv, model.blocks[1].conv, model.dense[0].linear):
        assert torch.equal(layer.bias, torch.full_like(layer.bias, 0.5))
    assert torch.count_nonzero(model.head.weight) == 0 and torch.count_nonzero(model.head.bias) == 0


def test_apply_init_on_a_users_model(generator):
    model = nn.Sequential(nn.Linear(900, 900), nn.ReLU(), nn.Linear(900, 10))
    apply_init(model, "auto", generator, bias_init="constant:0.25", head_init="normal:0.1")
    assert model[0].weight.double().var().item() == pytest.approx(2 / 900, rel=0.02)
    assert torch.equal(model[0].bias, torch.full((900,), 0.25))
    assert model[2].weight.double().var().item() == pytest.approx(0.01, rel=0.1)  # 9000 draws
    assert torch.count_nonzero(model[2].bias) == 0
