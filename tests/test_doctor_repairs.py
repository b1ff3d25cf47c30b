"""Every repair's two forms agree: the patched config builds what the action makes of the
unpatched objects (same optimizer and hyperparameters, same init, same modules, …)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainwell.cli.runner import build_run
from trainwell.config import apply_patch, validate
from trainwell.doctor import REPAIRS, RollbackGuard
from trainwell.optim.schedules import with_base_lr, with_total_steps

BROKEN = {
    "name": "broken",
    "seed": 3,
    "device": "cpu",
    "data": {"source": "synthetic", "num_samples": 200, "input_scale": 100.0,
             "options": {"kind": "blobs"}},
    "model": {"depth": 2, "width": 8, "activation": "sigmoid", "init": "normal",
              "output_activation": "relu"},
    "optim": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
    "schedule": {"name": "constant"},
    "train": {"epochs": 2, "batch_size": 32, "threads": 1},
}  # fmt: skip


def _leaves(model: nn.Module) -> list[tuple[str, tuple]]:
    """The model's leaf modules in order, with what defines them (Identity left out)."""
    out = []
    for m in model.modules():
        if list(m.children()) or isinstance(m, nn.Identity):
            continue
        key: tuple = ()
        if isinstance(m, nn.Linear):
            key = (m.in_features, m.out_features)
        elif isinstance(m, nn.Dropout):
            key = (m.p,)
        elif isinstance(m, nn.BatchNorm1d):
            key = (m.num_features,)
        out.append((type(m).__name__, key))
    return out


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight.detach() for m in model.modules() if isinstance(m, nn.Linear)]


def _both(name: str):
    config = validate(BROKEN)
    patch = REPAIRS[name].patch(config)
    assert patch, name
    patched = build_run(apply_patch(config, patch))
    live = build_run(config)
    gen = torch.Generator().manual_seed(config.seed)  # the generator the config's init uses
    kwargs = REPAIRS[name].apply(live.model, live.optimizer, generator=gen)
    return patched, live, kwargs


@pytest.mark.parametrize("name", ["lr_down", "lr_up"])
def test_learning_rate_repairs_agree(name):
    patched, live, kwargs = _both(name)
    assert kwargs == {}
    assert live.optimizer.param_groups[0]["lr"] == patched.optimizer.param_groups[0]["lr"]
    expected = {"lr_down": 0.01, "lr_up": 10.0}[name]
    assert patched.optimizer.param_groups[0]["lr"] == pytest.approx(expected)


def test_switch_optimizer_builds_trainwells_adam_with_the_same_hyperparameters():
    patched, live, kwargs = _both("switch_optimizer")
    new = kwargs["optimizer"]
    assert type(new) is type(patched.optimizer)
    assert type(new).__module__.startswith("trainwell.optim")
    for key in ("lr", "betas", "eps", "weight_decay"):
        assert new.defaults[key] == patched.optimizer.defaults[key], key
    assert new.defaults["lr"] == 1e-3


@pytest.mark.parametrize("name", ["reinit_by_activation", "swap_activation"])
def test_init_and_activation_repairs_build_the_same_weights_and_modules(name):
    patched, live, _ = _both(name)
    assert _leaves(live.model) == _leaves(patched.model)
    for a, b in zip(_weights(live.model), _weights(patched.model), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["add_batch_norm", "add_dropout", "fix_output_head"])
def test_structural_repairs_give_the_same_layers(name):
    patched, live, kwargs = _both(name)
    assert _leaves(live.model) == _leaves(patched.model)
    x = patched.data.train.x[:5]
    assert live.model(x).shape == patched.model(x).shape
    if name == "fix_output_head":
        assert kwargs == {"loss": patched.config.train.loss}


def test_standardize_action_gives_the_patched_inputs():
    patched, live, kwargs = _both("standardize_inputs")
    z = kwargs["data_transform"](live.data.train.x)[0]
    assert live.data.train.x.abs().mean() > 10 * z.abs().mean()
    torch.testing.assert_close(z, patched.data.train.x, rtol=1e-4, atol=1e-4)


def test_trainer_side_repairs_build_the_same_objects():
    patched, _, kwargs = _both("clip_gradients")
    assert kwargs["clip"] == patched.trainer.clip
    patched, _, kwargs = _both("add_l2")
    assert kwargs["penalty"].l2 == patched.trainer.penalty.l2 == 1e-3
    patched, _, kwargs = _both("add_plateau")
    p, q = kwargs["plateau"], patched.trainer.plateau
    assert (p.factor, p.patience) == (q.factor, q.patience) == (0.5, 2)


def test_schedule_action_is_the_patched_one_cycle():
    # The drift this replaces: the action returned a plateau while the patch chose 1cycle.
    patched, live, kwargs = _both("add_schedule")
    total = patched.trainer.epochs * -(-len(patched.data.train) // 32)
    lr = live.optimizer.param_groups[0]["lr"]
    assert lr == patched.optimizer.param_groups[0]["lr"]
    mine = with_base_lr(with_total_steps(kwargs["schedule"], total), lr)
    theirs = with_base_lr(with_total_steps(patched.trainer.schedule, total), lr)
    assert type(mine) is type(theirs) and type(mine).__name__ == "OneCycle"
    assert [mine(t) for t in range(total)] == [theirs(t) for t in range(total)]


def test_every_repair_is_covered_here():
    covered = {
        "lr_down", "lr_up", "switch_optimizer", "reinit_by_activation", "swap_activation",
        "add_batch_norm", "add_dropout", "fix_output_head", "standardize_inputs",
        "clip_gradients", "add_l2", "add_plateau", "add_schedule", "rollback_skip",
        "early_stopping",  # tests/test_doctor_overfit.py
        "reduce_regularization",  # tests/test_doctor_over_regularized.py
    }  # fmt: skip
    python_only = {n for n, r in REPAIRS.items() if r.python_only}
    assert python_only == set()  # every repair is also a config patch
    assert set(REPAIRS) == covered | python_only


def test_rollback_repair_is_a_config_patch_and_the_same_guard_live():
    patched, live, kwargs = _both("rollback_skip")
    guards = [c for c in patched.trainer.callbacks if isinstance(c, RollbackGuard)]
    assert len(guards) == 1 and guards[0].every == 10
    (live_guard,) = kwargs["callbacks"]
    assert isinstance(live_guard, RollbackGuard) and live_guard.every == guards[0].every


def test_learning_rate_repairs_write_short_decimals():
    # 3 × 0.1 is 0.30000000000000004 in binary floating point; repaired.toml says 0.3.
    from trainwell.doctor.repairs import _decimal

    assert _decimal(3.0 * 0.1) == 0.3 and repr(_decimal(3.0 * 0.1)) == "0.3"
    assert _decimal(1e-7 * 100.0) == 1e-5
    assert _decimal(0.123456789012345) == 0.123456789012
