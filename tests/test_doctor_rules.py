"""Rules: each finding on a small network with the known pathology, and healthy controls."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainwell.doctor import THRESHOLDS, Finding, Health, diagnose_health, watch


def _blobs(n: int = 400, d: int = 16, k: int = 4, scale: float = 1.0):
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(k, d, generator=gen) * 1.5
    y = torch.arange(n) % k
    x = centers[y] + torch.randn(n, d, generator=gen)
    x = (x - x.mean(0)) / x.std(0)
    return x * scale, y


def _net(
    depth: int,
    act: type[nn.Module],
    init=None,
    width: int = 16,
    d: int = 16,
    k: int = 4,
    head: list[nn.Module] | None = None,
    out: int | None = None,
) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    n = d
    for _ in range(depth):
        lin = nn.Linear(n, width)
        if init is not None:
            init(lin)
        layers += [lin, act()]
        n = width
    layers.append(nn.Linear(n, out or k))
    layers += head or []
    return nn.Sequential(*layers)


def _train(
    model,
    *,
    lr=0.05,
    opt="sgd",
    epochs=3,
    scale=1.0,
    loss="cross_entropy",
    momentum=0.0,
    batch=32,
    k=4,
):
    x, y = _blobs(scale=scale, k=k)
    xv, yv = x[:100], y[:100]
    x, y = x[100:], y[100:]
    optimizer = (
        torch.optim.Adam(model.parameters(), lr=lr)
        if opt == "adam"
        else torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    )
    fn = {
        "cross_entropy": nn.functional.cross_entropy,
        "bce": lambda o, t: nn.functional.binary_cross_entropy(
            o.reshape(-1).clamp(1e-7, 1 - 1e-7), t.float()
        ),
    }[loss]
    gen = torch.Generator().manual_seed(1)
    with watch(model, every=5, num_classes=k, loss=loss) as w:
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=gen)
            for s in range(0, len(x), batch):
                idx = order[s : s + batch]
                out = model(x[idx])
                value = fn(out, y[idx])
                optimizer.zero_grad()
                value.backward()
                if torch.isfinite(value):
                    optimizer.step()
                w.step(value)
            with torch.no_grad():
                out = model(xv)
                pred = (out.reshape(-1) > 0.5).long() if loss == "bce" else out.argmax(1)
                w.end_epoch(val_accuracy=float((pred == yv).float().mean()))
    return [f.kind for f in w.findings()], w


def test_healthy_relu_and_deep_tanh_are_not_flagged():
    kinds, w = _train(_net(3, nn.ReLU), lr=0.2)
    assert kinds == [] and w.health.epochs[-1]["val_accuracy"] > 0.7
    # A 10-layer tanh net (Glorot) has a small first/head gradient ratio yet learns: no finding.
    kinds, w = _train(_net(10, nn.Tanh, lambda m: nn.init.xavier_normal_(m.weight)), lr=0.2)
    assert kinds == [] and w.health.epochs[-1]["val_accuracy"] > 0.7


def test_vanishing_gradients_deep_sigmoid():
    kinds, _ = _train(_net(10, nn.Sigmoid, lambda m: nn.init.xavier_normal_(m.weight)), lr=0.5)
    assert "vanishing_gradients" in kinds


def test_saturation_sigmoid_large_weights():
    kinds, _ = _train(_net(6, nn.Sigmoid, lambda m: nn.init.normal_(m.weight, 0.0, 3.0)), lr=0.1)
    assert "saturation" in kinds


def test_dying_relu_after_a_bias_shift():
    kinds, _ = _train(_net(4, nn.ReLU, lambda m: nn.init.constant_(m.bias, -3.0)), lr=0.05)
    assert "dying_relu" in kinds


def test_one_unit_softmax_is_a_bad_head_not_dying_relu():
    model = _net(3, nn.ReLU, head=[nn.Softmax(dim=1)], out=1, k=2)
    kinds, w = _train(model, loss="bce", k=2)
    assert kinds[0] == "bad_output_head" and "dying_relu" not in kinds
    assert all(r["layers"]["0"]["grad_zero_share"] == 1.0 for r in w.health.probes)


def test_symmetric_zero_init():
    kinds, _ = _train(
        _net(3, nn.Tanh, lambda m: (nn.init.zeros_(m.weight), nn.init.zeros_(m.bias)))
    )
    assert "symmetric_init" in kinds


def test_learning_rate_too_low_and_too_high():
    kinds, _ = _train(_net(3, nn.ReLU), lr=1e-10)
    assert kinds == ["lr_too_low"]
    kinds, _ = _train(_net(4, nn.ReLU), lr=20.0, momentum=0.9)
    assert "lr_too_high" in kinds


def test_unnormalized_inputs():
    kinds, _ = _train(_net(3, nn.ReLU), scale=100.0, lr=0.01)
    assert kinds[0] == "unnormalized_inputs"


def _health(probes, epochs=(), losses=(), layers=("a", "b", "head"), **ctx) -> Health:
    return Health(
        layers=[{"name": n, "fan_out": 8} for n in layers],
        probes=[{"type": "probe", "step": i, "layers": p} for i, p in enumerate(probes)],
        losses=list(losses) or [2.3] * 40,
        epochs=list(epochs),
        context={"loss": "cross_entropy", "num_classes": 10, **ctx},
    )


def test_exploding_ratio_threshold_is_exclusive():
    ratio = THRESHOLDS["EXPLODING_RATIO"]
    probes = [
        {"a": {"grad_norm": ratio * 1.01}, "b": {"grad_norm": 1.0}, "head": {"grad_norm": 1.0}}
    ]
    assert [f.kind for f in diagnose_health(_health(probes))] == ["exploding_gradients"]
    probes[0]["a"]["grad_norm"] = ratio
    assert diagnose_health(_health(probes)) == []


def test_gradient_findings_need_a_failing_run():
    probes = [{"a": {"grad_norm": 1e-12}, "head": {"grad_norm": 1.0}}]
    failing = diagnose_health(_health(probes, epochs=[{"val_accuracy": 0.1}]))
    assert [f.kind for f in failing] == ["vanishing_gradients"]
    assert failing[0].evidence["grad_ratio_first_to_head"] == pytest.approx(1e-12)
    learning = _health(probes, epochs=[{"val_accuracy": 0.9}], losses=[2.3] * 20 + [0.3] * 20)
    assert diagnose_health(learning) == []


def test_non_finite_and_overfitting_from_records():
    h = _health([{}], losses=[2.3] * 10 + [math.nan] + [2.3] * 10)
    assert diagnose_health(h)[0].kind == "non_finite"
    assert diagnose_health(h)[0].evidence["first_step"] == 10
    epochs = [
        {
            "train_loss": 1.0 / (e + 1),
            "val_loss": v,
            "train_accuracy": 0.7 + 0.06 * e,
            "val_accuracy": 0.7,
        }
        for e, v in enumerate([1.0, 0.8, 0.9, 1.0, 1.2])
    ]
    f = diagnose_health(_health([{}], epochs=epochs, losses=[1.0] * 20 + [0.2] * 20))
    assert [x.kind for x in f] == ["overfitting"] and f[0].evidence["best_val_epoch"] == 2


def test_finding_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown kind 'slow'"):
        Finding("slow", (), {}, "", ())
