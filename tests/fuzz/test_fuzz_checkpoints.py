"""Fuzz resume with mutated checkpoints (issue 10, item 1): tampered JSON, damaged tensors.

A tiny run is trained once; each example copies its folder, damages the newest checkpoint
(JSON edits; tensor-file bit flips, truncation and NaN/Inf edits, with the recorded SHA-256
recomputed half of the time so the damage gets past the hash) and restores it through the
trainer the runner builds. A restore or a one-line UserError are the only outcomes allowed.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from harness import ALLOWED, call, mutate, mutate_json
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SCALE
from trainwell.config import load_config
from trainwell.runner import build_run
from trainwell.train.checkpoint import latest_checkpoint

CONFIG = load_config(None, ["data.source=synthetic", "data.num_samples=120", "model.depth=1",
                            "model.width=8", "train.epochs=1", "train.batch_size=32",
                            "train.threads=1", "optim.name=momentum", "optim.momentum=0.9"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("ckpt-run")
    built = build_run(CONFIG, run_dir=run_dir)
    built.trainer.fit(built.data)
    assert latest_checkpoint(run_dir) is not None
    return run_dir


def restore(run_dir: Path) -> None:
    build_run(CONFIG, run_dir=run_dir).trainer.restore()


def test_an_untouched_checkpoint_restores(trained):
    assert call(lambda: restore(trained)).kind == "ok"


@settings(max_examples=50 * SCALE)
@given(rng=st.randoms(use_true_random=False), target=st.sampled_from(["json", "tensors"]),
       rehash=st.booleans())
def test_damaged_checkpoints_are_clean(trained, rng: random.Random, target: str, rehash: bool):
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        shutil.copytree(trained, run_dir)
        path = latest_checkpoint(run_dir)
        meta = json.loads(path.read_text())
        if target == "json":
            path.write_text(json.dumps(mutate_json(meta, rng)))
        else:
            tensors = path.with_suffix(".safetensors")
            _, data = mutate(tensors.read_bytes(), rng)
            tensors.write_bytes(data)
            if rehash:
                meta["sha256"] = hashlib.sha256(data).hexdigest()
                path.write_text(json.dumps(meta))
        outcome = call(lambda: restore(run_dir))
    assert outcome.kind in ALLOWED, outcome
