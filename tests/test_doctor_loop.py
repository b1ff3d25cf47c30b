"""Repairs, the diagnose/repair loop, the doctor command and the cases list."""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path

import pytest
import torch
from torch import nn

from trainwell.cli.doctor import add_arguments, load_cases, report_command, run
from trainwell.cli.repair_loop import Trial, _pair, diagnose, repair
from trainwell.config import apply_patch, load_config, validate
from trainwell.doctor import KINDS, REPAIRS
from trainwell.errors import UserError

CASES = Path(__file__).resolve().parents[1] / "cases"


MOONS = {"source": "synthetic", "num_samples": 400, "options": {"kind": "moons", "noise": 0.2}}


def _config(**model) -> object:
    return validate(
        {
            "name": "t",
            "seed": 0,
            "device": "cpu",
            "data": MOONS,
            "model": {"depth": 2, "width": 16, **model},
            "optim": {"name": "adam", "lr": 1e-2},
            "schedule": {"name": "constant"},
            "train": {"epochs": 3, "batch_size": 32, "checkpoint_every": 100, "threads": 1},
        }
    )


def test_every_repair_patch_validates_where_it_applies():
    broken = validate(
        {
            "model": {"activation": "sigmoid", "init": "normal", "output_activation": "relu"},
            "optim": {"name": "sgd", "lr": 0.1},
            "regularization": {"l1": 0.01},  # for reduce_regularization
            "data": {"input_scale": 100.0},
            "schedule": {"name": "constant"},
        }
    )
    for name, rep in REPAIRS.items():
        patch = rep.patch(broken)
        if name == "early_stopping" and not hasattr(broken.train, "early_stopping"):
            assert patch is None  # a config without train.early_stopping cannot express it
            continue
        assert patch, name
        apply_patch(broken, patch)  # raises if the patch names a field that does not exist
    assert REPAIRS["lr_down"].patch(broken) == {"optim.lr": pytest.approx(0.01)}
    assert REPAIRS["lr_up"].patch(broken) == {"optim.lr": pytest.approx(10.0)}
    tiny = apply_patch(broken, {"optim.lr": 1e-10})
    assert REPAIRS["lr_up"].patch(tiny) == {"optim.lr": 0.05}  # the SGD family's usual LR


def test_python_actions_change_live_objects():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2), nn.ReLU()
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    assert REPAIRS["lr_down"].apply(model, opt) == {}
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    assert REPAIRS["fix_output_head"].apply(model, opt) == {"loss": "auto"}
    assert isinstance(model[5], nn.Identity)
    REPAIRS["swap_activation"].apply(model, opt)
    assert isinstance(model[1], nn.LeakyReLU) and isinstance(model[3], nn.LeakyReLU)
    REPAIRS["add_batch_norm"].apply(model, opt)
    assert isinstance(model[0][1], nn.BatchNorm1d) and len(opt.param_groups) == 2
    assert model(torch.randn(5, 4)).shape == (5, 2)
    assert "clip" in REPAIRS["clip_gradients"].apply(model, opt)


def test_repair_one_unit_softmax_is_judged_at_the_short_budget(tmp_path):
    # 10 epochs: a 1-epoch short look, a 1-epoch yardstick, room for the trials and the
    # winner's 9-epoch continuation within 1.35 runs
    config = _config(output_activation="softmax", out_features=1)
    config = apply_patch(config, {"train.loss": "bce", "train.epochs": 10})
    result = repair(config, out_dir=tmp_path)
    assert result.findings[0].kind == "bad_output_head"
    assert "dying_relu" not in [f.kind for f in result.findings]
    assert result.chosen == "fix_output_head"
    trial = result.trials[0]
    # at 1 epoch: the broken run 0.625 val accuracy, the repaired 0.875, the recipe 0.844
    assert result.judged_at_epochs == 1 == result.yardstick["epochs"] == trial.epochs
    assert trial.val_accuracy >= result.before["val_accuracy"] + 0.2
    assert trial.val_accuracy >= result.yardstick["val_accuracy"] - 0.02
    # …and the repaired run holds it to 10 epochs (0.9375): repaired
    assert result.after["epochs"] == 10 and result.after["val_accuracy"] > 0.9
    assert result.status == "repaired" and result.exit_code == 0
    assert result.epochs == 12 <= 1.35 * 10  # 1 + 1 (yardstick) + 1 (trial) + 9
    repaired = load_config(tmp_path / "repaired.toml")
    assert repaired.model.output_activation is None and repaired.train.loss == "auto"
    doc = json.loads((tmp_path / "doctor.json").read_text())
    assert doc["chosen"] == "fix_output_head" and doc["kinds"][0] == "bad_output_head"
    assert (tmp_path / "report.html").is_file()


