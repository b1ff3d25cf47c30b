"""The four playbook experiments: tiny (--quick) runs write their table, results and plots."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch

import trainwell.nn as twnn
from trainwell.cli import experiments as experiment_cli
from trainwell.cli.experiments import ConfigBuild
from trainwell.errors import UserError
from trainwell.experiments import activations, common, optimizers, regularization, schedules
from trainwell.optim import OPTIMIZERS

EXPECTED = {
    optimizers: ([*OPTIMIZERS][:1] + ["sgd (lr=0.1)"] + [*OPTIMIZERS][1:], ["curves.png"]),
    schedules: (
        ["constant", "power", "exponential", "piecewise", "performance", "1cycle"],
        ["curves.png"],
    ),
    regularization: (["none", "l2", "dropout", "max_norm"], ["curves.png", "gap.png"]),
    activations: (["relu", "leaky_relu", "elu", "selu"], ["curves.png", "dead_units.png"]),
}


@pytest.mark.parametrize("module", list(EXPECTED), ids=lambda m: m.NAME)
def test_quick_run_writes_table_results_and_plots(module, tmp_path):
    names, pngs = EXPECTED[module]
    rows = module.run(tmp_path, seeds=[0], quick=True, build=ConfigBuild())
    assert [r["name"] for r in rows] == names
    for r in rows:
        for split in ("train", "val", "test"):
            acc = r["metrics"][f"{split}_accuracy"]
            assert 0.0 <= acc["mean"] <= 1.0 and acc["std"] == 0.0 and len(acc["values"]) == 1
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["experiment"] == module.NAME and saved["quick"] is True
    assert [r["name"] for r in saved["rows"]] == names
    table = (tmp_path / "table.md").read_text()
    body = [line for line in table.splitlines() if line.startswith("| ")][2:]
    assert [line.split(" | ")[0][2:].split(" (")[0] for line in body] == [
        n.split(" (")[0] for n in names
    ]
    for png in pngs:
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_activations_reports_dead_shares_in_range(tmp_path):
    rows = activations.run(tmp_path, seeds=[0], quick=True, build=ConfigBuild())
    for r in rows:
        for key in ("init_dead_fraction", "final_dead_fraction"):
            assert 0.0 <= r["metrics"][key]["mean"] <= 1.0
        assert len(r["extra"]["final"][0]["dead_per_layer"]) == activations.QUICK_BUDGET.depth


def test_dead_units_counts_units_that_never_fire():
    model = twnn.MLP(in_features=3, hidden=[4, 2], out_features=2, activation="relu")
    with torch.no_grad():
        first = model.blocks[0].linear
        first.weight[:3] = 0.0
        first.bias[:3] = torch.tensor([-1.0, 0.0, 1.0])  # dead, dead (exactly 0), alive
        first.weight[3] = torch.tensor([1.0, 0.0, 0.0])  # fires on x0 > 0 only
        first.bias[3] = 0.0
    x = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 2.0, 3.0]])
    shares = activations.dead_units(model, x)
    assert shares[0] == 0.5 and len(shares) == 2
    assert model.training  # the mode is restored


def test_mean_std_is_the_sample_standard_deviation():
    mean, std = common.mean_std([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3, rel=1e-15)
    assert std == pytest.approx(
        math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2), rel=1e-15
    )
    assert common.mean_std([0.5]) == (0.5, 0.0)
    assert common.pm({"mean": 0.81234, "std": 0.0104}) == "0.812 ± 0.010"


def test_markdown_table_layout():
    text = common.markdown_table(["a", "b"], [["x", "1"]])
    assert text == "| a | b |\n| :--- | ---: |\n| x | 1 |\n"


def test_seed_list_and_its_error():
    assert common.seed_list(3) == [0, 1, 2]
    assert common.seed_list([5, 7]) == [5, 7]
    with pytest.raises(UserError, match=r"--seeds: need at least 1 seed, got 0"):
        common.seed_list(0)


def test_run_command_parses_flags_and_writes_to_out(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    experiment_cli.add_arguments(parser, "regularization")
    args = parser.parse_args(["--seeds", "1", "--quick", "--out", str(tmp_path / "reg")])
    assert experiment_cli.run_command("regularization", args) == 0
    out = capsys.readouterr().out
    assert "| none |" in out and (tmp_path / "reg" / "results.json").is_file()
    with pytest.raises(UserError, match=r"--seeds"):
        experiment_cli.run_command("regularization", parser.parse_args(["--seeds", "0", "--out", str(tmp_path)]))
