"""The transfer and pretraining experiments: summary formulas and quick end-to-end runs."""

from __future__ import annotations

import argparse
import json

import pytest

from trainwell.cli import experiments as experiment_cli
from trainwell.experiments import transfer


def test_summary_rows_follow_their_formulas():
    per_seed = [
        {"scratch": 0.80, "reuse": 0.90},
        {"scratch": 0.70, "reuse": 0.85},
    ]
    rows = {r["method"]: r for r in transfer.summarize(per_seed)}
    assert rows["scratch"]["accuracy_mean"] == pytest.approx(0.75)
    assert rows["scratch"]["accuracy_std"] == pytest.approx(0.0707106781186548)  # stdev, n-1
    # mean error 0.25 vs 0.125: the reused model makes half the errors
    assert rows["reuse"]["error_ratio"] == pytest.approx(0.25 / 0.125)
    assert rows["reuse"]["wins"] == 2 and "error_ratio" not in rows["scratch"]


def test_markdown_table_formats_and_marks_missing_cells():
    table = transfer.markdown_table(
        [{"m": "a", "x": 0.5}, {"m": "b"}], [("method", "m"), ("x", "{x:.2f}")]
    )
    assert table.splitlines() == ["| method | x |", "|---|---|", "| a | 0.50 |", "| b | – |"]


def test_seed_list():
    assert transfer.seed_list(3) == [0, 1, 2]
    assert transfer.seed_list([4, 7]) == [4, 7]
    with pytest.raises(ValueError, match=r"--seeds: need at least 1 seed"):
        transfer.seed_list(0)


@pytest.mark.slow
def test_quick_transfer_experiment_writes_its_table(tmp_path):
    rows = transfer.run(tmp_path / "t", seeds=2, quick=True)
    assert [r["method"] for r in rows] == [
        "model A (classes 0-7)",
        "scratch",
        "reuse A, frozen",
        "reuse A, frozen then fine-tuned",
    ]
    assert all(0.0 <= r["accuracy_mean"] <= 1.0 and r["seeds"] == 2 for r in rows)
    assert (tmp_path / "t" / "accuracy.png").stat().st_size > 1000
    assert "| scratch |" in (tmp_path / "t" / "table.md").read_text()
    saved = json.loads((tmp_path / "t" / "results.json").read_text())
    assert saved["seeds"] == [0, 1] and len(saved["per_seed"]) == 2


@pytest.mark.slow
def test_quick_pretraining_experiment_via_its_command(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    experiment_cli.add_arguments(parser, "pretraining")
    args = parser.parse_args(["--out", str(tmp_path / "p"), "--seeds", "1", "--quick"])
    assert experiment_cli.run_command("pretraining", args) == 0
    out = capsys.readouterr().out
    assert "| 5% (120) | scratch |" in out and "stacked pretrained" in out
    saved = json.loads((tmp_path / "p" / "results.json").read_text())
    assert len(saved["rows"]) == 6 and (tmp_path / "p" / "accuracy.png").is_file()
