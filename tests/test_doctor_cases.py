"""The doctor's cases: CI's fast subset detected and repaired; the whole list well-formed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from trainwell.cli import main
from trainwell.cli.doctor import load_cases
from trainwell.config import apply_patch, load_config
from trainwell.doctor.findings import KINDS

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
    for row in rows:
        assert row["primary_right"] and not row["consequences_missing"], row
        # the budget in epochs: a 1-epoch look, a 1-epoch yardstick, 1-epoch trials and the
        # winner's continuation within 1.35 runs, 1.5 while no trial has gained (wall time is
        # in time_ratio, measured, not asserted: the machine is noisy)
        assert row["epochs"] <= 1.5 * row["full_epochs"], row
        assert row["judged_at_epochs"] == max(1, round(0.1 * row["full_epochs"])), row
    # Measured (2026-12-02): 6 of the 8 fast broken cases repaired within 2 points of the
    # yardstick at the 1-epoch budget and within 2 of their reference at 10 epochs; the other
    # two (relu_sgd_lr10: SGD at lr 0.1 at 0.66 vs 0.73 after 1 epoch; softmax_one_unit
    # 2.1 points short) end at their reference but are "improved".
    repaired = sum(r["within_reference"] for r in broken)
    assert repaired >= 6
    assert code == (0 if repaired >= 0.9 * len(broken) else 1)


# The kinds the doctor's rule table is growing (issue 9, "What to build" 10): a case may
# expect one before the rule lands; the --cases run then counts it as missed.
PENDING_KINDS: tuple[str, ...] = ()


def _dotted(patch: dict, prefix: str = "") -> dict:
    """``{model: {kwargs: {act: "relu"}}}`` -> ``{"model.kwargs.act": "relu"}``.

    A section's field is set whole (``train.early_stopping = {patience = 3}``), but keys of
    the free-form tables (kwargs, options, params) one by one. TOML has no null: ``"none"``
    in a healthy_patch means the field's unset default.
    """
    out = {}
    for key, value in patch.items():
        if isinstance(value, dict) and (not prefix or key in ("kwargs", "options", "params")):
            out.update(_dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = None if value == "none" else value
    return out


def test_the_suite_holds_40_broken_and_12_healthy_cases():
    cases = load_cases(CASES)
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names))
    broken = [c for c in cases if c["expected"] != "healthy"]
    assert len(broken) >= 40
    assert len(cases) - len(broken) >= 12


@pytest.mark.filterwarnings("ignore:init.*symmetry problem:UserWarning")
def test_every_case_loads_on_one_thread_and_its_healthy_patch_applies():
    for case in load_cases(CASES):
        config = load_config(CASES / case["config"])
        assert config.name == case["name"] and config.seed == 0, case["name"]
        assert config.train.threads == 1, case["name"]  # the suite shares small machines
        assert case["expected"] in (*KINDS, *PENDING_KINDS, "healthy"), case["name"]
        assert isinstance(case["reference"], float), case["name"]
        if case["expected"] == "healthy":
            assert "healthy_patch" not in case, case["name"]
            continue
        patched = apply_patch(config, _dotted(case["healthy_patch"]))
        assert patched != config, case["name"]


def _case_models():
    spec = importlib.util.spec_from_file_location("case_models", CASES / "case_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("act", ["sigmoid", "relu", "tanh"])
def test_the_case_models_are_one_net_however_the_activations_are_written(act):
    # The "three ways" cases compare the doctor on one net: the styles must agree exactly
    # in weights and nearly in outputs (the custom modules write the formulas out).
    nets = _case_models()
    x = torch.randn(16, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    outs = []
    for style in ("module", "functional", "method", "custom"):
        torch.manual_seed(0)
        net = nets.Net(depth=3, act=act, style=style, init="normal", bias=-0.1, head="softmax")
        outs.append(net.double()(x))
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], rtol=1e-6, atol=1e-9)


def test_timing_rounds_report_the_median_ratio_and_keep_the_first_calls_files(capsys, tmp_path):
    # --timing-rounds 3 on a one-case folder: the doctor call is timed three times, each
    # between runs of its own; time_ratio is the median of the three ratios, and the output
    # folder holds the first call's files only.
    import shutil
    import statistics

    cases = tmp_path / "cases"
    cases.mkdir()
    shutil.copy(CASES / "healthy_moons.toml", cases)
    (cases / "cases.toml").write_text(
        '[[case]]\nname = "healthy_moons"\nconfig = "healthy_moons.toml"\n'
        'expected = "healthy"\nreference = 0.958\n', encoding="utf-8")
    out = tmp_path / "out"
    code = main(["doctor", "--cases", str(cases), "--json", "--timing-rounds", "3",
                 "--out", str(out)])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()
            if line.startswith('{"case"')]
    assert code == 0 and len(rows) == 1
    row = rows[0]
    assert len(row["time_ratios"]) == 3 and all(r > 0 for r in row["time_ratios"])
    assert row["time_ratio"] == pytest.approx(statistics.median(row["time_ratios"]), abs=0.011)
    assert sorted(p.name for p in out.iterdir()) == ["healthy_moons"]
    assert not any(p.name.startswith("round") for p in (out / "healthy_moons").iterdir())


def test_timing_rounds_below_one_is_refused(capsys):
    code = main(["doctor", "--cases", str(CASES), "--timing-rounds", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["error: --timing-rounds: must be >= 1, got 0"]
