"""trainwell.transfer with the Trainer: gradual unfreezing, freeze-then-fine-tune, config hooks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import trainwell as tw
from trainwell import transfer
from trainwell.cli.runner import apply_transfer, transfer_callbacks
from trainwell.data import Dataset, Split
from trainwell.errors import UserError
from trainwell.train import Callback


def blobs(n=300, seed=0, d=12, k=3):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 2
    y = torch.randint(0, k, (n,), generator=g)
    x = centers[y] + torch.randn(n, d, generator=g)
    a, b = int(0.7 * n), int(0.85 * n)
    return Dataset(
        Split(x[:a], y[:a]),
        Split(x[a:b], y[a:b]),
        Split(x[b:], y[b:]),
        "classification",
        k,
        "blobs",
    )


def mlp(seed=0, **kw):
    return tw.nn.MLP(12, [16, 16, 8], 3, generator=torch.Generator().manual_seed(seed), **kw)


class Snapshots(Callback):
    """Records a copy of every parameter and BN buffer at each epoch end."""

    def __init__(self):
        self.states = []

    def on_epoch_end(self, trainer, epoch, metrics):
        self.states.append({k: v.clone() for k, v in trainer.model.state_dict().items()})


def changed(snaps, key):
    """For each epoch: did ``key`` change during it (epoch 0 compared with the start)."""
    return [not torch.equal(a[key], b[key]) for a, b in zip(snaps[:-1], snaps[1:])]


def trainer_for(model, callbacks, epochs, lr=0.01, **kw):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    return tw.Trainer(
        model,
        opt,
        epochs=epochs,
        batch_size=32,
        seed=0,
        callbacks=callbacks,
        progress=False,
        device="cpu",
        **kw,
    )


def test_gradual_unfreezing_top_down_unfreezes_one_layer_every_epoch():
    model = mlp(batch_norm=True)
    cb = transfer.GradualUnfreezing.top_down(model, every=1, start=1)
    assert cb.schedule == {1: ["blocks.2"], 2: ["blocks.1"], 3: ["blocks.0"]}
    start = {k: v.clone() for k, v in model.state_dict().items()}
    snaps = Snapshots()
    history = trainer_for(model, [cb, snaps], epochs=4).fit(blobs())
    states = [start, *snaps.states]
    assert [h["frozen_layers"] for h in history] == [3, 2, 1, 0]
    assert changed(states, "head.weight") == [True, True, True, True]
    assert changed(states, "blocks.2.linear.weight") == [False, True, True, True]
    assert changed(states, "blocks.1.linear.weight") == [False, False, True, True]
    assert changed(states, "blocks.0.linear.weight") == [False, False, False, True]
    assert changed(states, "blocks.0.norm.running_mean") == [False, False, False, True]


def test_gradual_unfreezing_refuses_an_optimizer_without_the_frozen_params():
    model = mlp()
    opt = torch.optim.Adam(model.head.parameters(), lr=0.01)
    trainer = tw.Trainer(
        model,
        opt,
        epochs=1,
        batch_size=32,
        progress=False,
        device="cpu",
        callbacks=[transfer.GradualUnfreezing({1: [0]})],
    )
    with pytest.raises(
        UserError, match=r"parameter blocks\.0\.linear\.weight is not in the optimizer"
    ):
        trainer.fit(blobs())


def test_freeze_then_fine_tune_switches_layers_and_learning_rate():
    model = mlp(batch_norm=True)
    snaps = Snapshots()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    cb = transfer.FreezeThenFineTune(3, freeze_epochs=2, lr_factor=0.1)
    history = trainer_for(model, [cb, snaps], epochs=4, lr=0.02).fit(blobs())
    states = [start, *snaps.states]
    assert [h["lr"] for h in history] == pytest.approx([0.02, 0.02, 0.002, 0.002], rel=1e-12)
    assert changed(states, "blocks.1.linear.weight") == [False, False, True, True]
    assert changed(states, "blocks.1.norm.running_var") == [False, False, True, True]
    assert changed(states, "head.bias") == [True] * 4
    assert cb.state_dict() == {"switched": True}


def test_freeze_then_fine_tune_scales_a_schedule_through_lr_scale():
    model = mlp()
    cb = transfer.FreezeThenFineTune("blocks.2", freeze_epochs=1, lr_factor=0.5)
    trainer = trainer_for(model, [cb], epochs=2, schedule=lambda step: 0.01)
    history = trainer.fit(blobs())
    assert [h["lr"] for h in history] == pytest.approx([0.01, 0.005], rel=1e-12)


def test_fine_tune_runs_the_recipe_in_one_call():
    torch.manual_seed(0)
    model = transfer.reuse(
        mlp(), n_layers=2, new_head=3, generator=torch.Generator().manual_seed(1)
    )
    frozen_w = model.blocks[0].linear.weight.clone()
    result = transfer.fine_tune(
        model,
        blobs(),
        freeze_epochs=2,
        epochs=2,
        lr=0.01,
        lr_factor=0.1,
        batch_size=32,
        device="cpu",
    )
    assert [h["frozen_layers"] for h in result.history] == [2, 2, 0, 0]
    assert [h["lr"] for h in result.history] == pytest.approx([0.01, 0.01, 0.001, 0.001])
    assert not torch.equal(model.blocks[0].linear.weight, frozen_w)
    assert set(result.test_metrics) == {"loss", "accuracy"}
    with pytest.raises(UserError, match=r"at least one epoch"):
        transfer.fine_tune(model, blobs(), freeze_epochs=0, epochs=0)


def test_config_hooks_copy_layers_from_a_run_folder_and_freeze_them(tmp_path):
    data = blobs()
    source = mlp(seed=3)
    trainer_for(source, [], epochs=1, run_dir=tmp_path / "A").fit(data)
    section = SimpleNamespace(
        from_=str(tmp_path / "A"), n_layers=None, freeze_epochs=1, fine_tune_lr_factor=0.5
    )
    config = SimpleNamespace(transfer=section)
    model = apply_transfer(config, mlp(seed=4), data)
    for k, v in source.blocks.state_dict().items():
        assert torch.equal(model.blocks.state_dict()[k], v), k
    callbacks = transfer_callbacks(config)
    assert len(callbacks) == 1 and callbacks[0].up_to == 3
    assert (
        transfer_callbacks(
            SimpleNamespace(
                transfer=SimpleNamespace(
                    from_=None, n_layers=None, freeze_epochs=3, fine_tune_lr_factor=1.0
                )
            )
        )
        == []
    )
    wrong = tw.nn.MLP(12, [16, 32, 8], 3)
    with pytest.raises(UserError, match=r"blocks\.1\.linear\.weight has shape \(16, 16\)"):
        apply_transfer(config, wrong, data)
