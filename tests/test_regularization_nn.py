"""MC dropout prediction and the max-norm constraint, against float64 references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from trainwell.errors import UserError
from trainwell.nn import MLP, MaxNorm, MCDropout, max_norm_, mc_predict


def _bn_model(generator) -> MLP:
    model = MLP(6, [16, 16], 4, dropout=0.5, batch_norm=True, generator=generator).double()
    model.train()
    with torch.no_grad():  # give batch norm non-trivial running statistics
        for _ in range(3):
            model(torch.randn(32, 6, generator=generator, dtype=torch.float64) * 3 + 1)
    return model


def test_mc_predict_matches_float64_reference_of_its_passes(generator):
    model = _bn_model(generator)
    x = torch.randn(5, 6, generator=generator, dtype=torch.float64)
    logits = []
    model.head.register_forward_hook(lambda m, i, out: logits.append(out.numpy().copy()))
    mean, std = mc_predict(model, x, n_samples=25, generator=torch.Generator().manual_seed(0))
    assert len(logits) == 25
    z = np.stack(logits)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(mean.numpy(), p.mean(0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(std.numpy(), p.std(0), rtol=1e-10, atol=1e-15)
    torch.testing.assert_close(mean.sum(-1), torch.ones(5).double())
    assert (std > 1e-3).all()  # the passes differ: dropout was on


def test_mc_predict_keeps_batch_norm_frozen_and_restores_modes(generator):
    model = _bn_model(generator)
    model.blocks[1].dropout.eval()  # a mixed state must come back exactly
    modes = [m.training for m in model.modules()]
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    mc_predict(model, torch.randn(8, 6, generator=generator, dtype=torch.float64), n_samples=5)
    assert [m.training for m in model.modules()] == modes
    for key, value in model.state_dict().items():
        assert torch.equal(value, stats[key]), key  # running_mean/var/num_batches untouched


def test_mc_predict_uses_running_statistics_not_the_batch(generator):
    # With dropout removed from the picture (p→ tiny), MC mean equals the eval prediction,
    # which is only true if batch norm used its running statistics.
    model = MLP(6, [16], 3, dropout=1e-12, batch_norm=True, generator=generator).double()
    with torch.no_grad():
        model.train()(torch.randn(64, 6, generator=generator, dtype=torch.float64) * 2 + 3)
    x = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    mean, std = mc_predict(model, x, n_samples=3)
    torch.testing.assert_close(mean, model.eval()(x).softmax(-1), rtol=1e-10, atol=1e-12)
    assert std.max() < 1e-8


def test_mc_predict_generator_is_reproducible_and_leaves_global_rng(generator):
    model = _bn_model(generator)
    x = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    state = torch.get_rng_state()
    a = mc_predict(model, x, n_samples=4, generator=torch.Generator().manual_seed(1))
    b = mc_predict(model, x, n_samples=4, generator=torch.Generator().manual_seed(1))
    c = mc_predict(model, x, n_samples=4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])


def test_mc_predict_raw_output_for_regression(generator):
    model = nn.Sequential(nn.Dropout(0.5), nn.Linear(3, 1, bias=False)).double()
    with torch.no_grad():
        model[1].weight.fill_(1.0)
    mean, std = mc_predict(
        model, torch.ones(1, 3).double(), n_samples=400, output="raw", generator=generator
    )
    # each input survives with p = 1/2 as 2: output = 2·Binomial(3, 1/2) → mean 3, std √3
    assert mean.item() == pytest.approx(3.0, abs=0.3)
    assert std.item() == pytest.approx(3**0.5, abs=0.2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_samples": 1}, r"mc_predict: n_samples must be an integer ≥ 2, got 1"),
        ({"output": "probs"}, r"mc_predict: unknown output 'probs'"),
    ],
)
def test_mc_predict_bad_arguments(kwargs, message, generator):
    with pytest.raises(UserError, match=message):
        mc_predict(_bn_model(generator), torch.randn(2, 6).double(), **kwargs)


def test_mc_predict_without_dropout_is_a_user_error():
    with pytest.raises(UserError, match="mc_predict: the model has no dropout layer"):
        mc_predict(MLP(4, [4], 2), torch.randn(2, 4))


def test_mc_dropout_module_stays_on_in_eval():
    layer = MCDropout(0.5).eval()
    out = layer(torch.ones(1000))
    assert set(out.unique().tolist()) == {0.0, 2.0}


def _max_norm_reference(w: np.ndarray, r: float) -> np.ndarray:
    flat = w.reshape(w.shape[0], -1)
    norms = np.sqrt((flat**2).sum(axis=1))
    scale = np.where(norms > r, r / np.where(norms > 0, norms, 1.0), 1.0)
    return (flat * scale[:, None]).reshape(w.shape)


def test_max_norm_linear_and_conv_against_reference(generator):
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.Flatten(), nn.Linear(9, 5)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * 2)
        model[2].weight[1].zero_()  # an all-zero unit stays zero (no 0/0)
        model[2].weight[3].mul_(1e-3)  # a short unit is left exactly as it is
    before = {k: v.clone() for k, v in model.state_dict().items()}
    largest = max_norm_(model, 3.0)
    for key in ["0.weight", "2.weight"]:
        expected = _max_norm_reference(before[key].numpy(), 3.0)
        np.testing.assert_allclose(model.state_dict()[key].numpy(), expected, rtol=1e-14)
    assert torch.equal(model[2].weight[3], before["2.weight"][3])
    assert torch.equal(model[0].bias, before["0.bias"]) and torch.equal(
        model[2].bias, before["2.bias"]
    )
    flat = [before[k].flatten(1).norm(dim=1).max() for k in ["0.weight", "2.weight"]]
    assert largest.item() == pytest.approx(max(flat).item(), rel=1e-14)
    after = model[2].weight.norm(dim=1)
    assert after.max().item() <= 3.0 + 1e-12


def test_max_norm_custom_dim_and_object(generator):
    layer = nn.Linear(4, 6).double()
    w = torch.randn(6, 4, generator=generator, dtype=torch.float64) * 3
    with torch.no_grad():
        layer.weight.copy_(w)
    MaxNorm(1.5, dim=0)(layer)  # constrain columns (a unit's outgoing weights) instead
    expected = _max_norm_reference(w.T.numpy(), 1.5).T
    np.testing.assert_allclose(layer.weight.detach().numpy(), expected, rtol=1e-14)
    assert repr(MaxNorm(2.0)) == "MaxNorm(max_value=2.0, dim=None)"


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_max_norm_must_be_positive(bad):
    with pytest.raises(UserError, match="max_value: must be > 0"):
        max_norm_(nn.Linear(2, 2), bad)
    with pytest.raises(UserError, match="max_value: must be > 0"):
        MaxNorm(bad)
