"""Every technique name works from the config: built through load_config + build_run, fitted.

Each case builds a tiny run (synthetic data, 200 samples, MLP 2×8, 1–3 epochs) from
``--set``-style overrides and asserts what the name must have built or done.
"""

from __future__ import annotations

import bisect
import math

import pytest
import torch

import trainwell.nn as twnn
from trainwell.cli.runner import build_run
from trainwell.config import load_config
from trainwell.optim import OPTIMIZERS
from trainwell.optim.clip import grad_norm
from trainwell.optim.penalties import Penalty
from trainwell.train.callbacks import Callback

BASE = [
    "data.source=synthetic",
    "data.num_samples=200",
    "model.depth=2",
    "model.width=8",
    "train.epochs=1",
    "train.batch_size=32",
    "schedule.name=constant",
    "optim.name=sgd",
    "optim.lr=0.01",
    "device=cpu",
]
LR0 = 0.01


def build(*overrides: str):
    """build_run of the base config with ``overrides`` applied (later ones win)."""
    return build_run(load_config(None, [*BASE, *overrides]), progress=False)


def fit(*overrides: str):
    built = build(*overrides)
    history = built.trainer.fit(built.data)
    assert all(math.isfinite(h["train_loss"]) for h in history)
    return built, history


def hidden_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [b.linear.weight.detach() for b in model.blocks]


# -- optimizers -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_name_builds_its_class_and_trains(name):
    built = build(f"optim.name={name}")
    assert type(built.optimizer) is OPTIMIZERS[name].cls
    before = [p.detach().clone() for p in built.model.parameters()]
    history = built.trainer.fit(built.data)
    assert built.optimizer.param_groups[0]["lr"] == LR0
    assert history[-1]["lr"] == LR0
    assert any(not torch.equal(a, p) for a, p in zip(before, built.model.parameters()))
    assert all(torch.isfinite(p).all() for p in built.model.parameters())


# -- schedules ------------------------------------------------------------------------------
def _power(t, T):
    return LR0 / (1 + t / 2.0) ** 1.5


def _exponential(t, T):
    return LR0 * 0.1 ** (t / 3.0)


def _piecewise(t, T):
    return [0.01, 0.005, 0.001][bisect.bisect_right([2, 6], t)]


def _cosine(t, T):
    return 0.001 + (LR0 - 0.001) * 0.5 * (1 + math.cos(math.pi * t / T))


def _one_cycle(t, T):
    return LR0 / 10 / 1e3  # the last step gets start_lr / final_div


SCHEDULE_CASES = {
    "constant": ([], lambda t, T: LR0),
    "power": (["schedule.params={s = 2.0, c = 1.5}"], _power),
    "exponential": (["schedule.params={s = 3.0}"], _exponential),
    "piecewise": (
        ["schedule.params={boundaries = [2, 6], values = [0.01, 0.005, 0.001]}"],
        _piecewise,
    ),
    "cosine": (["schedule.params={final_lr = 0.001}"], _cosine),
    "one_cycle": ([], _one_cycle),
}


@pytest.mark.parametrize("name", list(SCHEDULE_CASES))
def test_schedule_name_writes_its_formula_at_the_last_step(name):
    extra, formula = SCHEDULE_CASES[name]
    built, history = fit(f"schedule.name={name}", "train.epochs=2", *extra)
    total = built.trainer.step  # 2 epochs × ceil(144 / 32) = 10 steps
    assert total == 10
    expected = formula(total - 1, total)
    assert history[-1]["lr"] == pytest.approx(expected, rel=1e-12)
    assert built.optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-12)


def test_one_cycle_cycles_momentum_of_momentum_optimizers():
    built, _ = fit("schedule.name=one_cycle", "optim.name=momentum")
    # After the last step the momentum is back at its start value 0.95.
    assert built.optimizer.param_groups[0]["momentum"] == pytest.approx(0.95)


