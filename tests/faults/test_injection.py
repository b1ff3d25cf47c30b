"""Injected faults through the real CLI: NaN/Inf in input files, corrupted checkpoints.

Each must end in exit 2 with one ``error:`` line naming the file, and leave the run folder
byte-for-byte as it was (issue 10, items 3 and 6).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).parents[1] / "fuzz"))
from harness import TINY, run_cli, snapshot  # noqa: E402

from trainwell.cli.runner import build_run  # noqa: E402
from trainwell.config import load_config, to_toml  # noqa: E402


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_are_refused_before_the_folder_exists(tmp_path, bad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((80, 5))
    x[17, 3] = bad
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(80) % 2)
    out = tmp_path / "out"
    outcome = run_cli(["train", *TINY, "--set", f"data.source=npz:{tmp_path / 'd.npz'}",
                       "--quiet", "--out", str(out)], out)
    assert outcome.kind == "clean_error", outcome
    assert outcome.detail == (f"error: data.source: {tmp_path / 'd.npz'}: x has 1 non-finite "
                              "value (NaN, inf, or beyond float32), the first at index (17, 3); "
                              "remove or impute them")
    assert not out.exists()


CONFIG = load_config(None, ["data.source=synthetic", "data.num_samples=120", "model.depth=1",
                            "model.width=8", "train.epochs=2", "train.batch_size=32",
                            "train.threads=1", "name=inject"])


@pytest.fixture
def half_run(tmp_path) -> Path:
    """A run folder killed after epoch 1 of 2: config.toml, metrics and one checkpoint."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.toml").write_text(to_toml(CONFIG))
    one = CONFIG.model_copy(update={"train": CONFIG.train.model_copy(update={"epochs": 1})})
    built = build_run(one, run_dir=run_dir)
    built.trainer.fit(built.data)
    return run_dir


@pytest.mark.parametrize("damage, expected", [
    ("flip", "corrupt (SHA-256 does not match the one recorded)"),
    ("truncate_json", "unreadable (JSONDecodeError)"),
    ("nan_weights", "holds 1 non-finite values"),
    ("drop_optimizer", "field 'optimizer.param_groups' is missing or not a list"),
])
def test_a_corrupt_checkpoint_is_refused_and_the_folder_untouched(half_run, damage, expected):
    meta_path = half_run / "checkpoints" / "epoch-0001.json"
    tensor_path = meta_path.with_suffix(".safetensors")
    meta = json.loads(meta_path.read_text())
    if damage == "flip":
        data = bytearray(tensor_path.read_bytes())
        data[-3] ^= 0x10
        tensor_path.write_bytes(bytes(data))
    elif damage == "truncate_json":
        meta_path.write_text(meta_path.read_text()[:40])
    elif damage == "nan_weights":
        tensors = load_file(str(tensor_path))
        first = sorted(k for k in tensors if k.startswith("model/"))[0]
        tensors[first].view(-1)[0] = torch.nan
        save_file(tensors, str(tensor_path))
        meta["sha256"] = hashlib.sha256(tensor_path.read_bytes()).hexdigest()
        meta_path.write_text(json.dumps(meta))
    else:
        del meta["optimizer"]
        meta_path.write_text(json.dumps(meta))
    before = snapshot(half_run)
    outcome = run_cli(["train", "--resume", str(half_run), "--quiet"], half_run)
    assert outcome.kind == "clean_error", outcome
    assert expected in outcome.detail
    assert snapshot(half_run) == before
