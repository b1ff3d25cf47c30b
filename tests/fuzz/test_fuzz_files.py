"""Fuzz the data readers with mutated IDX, NPZ and CIFAR files (issue 10, items 1, 3, 9).

Each example writes a small valid file in its real format, mutates it (bit flips,
truncation, header edits, NaN/Inf value edits, appended junk) and loads it through
``trainwell.data.load`` (see ``families.py``): a clean load or a one-line UserError are the
only outcomes allowed, and a file with NaN/Inf values or bad labels must be refused.
"""

from __future__ import annotations

import random

from families import NPZ_EDITS, cifar_case, idx_case, npz_case
from harness import ALLOWED
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SCALE


@settings(max_examples=60 * SCALE)
@given(rng=st.randoms(use_true_random=False), gz=st.booleans())
def test_mutated_idx_files_are_clean(rng: random.Random, gz: bool):
    outcome, _ = idx_case(rng, gz)
    assert outcome.kind in ALLOWED, outcome


@settings(max_examples=60 * SCALE)
@given(rng=st.randoms(use_true_random=False), edit=st.sampled_from(NPZ_EDITS),
       compressed=st.booleans())
def test_mutated_npz_files_are_clean(rng: random.Random, edit: str, compressed: bool):
    outcome, must_refuse = npz_case(rng, edit, compressed)
    assert outcome.kind in ALLOWED, outcome
    assert not (must_refuse and outcome.kind == "ok"), f"{edit} was accepted"


@settings(max_examples=40 * SCALE)
@given(rng=st.randoms(use_true_random=False), flavour=st.sampled_from(["bin", "py"]))
def test_mutated_cifar_batches_are_clean(rng: random.Random, flavour: str):
    outcome, _ = cifar_case(rng, flavour)
    assert outcome.kind in ALLOWED, outcome
