"""The trainwell command: the default run learns, config show, and bad input → one line, exit 2."""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
import tomllib

import numpy as np
import pytest
import torch

from trainwell.cli import main
from trainwell.config import load_config, to_toml
from trainwell.errors import UserError

FAST = ["--set", "data.source=synthetic", "--set", "data.num_samples=400", "--set", "model.depth=2",
        "--set", "model.width=16", "--set", "train.epochs=2", "--quiet"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, pattern):
    import re

    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    assert re.search(pattern, lines[0]), lines[0]


def test_default_run_learns_on_a_small_budget(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(capsys, "train", "--set", "data.num_samples=3000", "--set",
                              "train.epochs=4", "--set", "model.depth=3", "--quiet", "--out", str(out))
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"]["test"]["accuracy"] > 0.35  # chance is 0.10 on MNIST-1D's 10 classes
    assert summary["seed"] == 0 and summary["versions"]["torch"]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 4
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "epoch-0003.json", "epoch-0003.safetensors", "epoch-0004.json", "epoch-0004.safetensors"]
    saved = load_config(out / "config.toml")
    assert saved.data.num_samples == 3000 and saved.model.depth == 3
    assert "test" in stdout and "samples/s" in stdout


def test_config_show_prints_toml_that_reads_back(capsys):
    code, out, _ = run_cli(capsys, "config", "show", "--set", "optim.lr=3e-4", "--set", "model.depth=20")
    assert code == 0
    raw = tomllib.loads(out)
    assert raw["optim"]["lr"] == 3e-4 and raw["model"]["depth"] == 20
    assert to_toml(load_config(None, ["optim.lr=3e-4", "model.depth=20"])) == out


@pytest.mark.parametrize("override, pattern", [
    ("optim.lrr=1", r"optim\.lrr: unknown field"),
    ("model.depth=abc", r"model\.depth: Input should be a valid integer"),
    ("optim.lr=-0.1", r"optim\.lr: Input should be greater than 0 \(got -0\.1\)"),
    ("optim.name=adamx", r"optim\.name: unknown optimizer 'adamx'"),
    ("model.activation=relux", r"model\.activation: unknown activation 'relux'"),
    ("data.source=npz:/nonexistent/file.npz", r"/nonexistent/file\.npz"),
    ("schedule.params={total_steps=7}", r"schedule.total_steps"),
    ("train.loss=mse", r"train\.loss: 'mse' needs regression targets"),
    ("train.loss=bce", r"train\.loss: 'bce' needs one output unit and two classes, but the model gives 3 outputs for 3 classes"),
    ("train.loss=nll", r"train\.loss: 'nll' takes log-probabilities \(as in torch\) but the model outputs logits"),
])
def test_bad_config_values_give_one_line_and_no_run_folder(tmp_path, capsys, override, pattern):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", *FAST, "--set", override, "--out", str(out))
    assert_one_line_error(code, err, pattern)
    assert not out.exists()


def test_a_misspelt_key_in_a_toml_file_names_file_and_field(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[optim]\nname = \"adam\"\nlearning_rate = 0.1\n")
    code, _, err = run_cli(capsys, "train", str(cfg))
    assert_one_line_error(code, err, r"bad\.toml: optim\.learning_rate: unknown field")


def test_a_missing_config_file(capsys):
    code, _, err = run_cli(capsys, "train", "/no/such.toml")
    assert_one_line_error(code, err, r"config /no/such\.toml: no such file")


def test_an_unknown_cli_flag(capsys):
    code, _, err = run_cli(capsys, "train", "--epochs", "3")
    assert_one_line_error(code, err, r"unrecognized arguments: --epochs")


def write_idx(folder, n=20, truncate=False, label_max=9):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", n), ("t10k", n // 2)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8).tobytes()
        if truncate and prefix == "train":
            images = images[: len(images) // 2]
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">HBBIII", 0, 0x08, 3, count, 28, 28) + images)
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        labels[0] = label_max
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">HBBI", 0, 0x08, 1, count) + labels.tobytes())