# A learning rate so small that the validation loss cannot improve by the controller's
# relative threshold (1e-4): every epoch after the first is a plateau.
PLATEAU = ["optim.lr=1e-9", "train.epochs=3"]


def test_schedule_plateau_halves_the_lr_on_each_plateau():
    built, history = fit(*PLATEAU, "schedule.plateau={factor = 0.5, patience = 0}")
    # Epoch 1 sets the best loss; epochs 2 and 3 each reduce; an epoch logs the lr it used.
    assert built.trainer.plateau.num_reductions == 2
    assert built.trainer.plateau.scale == 0.25
    assert [h["lr"] for h in history] == pytest.approx([1e-9, 1e-9, 0.5e-9], rel=1e-12)


def test_schedule_name_performance_reduces_on_plateau():
    _, history = fit(
        *PLATEAU, "schedule.name=performance", "schedule.params={factor = 0.5, patience = 0}"
    )
    assert [h["lr"] for h in history] == pytest.approx([1e-9, 1e-9, 0.5e-9], rel=1e-12)


# -- initializers ---------------------------------------------------------------------------
def _expected_var(name: str, n_in: int, n_out: int) -> float | None:
    base = {"glorot": 2 / (n_in + n_out), "he": 2 / n_in, "lecun": 1 / n_in}
    for prefix, var in base.items():
        if name.startswith(prefix):
            return var
    return {"normal": 1.0, "uniform": 1.0 / 3.0}.get(name)  # N(0, 1), U(−1, 1)


@pytest.mark.parametrize("name", list(twnn.INITIALIZERS))
def test_init_name_initializes_hidden_layers(name):
    if name in ("zeros", "constant"):
        with pytest.warns(UserWarning, match="symmetry problem"):
            built = build(f"model.init={name}")
    else:
        built = build(f"model.init={name}")
    w = hidden_weights(built.model)[0].double()  # (8, n_in)
    n_out, n_in = w.shape
    assert all(b.linear.bias is None or not b.linear.bias.any() for b in built.model.blocks)
    if name in ("zeros", "constant"):
        assert not w.any()
    elif name == "orthogonal":
        torch.testing.assert_close(
            w @ w.T, torch.eye(n_out, dtype=torch.float64), rtol=0, atol=1e-5
        )
    else:  # 8 × 20 = 160 draws: the variance estimate is within ~35% at 3 sigma
        assert w.pow(2).mean().item() == pytest.approx(_expected_var(name, n_in, n_out), rel=0.4)
    # The config path gives exactly what the builder gives with the run's seed.
    gen = torch.Generator().manual_seed(built.config.seed)
    ref_kw = dict(
        in_features=built.data.in_features,
        hidden=[8, 8],
        out_features=built.data.out_features,
        init=name,
        generator=gen,
    )
    if name in ("zeros", "constant"):
        with pytest.warns(UserWarning):
            ref = twnn.MLP(**ref_kw)
    else:
        ref = twnn.MLP(**ref_kw)
    for a, b in zip(built.model.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)


# -- activations ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(twnn.ACTIVATIONS))
def test_activation_name_builds_that_module_and_trains(name):
    built, _ = fit(f"model.activation={name}")
    expected = type(twnn.activation(name))
    assert all(type(b.act) is expected for b in built.model.blocks)


# -- clipping -------------------------------------------------------------------------------
class _GradCheck(Callback):
    """Records the pre-clip global norm and the gradients as the optimizer used them."""

    def __init__(self) -> None:
        self.pre: list[float] = []
        self.reported: list[float | None] = []
        self.after: list[list[torch.Tensor]] = []

    def on_after_backward(self, trainer, step):
        self.pre.append(float(grad_norm(list(trainer.model.parameters()))))

    def on_step_end(self, trainer, step, loss):
        self.reported.append(trainer.last_grad_norm)
        self.after.append([p.grad.detach().clone() for p in trainer.model.parameters()])


THRESHOLD = 1e-3  # far below the gradients' size, so every step is clipped


