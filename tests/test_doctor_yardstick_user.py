"""The yardstick on a user's model, a yardstick that cannot learn, and failing trials."""

from __future__ import annotations

from pathlib import Path

from trainwell.cli import repair_loop
from trainwell.cli.repair_loop import repair
from trainwell.cli.yardstick import judge, verdict, yardstick_config, yardstick_failed
from trainwell.config import load_config, validate

CASES = Path(__file__).resolve().parents[1] / "cases"


def _acc(v: float) -> dict:
    return {"val_accuracy": v, "val_loss": 1.0}


def test_the_yardstick_keeps_a_user_models_loss():
    # one sigmoid output under BCE: "auto" would be cross-entropy over one class
    config = load_config(CASES / "healthy_functional_sigmoid_bce.toml")
    y = yardstick_config(config)
    assert y is not None and y.train.loss == "bce" and y.model.target == config.model.target
    assert (y.optim.name, y.schedule.name) == ("adam", "one_cycle")


def test_a_user_model_under_bce_runs_to_a_verdict():
    config = load_config(CASES / "healthy_functional_sigmoid_bce.toml")
    result = repair_loop.diagnose(config, full_look=False)
    assert result.status == "healthy"
    assert result.yardstick["epochs"] == 1 and "failed" not in result.yardstick


def test_a_yardstick_near_chance_is_no_bar():
    # 0.25 on 10 classes: below 0.1 + 0.25 · 0.9 = 0.325
    why = yardstick_failed(_acc(0.25), 10)
    assert "near chance" in why and "0.250" in why and "0.325" in why
    assert yardstick_failed(_acc(0.33), 10) == ""
    assert yardstick_failed(_acc(0.70), 2) == "" and yardstick_failed(_acc(0.60), 2) != ""
    assert yardstick_failed({"val_loss": 0.1}, None) == ""  # regression: no chance level
    assert yardstick_failed({"failed": "RuntimeError: boom"}, 10) == "RuntimeError: boom"


def test_no_repaired_verdict_on_the_strength_of_a_failed_yardstick():
    weak = {**_acc(0.25), "failed": "near chance", "chance_accuracy": 0.1}
    # 0.28 is "within 2 points" of a recipe at 0.25, and 18 points above the broken run
    assert judge(_acc(0.10), _acc(0.28), _acc(0.25)) == "repaired"
    assert judge(_acc(0.10), _acc(0.28), weak) == "improved"
    assert verdict(_acc(0.10), _acc(0.28), _acc(0.28), weak) == "improved"
    assert verdict(_acc(0.10), _acc(0.105), _acc(0.095), weak) == "unresolved"
    # a run that learns like a healthy one is repaired on its own, at 0.82 or more
    # (relu_negative_bias: 0.944 beside a recipe at 0.086 after one epoch); bar 0.1 + 0.8 · 0.9
    assert verdict(_acc(0.08), _acc(0.60), _acc(0.944), weak) == "repaired"
    assert verdict(_acc(0.08), _acc(0.60), _acc(0.81), weak) == "improved"
    crashed = {"failed": "RuntimeError: boom"}  # no chance level known: improved at best
    assert verdict(_acc(0.08), _acc(0.60), _acc(0.944), crashed) == "improved"


def _moons(**over) -> object:
    raw = {
        "name": "t", "seed": 0, "device": "cpu",
        "data": {"source": "synthetic", "num_samples": 400,
                 "options": {"kind": "moons", "noise": 0.2}},
        "model": {"depth": 2, "width": 16, "output_activation": "softmax", "out_features": 1},
        "optim": {"name": "adam", "lr": 1e-2},
        "schedule": {"name": "constant"},
        "train": {"epochs": 10, "batch_size": 32, "checkpoint_every": 100, "threads": 1,
                  "loss": "bce"},
    }  # fmt: skip
    raw.update(over)
    return validate(raw)


def test_a_failing_trial_is_recorded_and_the_diagnosis_goes_on(monkeypatch):
    built = repair_loop._Builder.session

    def session(self, config, probe_epochs, probes=repair_loop.DIAG_PROBES):
        if config.model.output_activation is None and config.train.epochs == 10:
            raise RuntimeError("CUDA error: boom\nsecond line")  # the fix_output_head trial
        return built(self, config, probe_epochs, probes)

    monkeypatch.setattr(repair_loop._Builder, "session", session)
    result = repair(_moons(), max_trials=2)
    failed = result.trials[0]
    assert failed.repair == "fix_output_head" and failed.aborted
    assert failed.error == "RuntimeError: CUDA error: boom" and failed.val_accuracy is None
    assert result.chosen != "fix_output_head"
    assert result.status in ("unresolved", "improved", "repaired")


def test_the_yardstick_zeroes_the_biases():
    config = load_config(CASES / "relu_negative_bias.toml")
    y = yardstick_config(config)
    assert config.model.bias_init != "zeros"
    assert y.model.bias_init == "zeros" and y.model.init == "auto" and y.model.head_init is None


def test_a_cases_row_says_why_the_yardstick_is_no_bar_and_what_code_to_change():
    from trainwell.cli.doctor import case_outcome
    from trainwell.cli.repair_loop import DoctorResult, Trial
    from trainwell.doctor.findings import Finding

    head = Finding("bad_output_head", ("out",), {}, "", ("fix_output_head",), 1.0)
    change = {"finding": "bad_output_head", "repair": "fix_output_head",
              "change": "in forward, return the logits"}
    result = DoctorResult([head], Trial(None, {}, 0.3, 2.0, [], 1.0, 1),
                          before={"test_accuracy": 0.3}, status="unresolved",
                          yardstick={"test_accuracy": 0.1, "failed": "near chance"},
                          epochs=2, full_epochs=10, code_changes=[change])
    row = case_outcome({"name": "c", "expected": "bad_output_head", "reference": 0.96}, result)
    assert row["yardstick_failed"] == "near chance"
    assert row["auto_repairable"] is False  # the only fix is the stated code change
    assert row["status_detail"] == (
        "unresolved — needs a code change: in forward, return the logits")
    assert result.to_dict()["code_changes"] == [change]