def test_time_budget_stops_the_verification_after_the_first_half(tmp_path, monkeypatch, capsys):
    # A budget already spent (0 runs): the kept repair is still verified over the run's
    # first half (5 of 10 epochs), no further, and every output says so.
    from trainwell.cli import repair_loop
    from trainwell.cli.doctor import _print_before_after

    monkeypatch.setattr(repair_loop, "PLAN_TIME_RUNS", 0.0)
    config = _config(output_activation="softmax", out_features=1)
    config = apply_patch(config, {"train.loss": "bce", "train.epochs": 10})
    result = repair(config, out_dir=tmp_path)
    assert result.chosen == "fix_output_head"
    assert result.after["epochs"] == 5 == result.verified_epochs
    assert result.epochs == 1 + 1 + 1 + 4  # short look, yardstick, trial, 4 more epochs
    assert result.run_seconds_estimate > 0
    doc = json.loads((tmp_path / "doctor.json").read_text())
    assert doc["verified_epochs"] == 5 and doc["full_epochs"] == 10 and doc["budget_stopped"]
    line = "The repaired run was verified to epoch 5 of 10"
    assert line in (tmp_path / "report.html").read_text()
    _print_before_after(result, tmp_path)
    printed = capsys.readouterr().out
    assert line in printed
    assert f"`trainwell train --resume {tmp_path / 'final'}` trains epochs 6–10" in printed


def test_time_limit_stops_the_verification_even_in_the_first_half(tmp_path, monkeypatch):
    # A hard limit already spent (0 runs): no epoch past the kept trial's one is started,
    # not even to reach the run's first half; the verdict is taken where it stopped, the
    # outputs say so, and final/ still resumes from there.
    from trainwell.cli import repair_loop

    monkeypatch.setattr(repair_loop, "PLAN_TIME_RUNS", 0.0)
    monkeypatch.setattr(repair_loop, "LIMIT_TIME_RUNS", 0.0)
    config = _config(output_activation="softmax", out_features=1)
    config = apply_patch(config, {"train.loss": "bce", "train.epochs": 10})
    result = repair(config, out_dir=tmp_path)
    assert result.chosen == "fix_output_head"
    assert result.after["epochs"] == 1 == result.verified_epochs and result.budget_stopped
    assert result.after["test_accuracy"] is not None  # the verdict's numbers, test included
    assert result.epochs == 1 + 1 + 1
    doc = json.loads((tmp_path / "doctor.json").read_text())
    assert doc["verified_epochs"] == 1 and doc["resumable"] is True
    names = sorted(p.name for p in (tmp_path / "final" / "checkpoints").iterdir())
    assert names == ["epoch-0001.json", "epoch-0001.safetensors"]