@pytest.mark.parametrize("kind", ["none", "value", "global_norm", "tensor_norm", "adaptive"])
def test_clip_kind_is_applied(kind):
    probe = _GradCheck()
    config = load_config(
        None, [*BASE, f"optim.clip.kind={kind}", f"optim.clip.threshold={THRESHOLD}"]
    )
    built = build_run(config, callbacks=[probe], progress=False)
    built.trainer.fit(built.data)
    if kind == "none":
        assert built.trainer.clip is None and probe.reported == [None] * len(probe.pre)
        return
    assert built.trainer.clip.kind == kind
    # The norm the trainer logs is the global norm before clipping.
    assert probe.reported == pytest.approx(probe.pre, rel=1e-5)
    for grads, pre in zip(probe.after, probe.pre):
        if kind == "value":
            assert max(g.abs().max().item() for g in grads) <= THRESHOLD * (1 + 1e-6)
        elif kind == "global_norm":
            assert float(grad_norm(grads)) <= THRESHOLD * (1 + 1e-4)
        elif kind == "tensor_norm":
            assert all(g.norm().item() <= THRESHOLD * (1 + 1e-4) for g in grads)
        else:  # adaptive: weights are large relative to 1e-3, so every step shrinks
            assert float(grad_norm(grads)) < pre


# -- regularization -------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["l1", "l2"])
def test_penalty_is_added_and_logged(field):
    built, history = fit(f"regularization.{field}=0.01")
    assert isinstance(built.trainer.penalty, Penalty)
    assert getattr(built.trainer.penalty, field) == 0.01
    assert history[0]["train_penalty"] > 0
    # The penalty is over weights only (no biases), with the formula λ·Σ|w| or λ·Σw².
    weights = [
        m.weight.detach().double() for m in built.model.modules() if isinstance(m, torch.nn.Linear)
    ]
    ref = sum((w.abs().sum() if field == "l1" else w.pow(2).sum()) for w in weights) * 0.01
    with torch.no_grad():
        value = float(built.trainer.penalty(built.model))
    assert value == pytest.approx(float(ref), rel=1e-5)


def test_no_penalty_logs_no_penalty():
    _, history = fit()
    assert "train_penalty" not in history[0]


def test_max_norm_bounds_every_unit_after_training():
    limit = 0.2  # He-init rows have norm ≈ √2, so the constraint binds from the first step
    built, _ = fit(f"regularization.max_norm={limit}")
    for m in built.model.modules():
        if isinstance(m, torch.nn.Linear):
            assert m.weight.norm(dim=1).max().item() <= limit * (1 + 1e-6)


def test_dropout_adds_dropout_layers_with_the_rate():
    built, _ = fit("model.dropout=0.3")
    assert all(
        isinstance(b.dropout, torch.nn.Dropout) and b.dropout.p == 0.3 for b in built.model.blocks
    )


def test_selu_dropout_is_alpha_dropout():
    built = build("model.dropout=0.2", "model.activation=selu")
    assert all(isinstance(b.dropout, torch.nn.AlphaDropout) for b in built.model.blocks)


def test_batch_norm_adds_norm_layers_that_track_statistics():
    built, _ = fit("model.batch_norm=true")
    for b in built.model.blocks:
        assert isinstance(b.norm, torch.nn.BatchNorm1d) and b.linear.bias is None
        assert b.norm.num_batches_tracked.item() == built.trainer.step
        assert b.norm.running_mean.abs().sum().item() > 0


def test_precision_accumulate_and_compile_reach_the_trainer():
    run = build("train.precision=fp16", "train.accumulate=3", "train.compile=false")
    assert (run.trainer.precision, run.trainer.accumulate) == ("fp16", 3)
    assert run.trainer.scaler is not None and run.trainer._net is run.model
    with pytest.raises(ValueError, match="accumulate"):
        load_config(None, ["train.accumulate=0"])
    with pytest.raises(ValueError, match="precision"):
        load_config(None, ["train.precision=fp8"])
