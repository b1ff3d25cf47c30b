"""Findings do not flip with the probe interval, and every sentence shows its own evidence."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from test_doctor_rules import _blobs, _net
from trainwell.cli.runner import build_data, build_run
from trainwell.config import apply_patch, load_config
from trainwell.doctor import THRESHOLDS, DoctorCallback, Finding, watch

CASES = Path(__file__).resolve().parents[1] / "cases"

RUNS = {
    "dead_by_bias": (lambda: _net(4, nn.ReLU, lambda m: nn.init.constant_(m.bias, -3.0)),
                     {"lr": 0.05}, "dying_relu"),
    "lr_high": (lambda: _net(4, nn.ReLU), {"lr": 20.0, "momentum": 0.9}, "lr_too_high"),
    "lr_low": (lambda: _net(3, nn.ReLU), {"lr": 1e-10}, "lr_too_low"),
    "saturated": (lambda: _net(6, nn.Sigmoid, lambda m: nn.init.normal_(m.weight, 0.0, 3.0)),
                  {"lr": 0.1}, "saturation"),
    "raw_inputs": (lambda: _net(3, nn.ReLU), {"lr": 0.01, "scale": 100.0}, "unnormalized_inputs"),
}  # fmt: skip


def _run(make, every: int, lr: float, momentum: float = 0.0, scale: float = 1.0):
    """228 steps (6 epochs of batch 8) of SGD on blobs, probed every ``every`` steps."""
    model = make()
    x, y = _blobs(scale=scale)
    xv, yv, x, y = x[:100], y[:100], x[100:], y[100:]
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(1)
    with watch(model, every=every, num_classes=4) as w:
        for _ in range(6):
            order = torch.randperm(len(x), generator=gen)
            for s in range(0, len(x), 8):
                idx = order[s : s + 8]
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                if torch.isfinite(loss):
                    opt.step()
                w.step(loss)
            with torch.no_grad():
                w.end_epoch(val_accuracy=float((model(xv).argmax(1) == yv).float().mean()))
    return w.findings()


@pytest.mark.parametrize("case", sorted(RUNS))
def test_primary_finding_is_the_same_every_5_50_and_200_steps(case):
    make, kw, expected = RUNS[case]
    primaries = [_run(make, every, **kw)[0].kind for every in (5, 50, 200)]
    assert primaries == [expected] * 3


def _numbers(value) -> list[float]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return []
    return [float(value)]


def _unexplained_numbers(f: Finding) -> list[str]:
    """Numbers in the sentence that are neither evidence, nor a threshold, nor a count."""
    text = f.explanation
    for name in sorted(f.layers, key=len, reverse=True):
        text = text.replace(f"layer {name}", "layer")
    # Constants of the definitions: output 0 (dead), |z| ≥ 5 (saturated), unit scale 1.
    known = _numbers(f.evidence) + list(THRESHOLDS.values()) + [0.0, 5.0, 1.0, float(len(f.layers))]
    bad = []
    for tok in re.findall(r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?%?", text):
        v = float(tok.rstrip("%")) / (100 if tok.endswith("%") else 1)
        tol = 0.006 if tok.endswith("%") else 0.005 * abs(v) + 1e-300
        if not any(abs(v - k) <= max(tol, 0.005 * abs(k)) for k in known):
            bad.append(tok)
    return bad


@pytest.mark.parametrize("case", sorted(RUNS))
def test_every_explanation_is_built_from_its_evidence(case):
    make, kw, _ = RUNS[case]
    for f in _run(make, 50, **kw):
        assert _unexplained_numbers(f) == [], (f.kind, f.explanation, f.evidence)
        if f.kind == "lr_too_high":
            rising = "rose from" in f.explanation
            assert rising == f.evidence["loss_rising"]
            assert ("went up in" in f.explanation) == (
                f.evidence["loss_up_share"] >= THRESHOLDS["OSCILLATION_SHARE"]
            )


def test_a_sentence_with_a_number_not_in_its_evidence_is_caught():
    f = Finding("dying_relu", ("0",), {"dead_share": {"0": 0.9}}, "93% of layer 0 units", ())
    assert _unexplained_numbers(f) == ["93%"]


def test_cnn_at_sgd_lr_3_is_lr_too_high_at_every_probe_interval():
    # The flip: probed every 5 steps this run was called lr_too_low (repair: lr ×100),
    # every 200 steps lr_too_high. Digits 8×8, CNN [16, 32], 4 epochs of 34 steps.
    before = torch.get_num_threads()
    config = load_config(CASES / "cnn_lr10.toml")
    patch = {"optim.lr": 3.0, "train.epochs": 4, "data.source": f"npz:{CASES / 'digits_8x8.npz'}"}
    config = apply_patch(config, patch)
    data = build_data(config)
    primaries = []
    for every in (5, 50, 200):
        cb = DoctorCallback(every=every, num_classes=data.num_classes)
        build_run(config, callbacks=[cb], data=data).trainer.fit(data)
        primaries.append(cb.findings()[0].kind)
    torch.set_num_threads(before)
    assert primaries == ["lr_too_high"] * 3