def test_doctor_final_folder_resumes_into_the_repaired_run(tmp_path, monkeypatch):
    # Verified to epoch 5 of 10 by the time budget, final/ is a run folder: resuming it
    # trains epochs 6-10 and ends with the weights of `trainwell train repaired.toml`, bit
    # for bit (the doctor's epochs are not thrown away).
    from trainwell.cli import repair_loop
    from trainwell.cli.rundir import resume_config
    from trainwell.cli.runner import run as train_run

    monkeypatch.setattr(repair_loop, "PLAN_TIME_RUNS", 0.0)
    config = _config(output_activation="softmax", out_features=1)
    config = apply_patch(config, {"train.loss": "bce", "train.epochs": 10})
    result = repair(config, out_dir=tmp_path / "doc")
    assert result.verified_epochs == 5 and result.resumable
    assert json.loads((tmp_path / "doc" / "doctor.json").read_text())["resumable"] is True
    final = tmp_path / "doc" / "final"
    resumed = train_run(resume_config(final), final, progress=False, resume=True)
    fresh = train_run(load_config(tmp_path / "doc" / "repaired.toml"), tmp_path / "fresh",
                      progress=False)
    assert len(resumed.history) == len(fresh.history) == 10
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in fresh.history]
    assert resumed.run is not None and fresh.run is not None
    a, b = resumed.run.model.state_dict(), fresh.run.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # A second call into the same folder replaces that final/ (its epoch-10 checkpoint is
    # another run's): the new one holds only its own epoch-5 checkpoint.
    again = repair(apply_patch(config, {"seed": 1}), out_dir=tmp_path / "doc")
    assert again.resumable and again.verified_epochs == 5
    assert sorted(p.name for p in (final / "checkpoints").iterdir()) == [
        "epoch-0005.json", "epoch-0005.safetensors"]


def test_one_run_estimate_sums_what_a_run_does():
    # One short-look epoch of 100 steps: 3 warm-up steps of 200 ms, 97 of 15 ms (each timed
    # without its probing), 0.5 s in 5 probes (0.1 s each) and 0.215 s of validation, 2.77 s
    # from the epoch's start to its end. Ten epochs of trainwell train: the short look's steps,
    # then 900 at the 15 ms mean after the warm-up, 10 validations, its own probes at steps
    # 0, 200, …, 800 (5 × 0.1 s); once: loading (0.1 s), building (0.25 s), fit's own time
    # outside epochs (0.02 s), the final evaluation of 3,200 + 400 + 200 samples at the test
    # evaluation's 0.05 s per 200, and the folder's writes (0.3 s).
    from types import SimpleNamespace

    from trainwell.cli.repair_loop import (
        _Session,
        once_seconds,
        one_run_seconds_estimate,
        per_epoch_seconds,
    )

    steps = [0.2] * 3 + [0.015] * 97
    trainer = SimpleNamespace(history=[{"epoch_time_s": 2.4}], step=100)
    cb = SimpleNamespace(probe_seconds=0.5, probe_steps=5, step_seconds=steps,
                         epoch_step_seconds=[sum(steps)], epoch_seconds=[sum(steps) + 0.715])
    data = SimpleNamespace(train=range(3200), val=range(400), test=range(200))
    session = _Session(None, SimpleNamespace(trainer=trainer, data=data), cb)
    assert one_run_seconds_estimate(session, 10) == pytest.approx(
        sum(steps) + 900 * 0.015 + 10 * 0.215 + 5 * 0.1)
    # the folder's writes: a checkpoint after every epoch (checkpoint_every = 1), health.jsonl
    # after every epoch and once at the start, report.html once
    session.config = SimpleNamespace(train=SimpleNamespace(checkpoint_every=1))
    session.checkpoint_seconds, session.health_seconds, session.report_seconds = 0.02, 0.001, 0.1
    session.load_seconds, session.build_seconds = 0.1, 0.25
    session.eval_seconds, session.eval_samples = 0.05, 200
    session.seconds = sum(cb.epoch_seconds) + 0.02 + 0.05
    once = 0.1 + 0.25 + 0.02 + 0.05 / 200 * 3800 + 0.1
    assert once_seconds(session) == pytest.approx(once)
    assert per_epoch_seconds(session, 10) == pytest.approx((5 * 0.1 + 10 * 0.02 + 11 * 0.001) / 10)
    assert one_run_seconds_estimate(session, 10) == pytest.approx(
        once + 10 * 0.02 + 11 * 0.001 + sum(steps) + 900 * 0.015 + 10 * 0.215 + 5 * 0.1)
    # checkpoint_every = 4: epochs 4, 8 and the last
    session.config.train.checkpoint_every = 4
    assert per_epoch_seconds(session, 10) == pytest.approx((5 * 0.1 + 3 * 0.02 + 11 * 0.001) / 10)
    session.config.train.checkpoint_every = 1
    # no step timed: the epochs (the trainer's epoch_time_s) less the probes' time, scaled
    cb.step_seconds, cb.epoch_step_seconds, cb.epoch_seconds = [], [], []
    session.seconds = 2.4 + 0.02 + 0.05
    assert one_run_seconds_estimate(session, 10) == pytest.approx(
        0.1 + 0.25 + 0.02 + 0.95 + 0.1 + 10 * 0.02 + 11 * 0.001 + 10 * 1.9 + 5 * 0.1)


