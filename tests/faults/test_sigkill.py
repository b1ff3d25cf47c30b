"""SIGKILLs at uniform times and during checkpoint writes, then resume: bit-identical (item 9).

A handful of kills on a tiny config keeps CI modest; ``benchmarks/reliability.py`` runs more.
"""

from __future__ import annotations

import random

import pytest
from killing import kill_and_resume, reference


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    state, wall_s = reference(tmp_path_factory.mktemp("faults") / "ref")
    return state, wall_s


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(2))
def test_a_kill_at_a_uniform_time_resumes_bit_identical(ref, tmp_path, trial):
    state, wall_s = ref
    delay = random.Random(trial).uniform(0, wall_s)  # seeded: the same moments every run
    result = kill_and_resume(tmp_path / "run", state, delay)
    assert result.identical, result
    assert result.leftovers == [], result


@pytest.mark.slow
def test_a_kill_during_a_checkpoint_write_resumes_bit_identical(ref, tmp_path):
    state, wall_s = ref
    result = kill_and_resume(tmp_path / "run", state, wall_s, at_write=True)
    assert result.phase in ("before_checkpoint", "after_checkpoint"), result
    assert result.identical, result
    assert result.leftovers == [], result
