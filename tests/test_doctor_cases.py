"""CI's fast subset of the doctor's cases: every one detected with its kind, repaired or healthy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainwell.cli import main

CASES = Path(__file__).resolve().parents[1] / "cases"


# The symmetric-init cases warn by design: the warning is what the user would see. So do
# the exploding cases: the trainer skips their non-finite steps and says so once.
@pytest.mark.filterwarnings("ignore:init.*symmetry problem:UserWarning")
@pytest.mark.filterwarnings("ignore:step [0-9]+.*is not finite:RuntimeWarning")
def test_fast_cases_are_detected_and_repaired(capsys, tmp_path):
    code = main(["doctor", "--cases", str(CASES), "--fast", "--json", "--out", str(tmp_path)])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    rows = [r for r in lines if "case" in r]
    assert len(rows) >= 8
    for row in rows:
        assert row["detected"], row
        if row["expected"] == "healthy":
            assert row["chosen"] is None, row
    broken = [r for r in rows if r["expected"] != "healthy"]
    assert sum(r["within_reference"] for r in broken) >= 0.9 * len(broken)
    assert code == 0
