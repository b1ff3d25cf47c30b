"""trainwell.transfer.pretrain: layer-wise and stacked autoencoder pretraining."""

from __future__ import annotations

import pytest
import torch

import trainwell as tw
from trainwell.errors import UserError
from trainwell.transfer import pretrain as pt


def inputs(n=512, d=20, seed=0):
    """Correlated features with low-rank structure an autoencoder can learn."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 4, generator=g)
    return z @ torch.randn(4, d, generator=g) + 0.1 * torch.randn(n, d, generator=g)


def mlp(seed=0, **kw):
    return tw.nn.MLP(20, [16, 8], 3, generator=torch.Generator().manual_seed(seed), **kw)


@pytest.mark.parametrize("tied", [False, True])
def test_layerwise_loss_decreases_and_encoder_leaves_its_init(tied):
    model = mlp()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    result = pt.pretrain_layerwise(model, inputs(), epochs=6, lr=3e-3, batch_size=64, tied=tied)
    assert len(result.losses) == 2 and all(len(curve) == 6 for curve in result.losses)
    for curve in result.losses:
        assert curve[-1] < 0.8 * curve[0], curve
    new = result.model.state_dict()
    for i in range(2):
        key = f"blocks.{i}.linear.weight"
        assert (new[key] - init[key]).abs().max() > 1e-2, key
    assert torch.equal(new["head.weight"], init["head.weight"])  # the head is not pretrained
    for k, v in model.state_dict().items():  # the input model is left as it was
        assert torch.equal(v, init[k]), k
    assert result.encoder is result.model.blocks


@pytest.mark.parametrize("noise", [None, "gaussian", "mask"])
def test_stacked_loss_decreases_with_batch_norm_dropout_and_noise(noise):
    model = mlp(batch_norm=True, dropout=0.1)
    result = pt.pretrain_stacked(
        model, inputs(), epochs=6, lr=3e-3, batch_size=64, noise=noise, noise_level=0.2
    )
    (curve,) = result.losses
    assert curve[-1] < 0.8 * curve[0], curve
    assert not torch.equal(result.model.blocks[0].linear.weight, model.blocks[0].linear.weight)
    assert not torch.equal(
        result.model.blocks[0].norm.running_mean, model.blocks[0].norm.running_mean
    )


def test_same_seed_same_weights_and_the_global_rng_is_untouched():
    x = inputs()
    model = mlp(dropout=0.2)  # nn.Linear's own init draws from the global RNG first
    state = torch.get_rng_state()
    a = pt.pretrain_layerwise(model, x, epochs=2, noise="mask", noise_level=0.3, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    b = pt.pretrain_layerwise(mlp(dropout=0.2), x, epochs=2, noise="mask", noise_level=0.3, seed=5)
    c = pt.pretrain_layerwise(mlp(dropout=0.2), x, epochs=2, noise="mask", noise_level=0.3, seed=6)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    assert not torch.equal(a.model.blocks[0].linear.weight, c.model.blocks[0].linear.weight)
    assert a.losses == b.losses
    s1 = pt.pretrain_stacked(mlp(), x, epochs=2, tied=True, seed=1)
    s2 = pt.pretrain_stacked(mlp(), x, epochs=2, tied=True, seed=1)
    assert torch.equal(s1.model.blocks[1].linear.weight, s2.model.blocks[1].linear.weight)


def test_tied_decoder_is_the_transposed_encoder_weight_float64():
    enc = torch.nn.Linear(5, 3).double()
    dec = pt._Decoder(enc, tied=True, generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        dec.bias.copy_(torch.arange(5, dtype=torch.float64))
    h = torch.randn(4, 3, dtype=torch.float64)
    expected = h @ enc.weight.detach() + torch.arange(5, dtype=torch.float64)
    assert torch.allclose(dec(h), expected, rtol=0, atol=1e-14)
    assert dec.own_parameters() == [dec.bias]
    untied = pt._Decoder(enc, tied=False, generator=torch.Generator().manual_seed(0))
    assert untied.weight.shape == (5, 3) and len(untied.own_parameters()) == 2


def test_noise_corrupts_as_documented():
    x = torch.ones(200, 50)
    g = torch.Generator().manual_seed(0)
    masked = pt._corrupt(x, "mask", 0.3, g)
    assert set(masked.unique().tolist()) == {0.0, 1.0}
    assert abs((masked == 0).float().mean().item() - 0.3) < 0.02
    noisy = pt._corrupt(x, "gaussian", 0.5, g)
    assert abs((noisy - 1).std().item() - 0.5) < 0.02
    assert pt._corrupt(x, "mask", 0.0, g) is x


def test_bad_pretraining_input_raises_user_errors():
    with pytest.raises(
        UserError, match=r"inputs of shape \(10, 7\) do not fit the model's 20 input"
    ):
        pt.pretrain_layerwise(mlp(), torch.zeros(10, 7))
    with pytest.raises(UserError, match=r"noise: unknown noise 'salt'"):
        pt.pretrain_stacked(mlp(), inputs(), noise="salt")
    with pytest.raises(UserError, match=r"masking probability must be in \[0, 1\), got 1.5"):
        pt.pretrain_stacked(mlp(), inputs(), noise="mask", noise_level=1.5)
    with pytest.raises(UserError, match=r"has no hidden blocks"):
        pt.pretrain_layerwise(tw.nn.MLP(20, [], 3), inputs())
