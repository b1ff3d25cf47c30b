"""The doctor under every schedule: short diagnostic budgets keep the run's full schedule.

Regression test for the crash every new user met first: ``trainwell doctor`` on the default
config (1cycle) failed with "the schedule was built for 2260 steps but the run has 565",
because the diagnostic budget shortened the Trainer's run while the schedule kept the full
length. The same error hit every repair trial that added a schedule.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from test_data_files import make_idx_folder
from trainwell.cli import main
from trainwell.cli.repair_loop import _Builder, diagnose, diagnostic_epochs, repair
from trainwell.config import apply_patch, validate
from trainwell.doctor import REPAIRS

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

MOONS = {"source": "synthetic", "num_samples": 400, "options": {"kind": "moons", "noise": 0.2}}

# Every registered schedule, with the arguments it needs, and the composed forms.
SCHEDULES = {
    "constant": {"name": "constant"},
    "power": {"name": "power", "params": {"s": 40}},
    "exponential": {"name": "exponential", "params": {"s": 200}},
    "piecewise": {"name": "piecewise", "params": {"boundaries": [40], "values": [30.0, 3.0]}},
    "cosine": {"name": "cosine"},
    "one_cycle": {"name": "one_cycle"},
    "one_cycle_per_epoch": {"name": "one_cycle", "unit": "epoch"},
    "one_cycle_with_plateau": {"name": "one_cycle", "plateau": {"factor": 0.5, "patience": 1}},
    "performance": {"name": "performance"},
}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # conftest puts the count back


def _config(schedule: dict, *, lr: float = 0.3, optim: str = "sgd", epochs: int = 8):
    return validate({
        "name": "sched", "seed": 0, "device": "cpu", "data": MOONS,
        "model": {"depth": 2, "width": 16},
        "optim": {"name": optim, "lr": lr},
        "schedule": schedule,
        "train": {"epochs": epochs, "batch_size": 32, "checkpoint_every": 100, "threads": 1},
    })


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_diagnose_and_repair_run_to_a_verdict_under_every_schedule(name):
    config = _config(SCHEDULES[name], lr=30.0)  # SGD at lr 30 on moons: a broken run
    short = diagnostic_epochs(config)
    assert short == 1 < config.train.epochs  # 10% of 8 epochs, at least 1
    result = diagnose(config)
    assert result.before["epochs"] == short and result.yardstick["epochs"] == short
    assert result.findings, f"{name}: lr 30 should be flagged"
    result = repair(config, max_trials=2, finish=False)
    assert result.status in {"repaired", "unresolved", "improved"}
    assert 1 <= len(result.trials) <= 2


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_every_repair_patch_trains_the_short_budget_under_every_schedule(name):
    config = _config(SCHEDULES[name], lr=1e-2, optim="adam", epochs=6)
    short = diagnostic_epochs(config)
    tried = 0
    for repair_name, rep in REPAIRS.items():
        patch = rep.patch(config)
        if patch is None:
            continue
        session = _Builder().session(apply_patch(config, patch), short)
        metrics = session.train_to(short)
        assert metrics["epochs"] == short, repair_name
        # continuing to the full budget is the same run a fresh `trainwell train` gives
        after = session.train_to(config.train.epochs)
        assert after["epochs"] == config.train.epochs, repair_name
        tried += 1
    assert tried >= 5


def test_short_then_continued_equals_one_run_under_one_cycle():
    config = _config(SCHEDULES["one_cycle"], lr=1e-2, optim="adam", epochs=6)
    split = _Builder().session(config, 1)
    split.train_to(diagnostic_epochs(config))
    split.train_to(config.train.epochs)
    whole = _Builder().session(config, 1)
    whole.train_to(config.train.epochs)
    a = split.built.trainer.model.state_dict()
    b = whole.built.trainer.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    lrs_split = [h["lr"] for h in split.built.trainer.history]
    lrs_whole = [h["lr"] for h in whole.built.trainer.history]
    assert lrs_split == lrs_whole


@pytest.mark.parametrize("example", ["mnist1d", "digits", "synthetic-regression"])
def test_doctor_reaches_a_verdict_on_each_example(example, tmp_path, capsys):
    toml = EXAMPLES / f"{example}.toml"
    small = ["--set", "train.epochs=4", "--set", "train.threads=1"]
    if example != "digits":
        small += ["--set", "data.num_samples=600"]
    code = main(["doctor", str(toml), "--diagnose-only", "--json", "--out", str(tmp_path / "d"),
                 *small])
    assert code in (0, 1)  # 0 healthy, 1 findings; 2 would be an error
    out = json.loads(capsys.readouterr().out)
    assert "findings" in out


def test_doctor_reaches_a_verdict_on_the_fashion_mnist_example(tmp_path, capsys):
    make_idx_folder(tmp_path / "fm", n_train=120, n_test=40)
    code = main(["doctor", str(EXAMPLES / "fashion-mnist.toml"), "--diagnose-only", "--json",
                 "--out", str(tmp_path / "d"), "--set", f"data.source=idx:{tmp_path / 'fm'}",
                 "--set", "train.epochs=4", "--set", "train.threads=1",
                 "--set", "train.batch_size=32"])
    assert code in (0, 1)
    assert "findings" in json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", ["one_cycle", "cosine", "power", "performance"])
def test_default_config_with_each_schedule_reaches_a_verdict(name, tmp_path, capsys):
    sets = ["--set", f"schedule.name={name}", "--set", "train.epochs=4",
            "--set", "data.num_samples=600", "--set", "train.threads=1",
            "--set", "model.depth=2", "--set", "model.width=32"]
    if name == "power":
        sets += ["--set", "schedule.params={s = 50}"]
    code = main(["doctor", str(EXAMPLES / "mnist1d.toml"), "--json", "--out", str(tmp_path / "d"),
                 *sets])
    assert code in (0, 1)
    out = json.loads(capsys.readouterr().out)
    assert out["status"] in {"healthy", "repaired", "unresolved", "improved"}
