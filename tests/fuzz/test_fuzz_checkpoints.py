"""Fuzz resume with mutated checkpoints (issue 10, item 1): tampered JSON, damaged tensors.

A tiny run is trained once; each example copies its folder, damages the newest checkpoint
(JSON edits; tensor-file bit flips, truncation and NaN/Inf edits, with the recorded SHA-256
recomputed half of the time so the damage gets past the hash) and restores it through the
trainer the runner builds (see ``families.py``). A restore or a one-line UserError are the
only outcomes allowed.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from families import CHECKPOINT_CONFIG, checkpoint_case, train_checkpointed
from harness import ALLOWED, call
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SCALE
from trainwell.cli.runner import build_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return train_checkpointed(tmp_path_factory.mktemp("ckpt-run"))


def test_an_untouched_checkpoint_restores(trained):
    outcome = call(lambda: build_run(CHECKPOINT_CONFIG, run_dir=trained).trainer.restore())
    assert outcome.kind == "ok", outcome


@settings(max_examples=50 * SCALE)
@given(rng=st.randoms(use_true_random=False), target=st.sampled_from(["json", "tensors"]),
       rehash=st.booleans())
def test_damaged_checkpoints_are_clean(trained, rng: random.Random, target: str, rehash: bool):
    outcome, _ = checkpoint_case(trained, rng, target, rehash)
    assert outcome.kind in ALLOWED, outcome
