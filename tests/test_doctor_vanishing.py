"""``trainwell experiment vanishing`` on a small scale: gradient norms and the table."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from trainwell.errors import UserError
from trainwell.experiments import vanishing


def test_first_step_grad_norms_match_float64_reference():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Sigmoid(), nn.Linear(4, 3))
    x, y = torch.randn(6, 5), torch.tensor([0, 1, 2, 0, 1, 2])
    norms = vanishing.first_step_grad_norms(model, x, y)
    ref = model.double()
    loss = nn.functional.cross_entropy(ref(x.double()), y)
    grads = torch.autograd.grad(loss, [ref[0].weight, ref[2].weight])
    assert norms == pytest.approx([float(g.norm()) for g in grads], rel=1e-6)
    assert all(p.grad is None for p in model.parameters())  # no step, no leftover gradient


def test_run_small_writes_table(tmp_path):
    before = torch.get_num_threads()
    try:
        rows = vanishing.run(
            tmp_path,
            seeds=1,
            depth=8,
            width=16,
            epochs=1,
            setups=(("sigmoid", "normal"), ("relu", "he_normal")),
        )
    finally:
        torch.set_num_threads(before)
    assert [(r["activation"], r["init"]) for r in rows] == [
        ("sigmoid", "normal"),
        ("relu", "he_normal"),
    ]
    assert all(len(r["grad_norms"]) == 9 and 0.0 <= r["test_accuracy"] <= 1.0 for r in rows)
    assert rows[0]["grad_ratio"] == pytest.approx(
        rows[0]["grad_norms"][0] / rows[0]["grad_norms"][-1]
    )
    assert (tmp_path / "grad_norms.png").stat().st_size > 1000
    assert json.loads((tmp_path / "results.json").read_text())[1]["init"] == "he_normal"
    assert "| relu + he_normal |" in (tmp_path / "table.md").read_text()
    with pytest.raises(UserError, match="--seeds: must be >= 1"):
        vanishing.run(None, seeds=0)