def test_budget_rebases_on_a_same_cost_continuation():
    # A short look slowed by the machine estimated 2.0 s for one run; the kept repair (a lower
    # learning rate) computes the same steps, and its continuation's epochs take 0.1 s: one
    # run is re-estimated as once (0.3 s) + 10 × (0.1 + 0.02) = 1.5 s and the deadline moves
    # in. A repair that changes the steps (batch norm) keeps the first estimate.
    from trainwell.cli.repair_loop import _Budget, same_cost

    config = _config()
    assert same_cost(config, {"optim.lr": 0.01, "schedule.name": "constant"})
    assert same_cost(config, {"model.activation": "elu", "model.init": "auto"})
    assert not same_cost(config, {"model.batch_norm": True})
    assert not same_cost(config, {"model.swap_activation": "relu", "model.activation": "relu"})
    assert config.optim.name == "adam"
    assert not same_cost(config, {"optim.name": "sgd", "optim.lr": 0.1})
    budget = _Budget(100.0, 2.0, 10, once=0.3, per_epoch=0.02, same_cost=True)
    assert budget.deadline == pytest.approx(100.0 + repair_loop_plan() * 2.0)
    budget.rebase(0.1)
    budget.rebase(0.1)
    assert budget.run_seconds == pytest.approx(1.5)
    budget.rebase(0.5)  # a slow epoch later: the estimate never moves out again
    assert budget.run_seconds == pytest.approx(min(1.5, 0.3 + 10 * (0.7 / 3 + 0.02)))
    other = _Budget(100.0, 2.0, 10, once=0.3, per_epoch=0.02, same_cost=False)
    other.rebase(0.1)
    assert other.run_seconds == 2.0
    # …but a same-cost trial's epoch (a lower learning rate tried first) is a sample for any
    # kept repair
    other.sample(0.1)
    assert other.run_seconds == pytest.approx(1.5)


def repair_loop_plan() -> float:
    from trainwell.cli import repair_loop

    return repair_loop.PLAN_TIME_RUNS


def test_healthy_config_has_no_finding():
    result = diagnose(_config())
    assert result.findings == [] and result.status == "healthy" and result.exit_code == 0
    assert result.before["val_accuracy"] > 0.8


def _args(**kw) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    ns = p.parse_args([])
    for k, v in kw.items():
        setattr(ns, k, v)
    return ns


def test_command_json_and_exit_codes(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[data]\nsource = "synthetic"\nnum_samples = 300\noptions = {kind = "moons"}\n'
        "[model]\ndepth = 2\nwidth = 16\n[optim]\nlr = 1e-10\n"
        "[train]\nepochs = 3\nbatch_size = 32\nthreads = 1\n"
    )
    code = run(_args(config=str(cfg), json=True, diagnose_only=True, out=str(tmp_path / "o")))
    out = json.loads(capsys.readouterr().out)
    assert out["kinds"] == ["lr_too_low"] and code == 1
    with pytest.raises(UserError, match="CONFIG is missing"):
        run(_args())
    with pytest.raises(UserError, match="no such file"):
        run(_args(config=str(tmp_path / "missing.toml")))
    with pytest.raises(UserError, match="no health record"):
        report_command(argparse.Namespace(run_dir=str(tmp_path)))


