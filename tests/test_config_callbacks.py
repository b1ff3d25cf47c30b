"""Callbacks a config asks for: built in a fixed order, and live in a real CLI run."""

from __future__ import annotations

import json

from trainwell.cli import main
from trainwell.cli.runner import config_callbacks
from trainwell.config import validate
from trainwell.doctor.rollback import RollbackGuard
from trainwell.train import BestCheckpoint, CSVLogger, EarlyStopping

FAST = ["--set", "data.source=synthetic", "--set", "data.num_samples=400", "--set",
        "model.depth=1", "--set", "model.width=8", "--set", "train.threads=1",
        "--set", "schedule.name=constant", "--quiet"]


def test_config_callbacks_come_in_a_fixed_order(tmp_path):
    config = validate({"train": {"rollback_every": 7, "early_stopping": {"patience": 2},
                                 "log": {"csv": True}}})
    cbs = config_callbacks(config, tmp_path)
    assert [type(c) for c in cbs] == [RollbackGuard, EarlyStopping, BestCheckpoint, CSVLogger]
    assert cbs[0].every == 7
    assert config_callbacks(validate({}), tmp_path) == []


def test_early_stopping_and_csv_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", *FAST, "--set", "train.epochs=40", "--set", "optim.lr=0.05",
                 "--set", "train.early_stopping={patience = 2}", "--set", "train.log={csv = true}",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(history) < 40  # stopped early
    best = min(range(len(history)), key=lambda i: history[i]["val_loss"])
    assert len(history) - 1 - best == 2  # exactly `patience` epochs without improvement
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == len(history) + 1 and rows[0].startswith("epoch")
    assert (out / "checkpoints" / "best.json").is_file()  # restore_best survives a resume
