"""Fuzz the CLI in-process with hostile --set strings and config files (issue 10, items 1-3, 8).

The only allowed outcomes are a clean run or exit 2 with one ``error:`` line and the output
folder untouched; see ``harness.py``.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from families import train_case
from harness import ALLOWED, run_cli, set_strings
from hypothesis import given, settings
from hypothesis import strategies as st
from test_config_fields import LEAVES

from conftest import SCALE

FIELDS = [p for p, _ in LEAVES]


@settings(max_examples=150 * SCALE)
@given(rng=st.randoms(use_true_random=False), n=st.integers(1, 3))
def test_config_show_with_hostile_overrides_is_clean(rng: random.Random, n: int):
    outcome = run_cli(["config", "show", *set_strings(rng, FIELDS, n)], timeout_s=20)
    assert outcome.kind in ALLOWED, outcome


@settings(max_examples=12 * SCALE)
@given(rng=st.randoms(use_true_random=False))
def test_train_with_hostile_overrides_is_clean_and_leaves_the_folder(rng: random.Random):
    outcome, _ = train_case(rng, FIELDS)
    assert outcome.kind in ALLOWED, outcome


@settings(max_examples=40 * SCALE)
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_arbitrary_config_files_are_clean(text: str):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.toml"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        outcome = run_cli(["config", "show", str(path)], timeout_s=20)
    assert outcome.kind in ALLOWED, outcome


def test_the_harness_sees_a_traceback(monkeypatch):
    # A harness that cannot see a traceback would pass every input: break the loader once.
    from trainwell.config import io as config_io

    def broken(*a, **k):
        raise KeyError("optimizer")

    monkeypatch.setattr(config_io.tomllib, "loads", broken)
    outcome = run_cli(["config", "show", "--set", "optim.lr=1"])
    # "traceback" before the CLI wires the top-level guard, "internal" once it does.
    assert outcome.kind in ("traceback", "internal") and "KeyError" in outcome.detail, outcome
    assert outcome.kind not in ALLOWED