def test_cases_cover_every_kind_and_validate():
    cases = load_cases(CASES)
    kinds = [c["expected"] for c in cases]
    assert sum(k != "healthy" for k in kinds) >= 20 and kinds.count("healthy") >= 6
    # every kind is a case's primary finding or a consequence the doctor must find with it
    # (non_finite and dying_relu come out of a too-high rate or an exploding init)
    assert set(KINDS) <= set(kinds) | {k for c in cases for k in c.get("consequences", [])}
    assert sum(1 for c in cases if "cnn" in c["name"] and c["expected"] != "healthy") >= 3
    assert any(c.get("fast") for c in cases)
    for c in cases:
        config = load_config(CASES / c["config"])  # every config is valid
        if "regression" in (c.get("task"), config.data.options.get("task")):
            assert 0.0 < c["reference"] < 10.0, c["name"]  # a healthy test MSE
        else:
            assert 0.5 <= c["reference"] <= 1.0, c["name"]  # a healthy test accuracy


def test_load_cases_errors(tmp_path):
    with pytest.raises(UserError, match="no cases.toml"):
        load_cases(tmp_path)
    (tmp_path / "cases.toml").write_text('[[case]]\nname = "a"\nconfig = "a.toml"\n')
    with pytest.raises(UserError, match="case 1 has no 'expected'"):
        load_cases(tmp_path)
    assert tomllib.loads((CASES / "cases.toml").read_text())["case"]


def test_a_healthy_looking_run_is_continued_and_looked_at_whole():
    config = apply_patch(_config(), {"train.epochs": 10})
    result = diagnose(config)
    assert result.findings == [] and result.status == "healthy"
    # the 1-epoch short look found nothing, so the same run went on to 10 epochs and the
    # rules saw all 10; the yardstick trained its own 1-epoch run: 11 epochs in all
    assert result.before["epochs"] == 1 and result.full_look["epochs"] == 10
    assert result.epochs == 11 and result.full_epochs == 10
    assert result.full_look["val_accuracy"] >= result.before["val_accuracy"]
    # without the full look the call stops after the short one
    short = diagnose(config, full_look=False)
    assert short.full_look == {} and short.epochs == 2


def test_the_pair_joins_the_best_single_with_the_runner_up_on_other_fields():
    config = _config(output_activation="relu")

    def t(name, patch, acc):
        return Trial(name, patch, acc, 1.0, [], 0.1, 1), {"val_accuracy": acc}

    trials = [
        t("lr_down", {"optim.lr": 1e-3}, 0.70),
        t("fix_output_head", {"model.output_activation": None}, 0.80),
        t("lr_up", {"optim.lr": 1e-1}, 0.75),  # same field as lr_down
    ]
    name, patch = _pair(config, trials)
    assert name == "fix_output_head+lr_up"
    assert patch == {"model.output_activation": None, "optim.lr": 1e-1}
    assert _pair(config, trials[:1]) is None  # one single: no pair
    both_lr = [trials[0], trials[2]]
    assert _pair(config, both_lr) is None  # the same field twice: no pair


@pytest.mark.filterwarnings("ignore:init.*symmetry problem:UserWarning")
def test_same_cost_trials_feed_the_budget(monkeypatch):
    # Zero init: the kept re-initialization changes no step's cost, so its trial's epoch is a
    # sample of the broken run's epochs; one claiming 0 s re-estimates one run as once + E ×
    # per_epoch (stubbed 0.25 s and 0.01 s, E = 3).
    from trainwell.cli import repair_loop

    seen = []

    def trial_epochs(session):
        seen.append(dict(session.config.model))
        return [0.0]

    monkeypatch.setattr(repair_loop, "_trial_epochs", trial_epochs)
    monkeypatch.setattr(repair_loop, "once_seconds", lambda session: 0.25)
    monkeypatch.setattr(repair_loop, "per_epoch_seconds", lambda session, epochs: 0.01)
    result = repair(_config(init="zeros"))
    assert result.chosen == "reinit_by_activation" and len(seen) == 1
    assert result.run_seconds_budgeted == pytest.approx(0.25 + 3 * 0.01)
    assert result.run_seconds_estimate > result.run_seconds_budgeted