def test_a_truncated_data_file_is_named(tmp_path, capsys):
    write_idx(tmp_path / "fm", truncate=True)
    code, _, err = run_cli(capsys, "train", *FAST, "--set", f"data.source=idx:{tmp_path / 'fm'}",
                           "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, r"train-images-idx3-ubyte\.gz.*truncated")
    assert not (tmp_path / "run").exists()


def test_a_label_out_of_range_is_named(tmp_path, capsys):
    write_idx(tmp_path / "fm", label_max=12)
    code, _, err = run_cli(capsys, "train", *FAST, "--set", f"data.source=idx:{tmp_path / 'fm'}",
                           "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, r"label")
    assert not (tmp_path / "run").exists()


def test_idx_folder_trains_a_cnn(tmp_path, capsys):
    write_idx(tmp_path / "fm", n=64)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--set", f"data.source=idx:{tmp_path / 'fm'}",
                           "--set", "model.kind=cnn", "--set", "model.channels=[4]", "--set", "schedule.name=constant",
                           "--set", "train.epochs=1", "--quiet", "--out", str(out))
    assert code == 0, err
    assert json.loads((out / "summary.json").read_text())["final"]["test"]["loss"] > 0


def test_a_shape_that_does_not_fit_the_model(tmp_path, capsys):
    # MNIST-1D samples are sequences: a cnn reads them as (1, 40) now, a resnet cannot.
    code, _, err = run_cli(capsys, "train", *FAST, "--set", "model.kind=resnet",
                           "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, r"model\.kind: a resnet needs image data")
    assert not (tmp_path / "run").exists()


def test_wrong_out_features_for_the_labels(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", *FAST, "--set", "model.out_features=7",
                           "--out", str(tmp_path / "run"))
    assert_one_line_error(code, err, r"model\.out_features: the model gives 7 outputs but the data have 3 classes")


def finished_run(tmp_path, capsys, *extra):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", *FAST, *extra, "--out", str(out))
    assert code == 0, err
    return out


def test_a_corrupt_checkpoint_is_refused_on_resume(tmp_path, capsys):
    out = finished_run(tmp_path, capsys)
    tensor_file = sorted((out / "checkpoints").glob("*.safetensors"))[-1]
    tensor_file.write_bytes(tensor_file.read_bytes()[:100])
    before = sorted(p.name for p in out.rglob("*"))
    code, _, err = run_cli(capsys, "train", "--resume", str(out), "--quiet")
    assert_one_line_error(code, err, r"corrupt \(SHA-256 does not match")
    assert sorted(p.name for p in out.rglob("*")) == before


def test_a_checkpoint_from_another_model_is_refused(tmp_path, capsys):
    out = finished_run(tmp_path, capsys)
    cfg = out / "config.toml"
    cfg.write_text(cfg.read_text().replace("width = 16", "width = 32"))
    code, _, err = run_cli(capsys, "train", "--resume", str(out), "--quiet")
    assert_one_line_error(code, err, r"has shape \(16, 20\) but the model has \(32, 20\)")


def test_resume_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--resume", str(tmp_path))
    assert_one_line_error(code, err, r"no config\.toml there")


def test_the_console_script_exits_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "trainwell.cli", "train", "--set", "optim.lr=-1"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: optim.lr: Input should be greater than 0 (got -1)"
    assert not (tmp_path / "runs").exists()


def test_lr_find_writes_a_plot_and_suggests_an_lr_inside_the_sweep(tmp_path, capsys):
    out = tmp_path / "lrf"
    code, stdout, err = run_cli(capsys, "lr-find", *FAST[:-1], "--steps", "60", "--out", str(out))
    assert code == 0, err
    result = json.loads((out / "lr_find.json").read_text())
    assert result["lrs"][0] == pytest.approx(1e-7)
    assert min(result["lrs"]) <= result["suggestion"] <= max(result["lrs"])
    assert (out / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"set in the config: {result['advice']['line']}" in stdout


def test_a_refused_resume_leaves_the_run_folder_byte_for_byte(tmp_path, capsys):
    out = finished_run(tmp_path, capsys)
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    for override in ("model.width=32", "seed=5"):
        code, _, err = run_cli(capsys, "train", "--resume", str(out), "--set", override, "--quiet")
        assert code == 2, err
        after = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
        assert after == before
    code, _, err = run_cli(capsys, "train", "--resume", str(out), "--quiet")
    assert code == 0, err  # the run is still resumable


# -- errors: config paths at the front, argument names below ------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.options.kind=spiral"], r"^error: data\.kind: unknown kind 'spiral'; use one of "),
        (["data.options.noise=-1"], r"^error: data\.noise: must be a number in \[0, 1e6\), got -1$"),
        (["data.classes=[0, 7]"], r"^error: data\.classes: \[7\] not in 0\.\.2$"),
        (["transfer.from=nowhere"], r"^error: transfer\.from: nowhere does not exist; "),
    ],
)
def test_a_bad_config_value_names_its_config_path(tmp_path, capsys, overrides, message):
    args = [x for o in overrides for x in ("--set", o)]
    code, _, err = run_cli(capsys, "train", *FAST, *args, "--out", str(tmp_path / "r"))
    assert_one_line_error(code, err, message)
    assert not (tmp_path / "r").exists()


def test_a_bad_python_argument_names_the_argument():
    import trainwell as tw
    from trainwell.transfer import reuse

    with pytest.raises(ValueError, match=r"^dropout: must be in \[0, 1\), got 1\.5; "):
        tw.nn.MLP(4, [8], 2, dropout=1.5)
    with pytest.raises(ValueError, match=r"^name: unknown optimizer 'adamz'; "):
        tw.optim.build("adamz", [torch.zeros(1, requires_grad=True)])
    with pytest.raises(ValueError, match=r"^lr: "):
        tw.optim.build("adam", [torch.zeros(1, requires_grad=True)], lr=-1.0)
    with pytest.raises(ValueError, match=r"^epochs: must be >= 1, got 0$"):
        tw.Trainer(tw.nn.MLP(4, [8], 2), None, epochs=0, batch_size=8)
    with pytest.raises(ValueError, match=r"^source: nowhere does not exist; "):
        reuse("nowhere", n_layers=1, new_head=2)


def test_config_path_maps_argument_names_of_one_section_only():
    from trainwell.cli.fields import CONFIG_PATHS, config_path, config_section

    assert config_path("optim", "lr: must be >= 0, got -1.0") == "optim.lr: must be >= 0, got -1.0"
    assert config_path("optim", "betas[0]: must be in [0, 1)") == "optim.betas[0]: must be in [0, 1)"
    assert config_path("transfer", "source: x does not exist") == "transfer.from: x does not exist"
    assert config_path("data", "lr: not here") is None  # another section's argument
    assert config_path("model", "no colon here") is None
    assert all(path.split(".")[0] in {"model", "optim", "data", "train", "schedule",
                                      "regularization", "transfer", "pretrain"}
               for path in CONFIG_PATHS.values())
    with pytest.raises(UserError, match=r"^model\.dropout: must be"):
        with config_section("model"):
            raise ValueError("dropout: must be in [0, 1), got 1.5")
    with pytest.raises(TypeError, match=r"^unrelated$"):  # not a mapped argument: unchanged
        with config_section("model"):
            raise TypeError("unrelated")


def test_every_experiment_is_a_subcommand_in_order():
    from trainwell.cli import build_parser
    from trainwell.cli.experiments import EXPERIMENTS, run_vanishing

    parser = build_parser()
    args = parser.parse_args(["experiment", "vanishing", "--depth", "3"])
    assert args.func is run_vanishing and args.depth == 3 and args.seeds == 3
    args = parser.parse_args(["experiment", "transfer", "--quick"])
    assert args.quick and args.threads == 1 and args.seeds == EXPERIMENTS["transfer"].default_seeds
    sub = next(a for a in parser._subparsers._group_actions[0].choices["experiment"]._actions
               if a.dest == "experiment")
    assert list(sub.choices) == ["optimizers", "schedules", "regularization", "activations",
                                 "vanishing", "transfer", "pretraining"]
