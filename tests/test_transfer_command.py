"""``trainwell pretrain`` writes a run folder that ``transfer.from`` reuses."""

from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import pytest
import torch

from trainwell import transfer
from trainwell.cli import transfer as command
from trainwell.errors import UserError

CONFIG = """
name = "tiny"
seed = 2
[data]
source = "mnist1d"
num_samples = 1000
[model]
depth = 2
width = 16
[train]
epochs = 2
batch_size = 64
"""


def parse(*argv):
    parser = argparse.ArgumentParser()
    command.add_pretrain_arguments(parser)
    return parser.parse_args(list(argv))


def test_settings_come_from_defaults_then_config_then_flags():
    config = SimpleNamespace(pretrain=SimpleNamespace(method="stacked", epochs=7, lr=None))
    s = command.pretrain_settings(config, parse("--epochs", "3", "--noise", "mask"))
    assert s["method"] == "stacked" and s["epochs"] == 3 and s["noise"] == "mask"
    assert s["lr"] == command.PRETRAIN_DEFAULTS["lr"] and s["tied"] is False
    with pytest.raises(UserError, match=r"pretrain.epochs: must be >= 1, got 0"):
        command.pretrain_settings(SimpleNamespace(), parse("--epochs", "0"))


def test_pretrain_command_writes_a_run_that_transfer_from_reuses(tmp_path, capsys):
    from trainwell.cli.runner import build_run, run_model_args
    from trainwell.config import load_config

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "runs" / "tiny-pretrain"
    args = parse(
        str(cfg),
        "--out",
        str(out),
        "--method",
        "both",
        "--epochs",
        "2",
        "--stacked-epochs",
        "2",
        "--noise",
        "gaussian",
    )
    assert command.run_pretrain(args) == 0
    assert "pretrained encoder" in capsys.readouterr().out
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["stage"] for x in lines] == ["layer 0"] * 2 + ["layer 1"] * 2 + ["stacked"] * 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pretrain"]["method"] == "both" and summary["unlabelled_samples"] == 720

    state, _ = transfer.load_source(out)
    settings = run_model_args(out)
    assert settings is not None and settings["activation"] == "relu"
    assert transfer.count_blocks(state) == 2
    config = load_config(str(cfg), [f"transfer.from={out}", "transfer.n_layers=2"])
    run = build_run(config)
    for k, v in run.model.blocks.state_dict().items():
        assert torch.equal(v, state[f"blocks.{k}"]), k

    rebuilt = transfer.reuse(out, new_head=3, model_args=settings)  # the folder's config.toml
    assert rebuilt.head.out_features == 3 and len(rebuilt.blocks) == 2


def test_pretrain_command_refuses_a_cnn(tmp_path):
    cfg = tmp_path / "cnn.toml"
    cfg.write_text('[model]\nkind = "cnn"\n')
    with pytest.raises(UserError, match=r"model.kind: pretraining needs an mlp, got 'cnn'"):
        command.run_pretrain(parse(str(cfg), "--out", str(tmp_path / "o")))
