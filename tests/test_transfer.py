"""trainwell.transfer: reuse (copy, share, checks), freeze/unfreeze, BN statistics, LR groups."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import trainwell as tw
from trainwell import transfer
from trainwell.cli.runner import run_model_args
from trainwell.errors import UserError


def mlp(hidden=(32, 16, 8), out=4, seed=0, **kw):
    return tw.nn.MLP(12, list(hidden), out, generator=torch.Generator().manual_seed(seed), **kw)


def trained(model, steps=5, seed=0):
    """A few SGD steps in training mode, so weights and BN statistics leave their init."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(steps):
        x = torch.randn(32, 12, generator=g) * 2 + 1
        y = torch.randint(0, model.head.out_features, (32,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


# -- reuse --------------------------------------------------------------------------------


def test_reuse_copies_first_blocks_with_new_head_and_shares_nothing():
    src = trained(mlp(batch_norm=True))
    new = transfer.reuse(src, n_layers=2, new_head=3, generator=torch.Generator().manual_seed(1))
    assert len(new.blocks) == 2 and new.head.in_features == 16 and new.head.out_features == 3
    for i in range(2):
        theirs, ours = src.blocks[i].state_dict(), new.blocks[i].state_dict()
        assert set(theirs) == set(ours)
        for k in theirs:
            assert torch.equal(theirs[k], ours[k]), k  # running stats included
            assert theirs[k].data_ptr() != ours[k].data_ptr(), k
    before = src.blocks[0].linear.weight.clone()
    with torch.no_grad():
        new.blocks[0].linear.weight.add_(1.0)
    assert torch.equal(src.blocks[0].linear.weight, before)
    assert all(p.requires_grad for p in new.parameters())


def test_reuse_share_true_holds_the_same_modules():
    src = mlp()
    new = transfer.reuse(src, n_layers=2, new_head=3, share=True)
    assert new.blocks[0] is src.blocks[0] and new.blocks[1] is src.blocks[1]
    with torch.no_grad():
        new.blocks[1].linear.weight.mul_(2.0)
    assert torch.equal(new.blocks[1].linear.weight, src.blocks[1].linear.weight)
    assert new.head is not src.head


def test_reused_model_computes_the_source_features():
    src = trained(mlp(batch_norm=True)).eval()
    new = transfer.reuse(src, n_layers=3, new_head=2).eval()
    x = torch.randn(7, 12, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        h_src, h_new = x, x
        for b in src.blocks:
            h_src = b(h_src)
        for b in new.blocks:
            h_new = b(h_new)
    assert torch.equal(h_src, h_new)
    assert new(x).shape == (7, 2)


def test_reuse_zero_layers_gives_a_linear_model_on_the_inputs():
    new = transfer.reuse(mlp(), n_layers=0, new_head=5)
    assert len(new.blocks) == 0 and new.head.in_features == 12
    assert new(torch.zeros(2, 12)).shape == (2, 5)


def test_reuse_from_safetensors_into_a_given_model(tmp_path):
    src = trained(mlp(batch_norm=True))
    path = tmp_path / "a.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    target = mlp(hidden=(32, 16, 64), out=2, seed=9, batch_norm=True)
    fresh = target.blocks[2].linear.weight.clone()
    out = transfer.reuse(path, n_layers=2, model=target)
    assert out is target
    for k, v in src.blocks[1].state_dict().items():
        assert torch.equal(target.blocks[1].state_dict()[k], v)
    assert torch.equal(target.blocks[2].linear.weight, fresh)  # beyond n_layers: untouched


def test_reuse_from_a_run_folder_builds_the_model_from_its_config(tmp_path):
    from trainwell.train.checkpoint import save_checkpoint

    src = trained(mlp(hidden=(32, 16), activation="tanh"))
    run = tmp_path / "runs" / "A"
    save_checkpoint(run, 1, src, torch.optim.SGD(src.parameters(), lr=0.1), {})
    (run / "config.toml").write_text('[model]\nkind = "mlp"\nactivation = "tanh"\n')
    new = transfer.reuse(run, n_layers=2, new_head=3, model_args=run_model_args(run))
    assert isinstance(new.blocks[0].act, nn.Tanh)
    for k, v in src.blocks[1].state_dict().items():
        assert torch.equal(new.blocks[1].state_dict()[k], v)
    assert new.head.out_features == 3


def test_shape_mismatch_is_one_clear_line(tmp_path):
    src = mlp(hidden=(32, 16))
    with pytest.raises(
        UserError, match=r"blocks\.1\.linear\.weight has shape \(16, 32\) in .* but \(20, 32\)"
    ) as e:
        transfer.reuse(src, n_layers=2, model=mlp(hidden=(32, 20)))
    assert "\n" not in str(e.value) and "n_layers=1" in str(e.value)


def test_batch_norm_mismatch_names_the_layer():
    state = {**mlp().state_dict(), "blocks.0.norm.weight": torch.ones(32)}
    with pytest.raises(
        UserError, match=r"blocks\.0\.norm\.weight of src has no place in the new model"
    ):
        transfer.copy_blocks(state, mlp(), 1, "src")
    with pytest.raises(UserError, match=r"blocks\.0\.linear\.bias is in the new model but not in"):
        transfer.reuse(mlp(batch_norm=True), n_layers=1, model=mlp(batch_norm=False))


def test_bad_reuse_arguments_raise_user_errors(tmp_path):
    with pytest.raises(UserError, match=r"n_layers: 4 is out of range; .* has 3 hidden layers"):
        transfer.reuse(mlp(), n_layers=4, new_head=2)
    with pytest.raises(
        UserError, match=r"new_head: reusing 2 of 3 layers needs a new output layer"
    ):
        transfer.reuse(mlp(), n_layers=2)
    with pytest.raises(UserError, match=r"does not exist"):
        transfer.reuse(tmp_path / "nope", n_layers=1, new_head=2)
    bare = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in mlp().state_dict().items()}, str(bare))
    with pytest.raises(UserError, match=r"does not record how its model was built"):
        transfer.reuse(bare, n_layers=1, new_head=2)
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(UserError, match=r"not a readable safetensors file"):
        transfer.reuse(tmp_path / "junk.safetensors", n_layers=1, model=mlp())


# -- freeze -------------------------------------------------------------------------------


@pytest.mark.parametrize("opt_name", ["sgd_momentum", "adam"])
def test_frozen_params_stay_while_unfrozen_ones_change(opt_name):
    model = mlp(batch_norm=True)
    params = list(model.parameters())
    opt = (
        torch.optim.SGD(params, lr=0.1, momentum=0.9)
        if opt_name == "sgd_momentum"
        else torch.optim.Adam(params, lr=0.01)
    )
    g = torch.Generator().manual_seed(3)
    for _ in range(2):  # steps before freezing: momentum/Adam state and stale .grad exist
        opt.zero_grad()
        nn.functional.cross_entropy(
            model(torch.randn(16, 12, generator=g)), torch.randint(0, 4, (16,), generator=g)
        ).backward()
        opt.step()
    names = transfer.freeze(model, up_to=2)
    assert names == ["blocks.0", "blocks.1"] == transfer.frozen_layers(model)
    frozen = {
        n: p.clone() for n, p in model.named_parameters() if n.startswith(("blocks.0", "blocks.1"))
    }
    free = {n: p.clone() for n, p in model.named_parameters() if n not in frozen}
    model.train()
    for _ in range(3):
        opt.zero_grad(set_to_none=False)  # a loop that keeps zeroed grads must not move them
        x, y = torch.randn(16, 12, generator=g), torch.randint(0, 4, (16,), generator=g)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
            assert p.grad is None, n
        else:
            assert not torch.equal(p, free[n]), n


def test_frozen_batch_norm_keeps_its_statistics_through_model_train():
    model = trained(mlp(batch_norm=True))
    transfer.freeze(model, up_to="blocks.0")
    bn0, bn1 = model.blocks[0].norm, model.blocks[1].norm
    stats0 = {k: v.clone() for k, v in bn0.state_dict().items()}
    stats1 = {k: v.clone() for k, v in bn1.state_dict().items()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
    g = torch.Generator().manual_seed(4)
    for _ in range(4):
        model.train()  # what every training loop does at each epoch
        x = torch.randn(16, 12, generator=g) * 3 - 2  # statistics far from the stored ones
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()
    for k, v in bn0.state_dict().items():
        assert torch.equal(v, stats0[k]), k
    assert not torch.equal(bn1.running_mean, stats1["running_mean"])  # unfrozen BN adapts
    # In training mode the frozen layer normalizes with its running statistics.
    model.train()
    x = torch.randn(5, 12, generator=g)
    with torch.no_grad():
        h = model.blocks[0].linear(x)
        expected = (h - bn0.running_mean) / torch.sqrt(
            bn0.running_var + bn0.eps
        ) * bn0.weight + bn0.bias
        assert torch.allclose(bn0(h), expected, atol=1e-6)


def test_unfreeze_releases_statistics_and_gradients_and_copies_keep_the_hold():
    model = trained(mlp(batch_norm=True))
    transfer.freeze(model)
    held = copy.deepcopy(model)
    transfer.freeze(model)  # a second freeze stacks no second hook
    assert len(model.blocks[0].norm._forward_pre_hooks) == 1
    model.train()
    assert transfer.unfreeze(model, layers=["blocks.0"]) == ["blocks.0"]
    assert model.blocks[0].norm.training and model.blocks[0].linear.weight.requires_grad
    before = model.blocks[0].norm.running_mean.clone()
    model(torch.randn(8, 12) + 5)
    assert not torch.equal(model.blocks[0].norm.running_mean, before)
    held.train()
    before = held.blocks[0].norm.running_mean.clone()
    held(torch.randn(8, 12) + 5)
    assert torch.equal(held.blocks[0].norm.running_mean, before)


def test_freeze_selection_errors_list_the_layers():
    model = mlp()
    with pytest.raises(
        UserError, match=r"no layer named 'blocks\.7'; the model's layers are \['blocks\.0'"
    ):
        transfer.freeze(model, up_to="blocks.7")
    with pytest.raises(UserError, match=r"freeze: 9 is out of range; the model has 4 layers"):
        transfer.freeze(model, up_to=9)
    assert transfer.freeze(model, layers=[-1]) == ["head"]


# -- discriminative learning rates ---------------------------------------------------------


def test_param_groups_cover_every_parameter_once_with_its_factor():
    model = mlp()
    groups = transfer.param_groups(model, [0.01, 0.1, 0.5, 1.0], lr=0.2)
    assert [g["name"] for g in groups] == ["blocks.0", "blocks.1", "blocks.2", "head"]
    assert [g["lr_scale"] for g in groups] == [0.01, 0.1, 0.5, 1.0]
    assert [g["lr"] for g in groups] == pytest.approx([0.002, 0.02, 0.1, 0.2], rel=1e-12)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    decayed = transfer.param_groups(model, 0.5)
    assert [g["lr_scale"] for g in decayed] == [0.125, 0.25, 0.5, 1.0]
    named = transfer.param_groups(model, {"blocks.0": 0.3})
    assert [g["lr_scale"] for g in named] == [0.3, 1.0, 1.0, 1.0]


def test_sgd_step_with_param_groups_matches_a_float64_reference():
    model = mlp(hidden=(8,), out=3).double()
    groups = transfer.param_groups(model, [0.1, 1.0], lr=0.5)
    opt = torch.optim.SGD(groups, lr=999.0)  # group lrs win over the default
    x = torch.randn(4, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in model.parameters()]
    model(x).square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    opt.step()
    scales = [0.05, 0.05, 0.5, 0.5]  # blocks.0 weight, bias; head weight, bias
    for p, b, g, s in zip(model.parameters(), before, grads, scales):
        assert torch.allclose(p, b - s * g, rtol=0, atol=1e-15)


def test_schedule_apply_honours_lr_scale():
    model = mlp()
    opt = torch.optim.SGD(transfer.param_groups(model, [0.25, 0.5, 1.0, 2.0]), lr=1.0)
    tw.optim.schedules.apply(opt, lambda step: 0.1, 0)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.025, 0.05, 0.1, 0.2])


def test_bad_factors_raise_user_errors():
    with pytest.raises(UserError, match=r"factors: got 2 factors for 4 layers"):
        transfer.param_groups(mlp(), [1.0, 2.0])
    with pytest.raises(UserError, match=r"factors\[blocks\.1\]: must be a positive finite number"):
        transfer.param_groups(mlp(), [1.0, -1.0, 1.0, 1.0])
    with pytest.raises(UserError, match=r"factors: no layer named 'body'"):
        transfer.param_groups(mlp(), {"body": 0.1})
