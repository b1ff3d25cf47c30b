"""Probes: each statistic against a float64 reference, hooks only on probe steps, watch()."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainwell.doctor import Health, Probe, describe_layers, probe_schedule, watch


def _mlp(act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), act(), nn.Linear(3, 2))


def test_describe_layers_pairs_activations():
    layers = describe_layers(
        nn.Sequential(
            nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Tanh(), nn.Linear(3, 2), nn.Softmax(dim=1)
        )
    )
    assert [(i.name, i.activation, i.fan_in, i.fan_out) for i in layers] == [
        ("0", "tanh", 4, 3),
        ("3", "softmax", 3, 2),
    ]


def test_probe_schedule_step_zero_then_every():
    assert [s for s in range(130) if probe_schedule(s, 50)] == [0, 50, 100]


def test_tiny_gradient_norm_does_not_underflow():
    model = nn.Sequential(nn.Linear(3, 2))
    model[0].weight.grad = torch.full((2, 3), 1e-30)
    probe = Probe(model)
    probe.grads()
    rec = probe.record(0)
    # float32 would square 1e-30 to 0; the float64 reference is sqrt(6)·1e-30.
    assert rec["layers"]["0"]["grad_norm"] == pytest.approx(math.sqrt(6) * 1e-30, rel=1e-6)
    assert rec["layers"]["0"]["grad_abs_mean"] == pytest.approx(1e-30, rel=1e-6)
    assert rec["grad_norm"] == pytest.approx(math.sqrt(6) * 1e-30, rel=1e-6)


def test_statistics_match_float64_reference():
    model = _mlp()
    with torch.no_grad():  # unit 0 dead for every input (bias −100), units 1-2 alive
        model[0].bias.copy_(torch.tensor([-100.0, 100.0, 100.0]))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 4, generator=torch.Generator().manual_seed(1)), torch.arange(8) % 2
    probe = Probe(model)
    probe.arm()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    g = model[0].weight.grad.double().clone()
    w0 = model[0].weight.detach().double().clone()
    probe.grads()
    opt.step()
    probe.update()
    rec = probe.record(0, loss.item())
    st = rec["layers"]["0"]
    # float32 gradient pre-scaled by max|g| (one rounding per entry), summed in float64
    assert st["grad_norm"] == pytest.approx(float(g.norm()), rel=1e-6)
    assert st["grad_zero_share"] == pytest.approx(float((g == 0).double().mean()))
    assert st["grad_zero_share"] >= 1 / 3  # the dead unit's row of 4 weights gets no gradient
    assert st["weight_norm"] == pytest.approx(float(w0.norm()), rel=1e-6)
    assert st["update_ratio"] == pytest.approx(float((0.1 * g).norm() / w0.norm()), rel=1e-5)
    assert st["dead_share"] == pytest.approx(1 / 3)
    h = torch.relu(x.double() @ w0.T + torch.tensor([-100.0, 100.0, 100.0], dtype=torch.float64))
    assert st["act_mean"] == pytest.approx(float(h.mean()), rel=1e-5)
    assert st["act_std"] == pytest.approx(float(h.std()), rel=1e-5)
    assert not probe.armed and not model[1]._forward_hooks


def test_saturated_share_counts_tails():
    model = nn.Sequential(nn.Linear(1, 4), nn.Sigmoid(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.0], [0.0], [0.0], [0.0]]))
        model[0].bias.copy_(torch.tensor([-6.0, 6.0, 4.0, 0.0]))  # |z| ≥ 5 for two units
    probe = Probe(model)
    probe.arm()
    model(torch.zeros(5, 1))
    # σ(4) = 0.982 is not within 0.01 of 1, σ(±6) is: 2 of 4 entries per sample.
    assert probe.record(0)["layers"]["0"]["saturated_share"] == pytest.approx(0.5)


def test_hooks_only_on_probe_steps_and_eval_is_ignored():
    model = _mlp()
    probe = Probe(model)
    assert not any(m._forward_hooks for m in model.modules())
    probe.arm()
    model.eval()
    model(torch.randn(3, 4))
    assert probe.record(0)["layers"]["0"] == {}  # eval forwards are not recorded
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_watch_in_a_plain_loop_records_and_removes_hooks():
    model = _mlp(nn.Tanh)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=gen)
    y = (x[:, 0] > 0).long()
    with watch(model, every=4, num_classes=2) as w:
        for _ in range(10):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    assert [r["step"] for r in w.health.probes] == [0, 4, 8]
    assert len(w.health.losses) == 10
    assert all(r["layers"]["0"]["update_ratio"] > 0 for r in w.health.probes)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_health_jsonl_round_trip(tmp_path):
    h = Health(
        layers=[{"name": "0"}],
        probes=[{"type": "probe", "step": 0, "layers": {}}],
        losses=[1.0, float("nan"), 0.5],
        epochs=[{"epoch": 1, "steps": 2}],
        context={"loss": "cross_entropy"},
    )
    h.write(tmp_path / "health.jsonl")
    back = Health.read(tmp_path / "health.jsonl")
    assert back.layers == h.layers and back.context == h.context and back.probes == h.probes
    assert back.losses[0] == 1.0 and math.isnan(back.losses[1]) and back.losses[2] == 0.5
    assert back.epochs == [{"epoch": 1, "steps": 2}]


def test_health_read_rejects_other_files(tmp_path):
    p = tmp_path / "health.jsonl"
    p.write_text("not json\n")
    with pytest.raises(ValueError, match=r"health.jsonl:1: not a health record line"):
        Health.read(p)
    with pytest.raises(ValueError, match=r"no health record"):
        Health.read(tmp_path / "missing.jsonl")


def test_public_names_have_docstrings():
    import inspect

    import trainwell.doctor as doctor

    for name in doctor.__all__:
        obj = getattr(doctor, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert (obj.__doc__ or "").strip(), name
