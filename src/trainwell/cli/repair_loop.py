"""The diagnose/repair loop over a config, within 1.5 runs of the config's own budget.

The budget (issue 9, "time ≤ 1.5× one run"): ``E`` is the config's ``train.epochs``; a doctor
call trains at most ``BUDGET_RUNS · E`` epochs in all, the yardstick included, and plans
``PLAN_RUNS · E`` so that building, evaluating and probing fit in the rest. Epochs are not
seconds: a kept repair can make each epoch dearer (batch norm costs ~1.6-1.9× per step on a
deep narrow MLP in plain torch), so its continuation also stops at a wall-time budget of
``PLAN_TIME_RUNS`` runs (``LIMIT_TIME_RUNS`` at most), one run estimated from the short look
(:func:`one_run_seconds_estimate`); ``verified_epochs`` in the result says how far it got
(measured per case by ``trainwell doctor --cases``).

1. **Short look.** The broken config trains ``d`` = :func:`diagnostic_epochs` epochs
   (``DIAG_SHARE`` of ``E``, at least 1) with dense probes; the *yardstick* (the same
   architecture with a known-good recipe, :mod:`.yardstick`) trains a complete ``d``-epoch
   run of its own (its 1cycle spans those ``d`` epochs). The rules see the yardstick's
   accuracy ("failing to learn" is judged against what the recipe reaches in ``d`` epochs).
2. **Full look.** Without a finding, the diagnostic run itself continues to ``E`` epochs
   (probed more sparsely) and the rules look at the whole run's trend: overfitting that
   appears late is seen, and only what early stopping at ``E`` would see is reported. Cost:
   ``E + d`` epochs. A finding that appears only there is reported with its repairs, which
   are not tried: the budget is spent (status *unresolved*) — except early stopping for
   overfitting, judged on a replay of the run itself (:mod:`.late_repair`, no epoch more).
3. **Trials.** With a finding, the ranked repairs that apply become trial patches; each
   trains ``d`` epochs from the same seed (built for ``E``, so a kept trial continues as
   the very run ``trainwell train repaired.toml`` gives). A trial that goes non-finite stops
   at the end of that epoch. Trials run while ``PLAN_RUNS · E`` leaves room for the winner's
   continuation (while no trial has gained, up to ``BUDGET_RUNS · E``, so that a late winner
   still gets it); a trial as good as the yardstick ends the search. Then, if budget remains
   and no single repair matched the yardstick, the best pair (best single + the runner-up,
   patches on different fields) is tried.
4. **The kept repair** is the best trial that beats the diagnostic run by ``MIN_GAIN``
   (same budget, same seed); it continues toward ``E`` epochs (``after``), starting no epoch
   that would end past ``PLAN_TIME_RUNS`` estimated runs since the call began once the run's
   first half is verified, and none at all that would end past ``LIMIT_TIME_RUNS``, so a
   repair whose epochs cost more than the broken run's is verified over fewer epochs (said
   in the terminal, the JSON and the report; ``final/`` resumes it). The yardstick is not
   continued.

A yardstick or trial that fails to build or train is recorded with a one-line reason
(``yardstick["failed"]``, ``Trial.error``) and the diagnosis goes on; a yardstick that stays
near chance is marked failed too (:func:`.yardstick.yardstick_failed`). For a user's model
the repairs that would edit its ``forward`` are reported as code changes, not tried
(:mod:`.candidates`).

**"Repaired"** (:func:`.yardstick.verdict`): at the same budget of ``d`` epochs the repaired run is
within 2 points of the recipe trained for ``d`` epochs (regression: validation loss within
10%), *and* the repaired run where its continuation stopped (``E`` epochs unless the time
budget stopped it earlier) holds that level (it does not end below the recipe's ``d``-epoch
score by more than the same tolerance). ``judged_at_epochs`` in the
result and the JSON says ``d``. Otherwise *improved* (≥ ``MIN_GAIN`` better than the
diagnostic run at the same budget, and still so at ``E``) or *unresolved*.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import Config, apply_patch, to_toml
from ..data.dataset import Dataset
from ..doctor.callback import DEFAULT_EVERY, DoctorCallback
from ..doctor.causes import primary_and_consequences
from ..doctor.findings import Finding, Health
from ..doctor.report import write_report
from ..doctor.signals import signals
from ..doctor.wording import lookup
from ..errors import UserError
from ..train.callbacks import Callback
from ..train.checkpoint import atomic_write_text, latest_checkpoint, save_checkpoint
from ..train.state import trainer_state
from .candidates import candidate_patches, code_changes, hidden_activation
from .late_repair import attach_replay, repair_late_overfitting
from .rundir import claim_run_dir, record_created, remove_created
from .runner import build_data, build_run, config_callbacks
from .yardstick import (
    MIN_GAIN,
    WITHIN_ACCURACY,
    judge,
    verdict,
    yardstick_config,
    yardstick_failed,
)

__all__ = [
    "BUDGET_RUNS",
    "MIN_GAIN",
    "DoctorResult",
    "Trial",
    "candidate_patches",
    "diagnose",
    "diagnostic_epochs",
    "repair",
]

BUDGET_RUNS = 1.5  # a doctor call's work ≤ this many runs of the config (issue 9, item 8)
PLAN_RUNS = 1.35  # epochs planned; the other 0.15 run covers building, evaluating, probing
# Wall time the call plans (one run estimated from the short look): the kept repair's
# continuation starts no epoch that would end past it; the rest of BUDGET_RUNS covers the final
# evaluation and the report.
PLAN_TIME_RUNS = 1.25
VERIFY_SHARE_DIV = 2  # …but the kept repair is always verified over the run's first half…
LIMIT_TIME_RUNS = 1.35  # …unless an epoch of it would end past this many estimated runs
DIAG_SHARE = 0.1  # share of the full budget the diagnostic, the yardstick and each trial train
DIAG_MIN_EPOCHS = 1  # …but at least one epoch
# A probe step runs the 256-sample probe batch with hooks and activation histograms: ~11 ms
# for the 8×64 digits MLP, whose whole 10-epoch run takes ~0.3 s (cProfile, relu_sgd_lr1: 22
# probes were 0.25 s of a 1.7 s doctor call). So only the short look is probed densely; trials
# and the yardstick are probed at step 0 only (their metrics decide, their findings are
# shown), and a continued run is probed like ``trainwell train`` (every DEFAULT_EVERY steps).
# The rules read medians and give the same primary finding probed every 5, 50 or 200 steps
# (tests/test_doctor_stability.py).
DIAG_PROBES = 5  # probe steps wanted in the short look (sets its probe period)
MAX_TRIALS = 4  # repair trials at most (singles and the pair), budget permitting


@dataclass
class Trial:
    """One short training run: the diagnostic (``repair=None``) or a repair's trial.

    ``epochs`` is what it trained (fewer than the short budget when it was stopped
    non-finite); ``aborted`` says it was. ``error`` is the one-line reason a trial failed
    to build or train (it is then aborted, and the diagnosis goes on).
    """

    repair: str | None
    patch: dict[str, Any]
    val_accuracy: float | None
    val_loss: float | None
    findings: list[str]
    seconds: float
    epochs: int = 0
    aborted: bool = False
    error: str | None = None


@dataclass
class DoctorResult:
    """What :func:`repair` (or :func:`diagnose`) found and did.

    Attributes:
        findings: findings of the diagnostic run (over the whole run after a full look).
        diagnostic: the diagnostic :class:`Trial` (its short budget).
        trials: the repair trials, in the order run (a pair's ``repair`` is ``"a+b"``).
        chosen: name of the kept repair (``"a+b"`` for a pair), or None.
        patch: its config patch ({} when none).
        repaired_config: the config to rerun (the original when nothing was kept).
        before: ``{"val_accuracy", "test_accuracy", ..., "epochs"}`` of the diagnostic run
            at the short budget (the budget the verdict compares at).
        after: the same of the kept repair continued toward the full budget, as far as the
            time budget allowed (its ``epochs``; empty without a kept repair).
        full_look: the diagnostic run's metrics at the full budget when it continued there
            (no finding at the short budget), else empty.
        yardstick: the same metrics of the known-good recipe on the same architecture
            trained for ``judged_at_epochs`` epochs (:mod:`.yardstick`); empty where the
            architecture does not allow the recipe.
        judged_at_epochs: the budget at which trial and yardstick were compared.
        status: ``"healthy"``, ``"repaired"``, ``"improved"`` or ``"unresolved"`` (see the
            module docstring for the rule).
        epochs: every epoch the call trained (diagnostic, yardstick, trials, continuation).
        full_epochs: the config's own budget (``train.epochs``).
        seconds: total wall time.
    """

    findings: list[Finding]
    diagnostic: Trial
    trials: list[Trial] = field(default_factory=list)
    chosen: str | None = None
    patch: dict[str, Any] = field(default_factory=dict)
    repaired_config: Any = None
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    full_look: dict[str, Any] = field(default_factory=dict)
    yardstick: dict[str, Any] = field(default_factory=dict)
    judged_at_epochs: int = 0
    status: str = "healthy"
    epochs: int = 0
    full_epochs: int = 0
    seconds: float = 0.0
    code_changes: list[dict[str, str]] = field(default_factory=list)
    run_seconds_estimate: float = 0.0  # one run of the config, estimated from the short look
    run_seconds_budgeted: float = 0.0  # …as the time budget last had it (re-estimated: _Budget)
    budget_stopped: bool = False
    resumable: bool = False  # final/ is a run folder `trainwell train --resume` finishes

    @property
    def status_detail(self) -> str:
        """The status in words: "unresolved — needs a code change: …" where the repairs
        a user's model needs are edits to its code (see :func:`code_changes`)."""
        if self.status in ("unresolved", "improved") and self.code_changes:
            return f"{self.status} — needs a code change: {self.code_changes[0]['change']}"
        return self.status

    @property
    def verified_epochs(self) -> int | None:
        """How far the kept repair was continued (``after``'s epochs; below ``full_epochs``
        when the time budget stopped it), or None without a kept repair."""
        epochs = self.after.get("epochs")
        return int(epochs) if isinstance(epochs, int) else None

    @property
    def exit_code(self) -> int:
        """0 healthy or repaired, 1 a problem remains (also when only improved)."""
        return 0 if self.status in ("healthy", "repaired") else 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the CLI's ``--json`` output)."""
        return {
            "status": self.status,
            "status_detail": self.status_detail,
            "code_changes": self.code_changes,
            "findings": [f.to_dict() for f in self.findings],
            "kinds": [f.kind for f in self.findings],
            **primary_and_consequences(self.findings),  # primary first, then what it explains
            "chosen": self.chosen,
            "patch": self.patch,
            "judged_at_epochs": self.judged_at_epochs,
            "before": self.before,
            "after": self.after,
            "full_look": self.full_look,
            "yardstick": self.yardstick,
            "diagnostic": asdict(self.diagnostic),
            "trials": [asdict(t) for t in self.trials],
            "epochs": self.epochs,
            "full_epochs": self.full_epochs,
            "verified_epochs": self.verified_epochs,
            "budget_stopped": self.budget_stopped,
            "resumable": self.resumable,
            "run_seconds_estimate": round(self.run_seconds_estimate, 3),
            "run_seconds_budgeted": round(self.run_seconds_budgeted, 3),
            "seconds": round(self.seconds, 3),
        }


def diagnostic_epochs(config: Config) -> int:
    """Epochs of the diagnostic, yardstick and trial runs: ``max(1, round(0.1·E))`` ≤ ``E``.

    10% of the run keeps ``E + d·(2 + trials)`` within :data:`PLAN_RUNS` ``· E`` for a few
    trials; a single epoch of a 10-epoch run shows what the rules need at the start (non-finite
    values, dead or saturated units, gradient ratios, a bad head), and a run that looks
    healthy there is looked at again over its whole length.
    """
    e = config.train.epochs
    return min(e, max(DIAG_MIN_EPOCHS, round(DIAG_SHARE * e)))


@dataclass
class _Session:
    """A built run that can be trained to the short budget, then continued to the full one."""

    config: Any
    built: Any
    callback: DoctorCallback
    seconds: float = 0.0
    epochs: int = 0
    build_seconds: float = 0.0
    load_seconds: float = 0.0  # loading its data (once per data config; trainwell train: once)
    eval_seconds: float = 0.0  # evaluating the test split after the short look…
    eval_samples: int = 0  # …on this many samples
    # one checkpoint, one health.jsonl and one report.html written (_time_folder_writes)
    checkpoint_seconds: float = 0.0
    health_seconds: float = 0.0
    report_seconds: float = 0.0
    budget_stopped: bool = False  # the time budget ended its continuation early

    def train_to(self, epochs: int, *, test: bool = True) -> dict[str, Any]:
        """Train until ``epochs`` epochs are done (continuing); return the metrics (the test
        split's only with ``test``: a trial is judged on validation metrics alone)."""
        trainer = self.built.trainer
        t0 = time.perf_counter()
        # The trainer keeps the run's full length, so a schedule built for the full budget
        # (1cycle, cosine, …) stays valid and continuing later equals one uninterrupted run.
        history = self.built.fit(until=epochs)
        self.epochs = len(history)
        split = self.built.data.test if test else None
        t_eval = time.perf_counter()
        test_m = trainer.evaluate(split) if split is not None else {}
        if split is not None and not self.eval_samples:
            self.eval_seconds = time.perf_counter() - t_eval
            self.eval_samples = _samples(split) or 0
        self.seconds += time.perf_counter() - t0
        last = history[-1] if history else {}
        return {
            "val_accuracy": last.get("val_accuracy"),
            "val_loss": last.get("val_loss"),
            "test_accuracy": test_m.get("accuracy"),
            "test_loss": test_m.get("loss"),
            "epochs": len(history),
        }

    def trial_to(self, epochs: int) -> tuple[dict[str, Any], bool]:
        """Like :meth:`train_to`, epoch by epoch, stopping once the loss is non-finite.

        Returns:
            The validation metrics (no test split: trials are judged on validation) and
            whether the trial was stopped early (a diverged run does not come back within a
            short budget, and its epochs are better spent elsewhere).
        """
        metrics: dict[str, Any] | None = None
        for e in range(self.epochs + 1, epochs + 1):
            metrics = self.train_to(e, test=False)
            last = self.built.trainer.history[-1] if self.built.trainer.history else {}
            if e < epochs and not all(
                isinstance(last.get(k), int | float) and math.isfinite(last[k])
                for k in ("train_loss", "val_loss")
                if k in last
            ):
                return metrics, True
        return (metrics if metrics is not None else self.train_to(epochs, test=False)), False

    def continue_within(self, epochs: int, budget: _Budget, *, at_least: int) -> dict[str, Any]:
        """Continue to ``at_least`` epochs, then toward ``epochs`` starting no epoch that would
        end after the budget's deadline; no epoch at all, not even one of the first
        ``at_least``, that would end after its limit. Return the metrics where it stopped
        (their ``epochs`` says where).

        Each epoch's cost is the last one's (the first: the mean of those trained so far);
        each epoch trained is also a sample for :meth:`_Budget.rebase`.
        """
        trainer = self.built.trainer
        stop = _Deadline(budget, self.epoch_seconds(), after=min(at_least, epochs))
        if self.epochs < epochs and stop.would_pass(time.perf_counter(), self.epochs):
            self.budget_stopped = True
            return self.train_to(self.epochs)  # no room left: the metrics here, test too
        trainer.callbacks.append(stop)
        try:
            metrics = self.train_to(epochs)
        finally:
            trainer.callbacks.remove(stop)
            trainer.stop_training = False
        self.budget_stopped = stop.fired
        return metrics

    def epoch_seconds(self) -> float:
        """Mean wall time of the epochs trained so far (validation included)."""
        history = self.built.trainer.history
        return sum(float(h.get("epoch_time_s", 0.0)) for h in history) / max(1, len(history))

    def reprobe(self) -> None:
        """Probe the rest of the run as ``trainwell train`` does (every DEFAULT_EVERY steps)."""
        self.callback.every = max(self.callback.every, DEFAULT_EVERY)


@dataclass
class _Budget:
    """A doctor call's wall-time budget: ``PLAN_TIME_RUNS`` (deadline) and ``LIMIT_TIME_RUNS``
    (limit) estimated runs of the broken config from ``start`` (``time.perf_counter()``).

    ``run_seconds`` starts as :func:`one_run_seconds_estimate`, one epoch's sample. Where the
    kept repair leaves a step's cost as it was (``same_cost``: a learning rate, a schedule, an
    initialization, a built-in activation, input scaling, early stopping, the head's loss)
    its continuation's epochs are further samples of the broken run's epochs, taken later in
    the call, and so are the epochs of every same-cost trial (:func:`_trial_epochs`): one run
    is then re-estimated from them (``once`` + ``E`` × their mean + ``per_epoch``) and the
    lower estimate kept — a short look slowed by the machine no longer moves the deadline out.
    """

    start: float
    run_seconds: float
    epochs: int = 1
    once: float = 0.0  # the estimate's once-per-run part: loading, building, final evaluation
    per_epoch: float = 0.0  # per epoch, what the continuation's epochs leave out (probes, …)
    same_cost: bool = False
    samples: list[float] = field(default_factory=list)

    @property
    def deadline(self) -> float:
        return self.start + PLAN_TIME_RUNS * self.run_seconds

    @property
    def limit(self) -> float:
        return self.start + LIMIT_TIME_RUNS * self.run_seconds

    def sample(self, epoch_seconds: float) -> None:
        """One more epoch that cost what the broken run's epochs cost (a same-cost trial's or
        continuation's): re-estimate one run from all of them, keep the lower estimate."""
        self.samples.append(epoch_seconds)
        mean = sum(self.samples) / len(self.samples)
        self.run_seconds = min(self.run_seconds, self.once + self.epochs * (mean + self.per_epoch))

    def rebase(self, epoch_seconds: float) -> None:
        """One more continuation epoch of ``epoch_seconds``: a sample where it is same-cost."""
        if self.same_cost:
            self.sample(epoch_seconds)


class _Deadline(Callback):
    """Stop training after an epoch when the next one, taking as long, would end after the
    budget's deadline (once ``after`` epochs are done) or after its limit (at any epoch)."""

    def __init__(self, budget: _Budget, epoch_seconds: float, *, after: int = 0) -> None:
        self.budget, self.epoch_seconds = budget, epoch_seconds
        self.after = after  # epochs trained before the deadline counts (the limit always does)
        self.fired = False
        self._start: float | None = None

    def would_pass(self, now: float, done: int) -> bool:
        """Whether an epoch started at ``now`` after ``done`` epochs would end too late."""
        end = now + self.epoch_seconds
        return end > self.budget.limit or (done >= self.after and end > self.budget.deadline)

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, Any]) -> None:
        now = time.perf_counter()
        if self._start is not None:
            self.epoch_seconds = now - self._start
            self.budget.rebase(self.epoch_seconds)
        if (epoch + 1 < trainer.epochs and not trainer.stop_training
                and self.would_pass(now, epoch + 1)):
            trainer.stop_training = self.fired = True


def _trial_epochs(session: _Session) -> list[float]:
    """A trial's epochs as samples of its config's epoch cost: their wall time from start to
    ``on_epoch_end`` (validation included), less the probing (a trial probes at step 0)."""
    cb = session.callback
    n = len(cb.epoch_seconds)
    if not n:
        return []
    return [max(0.0, sum(cb.epoch_seconds) - cb.probe_seconds) / n] * n


# Config fields a repair may change without changing how long a training step takes (the
# kept repair's continuation then times the broken run's epochs too): values, not shapes or
# operations — and one built-in activation for another, one elementwise op for another (20 ×
# Linear(64) + activation, batch 32, SGD, 1 thread: sigmoid 1,190, ReLU 1,214, ELU 1,249,
# tanh 1,326, SELU 1,355 µs per step; on a user's model model.activation only sets the init's
# gain). Not a user's activation modules swapped (model.swap_activation): a hand-written
# activation can cost several ops (custom_sigmoid_normal_deep: an epoch 0.22 s, 0.10 s with
# ReLU modules swapped in). Batch norm, dropout, another optimizer are not either.
SAME_COST_FIELDS = ("optim.lr", "schedule.", "model.init", "model.bias_init",
                    "model.head_init", "model.reinit", "model.activation",
                    "data.standardize", "data.input_scale", "train.early_stopping",
                    "train.loss", "model.output_activation")


def same_cost(config: Config, patch: dict[str, Any]) -> bool:
    """Whether ``patch`` changes only :data:`SAME_COST_FIELDS` of ``config`` (a field set to
    the value it has is no change)."""
    current = config.model_dump(mode="json")
    changed = [k for k, v in patch.items() if lookup(current, k) != v]
    return all(k.startswith(SAME_COST_FIELDS) for k in changed)


def _samples(split: Any) -> int | None:
    """Samples in a data split (a DataLoader: its dataset's); None when unknown."""
    try:
        return len(getattr(split, "dataset", split))
    except TypeError:
        return None


STEP_WARMUP = 3  # the short look's first steps, slower (allocations), are left out of its mean


def _in_epochs(session: _Session) -> float:
    """Wall seconds the session's epochs took, each from its start to its ``on_epoch_end``
    (validation included; the trainer's own ``epoch_time_s`` leaves validation out, and is
    the fallback where the callback did not time every epoch)."""
    cb = session.callback
    done = max(1, len(session.built.trainer.history))
    return sum(cb.epoch_seconds) if len(cb.epoch_seconds) == done else session.epoch_seconds() * done


def one_run_seconds_estimate(session: _Session, full_epochs: int) -> float:
    """Wall seconds one ``trainwell train`` of the session's config takes, from its short look.

    The sum of what such a run does, each part timed in the short look:

    - loading the data and building the run, once;
    - its steps: the short look's, then the rest at the short look's mean step time after
      its first :data:`STEP_WARMUP` steps (each step timed without the probing done in it);
    - each epoch's time outside its steps and probes (validation), ``E`` times;
    - the probes ``trainwell train`` itself takes (step 0 and every :data:`DEFAULT_EVERY`
      steps), each as long as one of the short look's;
    - the final evaluation of the training, validation and test splits, at the seconds per
      sample the short look's test evaluation took;
    - what ``fit()`` costs outside its epochs;
    - the run folder's writes (:func:`_time_folder_writes`).

    (:func:`once_seconds` and :func:`per_epoch_seconds` give the parts that are not the
    short look's epochs.)
    """
    trainer, cb = session.built.trainer, session.callback
    done = max(1, len(trainer.history))
    timed = len(cb.epoch_seconds) == len(cb.epoch_step_seconds) == done
    in_epochs = _in_epochs(session)
    steps = trainer.step / done * full_epochs
    if cb.step_seconds and timed:
        later = cb.step_seconds[STEP_WARMUP:] or cb.step_seconds
        short_steps = sum(cb.epoch_step_seconds)
        rest = max(0.0, steps - trainer.step) * sum(later) / len(later)
        outside = max(0.0, in_epochs - short_steps - cb.probe_seconds) / done
        epochs_s = short_steps + rest + full_epochs * outside
    else:  # no step timed (a callback without a probe): the epochs less the probes' time
        epochs_s = full_epochs * max(0.0, in_epochs - cb.probe_seconds) / done
    return once_seconds(session) + epochs_s + per_epoch_seconds(session, full_epochs) * full_epochs


def once_seconds(session: _Session) -> float:
    """The part of :func:`one_run_seconds_estimate` a run spends once: loading its data,
    building it, ``fit()`` outside its epochs, the final evaluation of the training,
    validation and test splits (at the seconds per sample of the short look's test
    evaluation) and writing ``report.html``."""
    data = session.built.data
    final_eval = 0.0
    if session.eval_samples:
        sizes = [_samples(getattr(data, name, None)) for name in ("train", "val", "test")]
        final_eval = session.eval_seconds / session.eval_samples * sum(n or 0 for n in sizes)
    fit_rest = max(0.0, session.seconds - _in_epochs(session) - session.eval_seconds)
    return (session.load_seconds + session.build_seconds + fit_rest + final_eval
            + session.report_seconds)


def per_epoch_seconds(session: _Session, full_epochs: int) -> float:
    """The part of :func:`one_run_seconds_estimate` that is not the short look's epochs, per
    epoch of the run: ``trainwell train``'s own probes (step 0 and every
    :data:`DEFAULT_EVERY` steps, each as long as one of the short look's) and its folder's
    checkpoints (every ``train.checkpoint_every`` epochs and the last) and ``health.jsonl``
    (after every epoch)."""
    cb, trainer = session.callback, session.built.trainer
    steps = trainer.step / max(1, len(trainer.history)) * full_epochs
    per_probe = cb.probe_seconds / cb.probe_steps if cb.probe_steps else 0.0
    probes = -(-int(steps) // DEFAULT_EVERY) * per_probe  # steps 0, 200, …
    every = max(1, int(getattr(getattr(session.config, "train", None), "checkpoint_every", 1)))
    writes = (-(-full_epochs // every) * session.checkpoint_seconds
              + (full_epochs + 1) * session.health_seconds)
    return (probes + writes) / max(1, full_epochs)


def _time_folder_writes(session: _Session) -> None:
    """Time what writing its run folder adds to a run of the session's config: one
    checkpoint, one ``health.jsonl`` and one ``report.html``, written now into a temporary
    folder (the short look writes none); see :func:`per_epoch_seconds` for how often."""
    trainer, cb = session.built.trainer, session.callback
    with tempfile.TemporaryDirectory(prefix="trainwell-doctor-") as tmp:
        t0 = time.perf_counter()
        save_checkpoint(Path(tmp), trainer.epoch, trainer.model, trainer.optimizer,
                        trainer_state(trainer))
        t1 = time.perf_counter()
        cb.health.write(Path(tmp) / "health.jsonl")
        t2 = time.perf_counter()
        write_report(tmp, health=cb.health, findings=[])
        t3 = time.perf_counter()
    session.checkpoint_seconds, session.health_seconds = t1 - t0, t2 - t1
    session.report_seconds = t3 - t2


class _Builder:
    """Builds sessions, sharing the loaded data between configs whose data agree."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[Any, float]] = {}

    def session(self, config: Config, probe_epochs: int, probes: int = DIAG_PROBES,
                *, doctor: bool = True) -> _Session:
        """``config`` built for its *full* budget (schedules see the full length), untrained.

        Training it to the short budget and later continuing gives, epoch for epoch, the
        same run as ``trainwell train`` on the config (each epoch's shuffling is seeded by
        the seed and the epoch), so the reported "after" is what rerunning repaired.toml
        gives. ``probe_epochs`` and ``probes`` set the probe period: ``probes`` probe steps
        in ``probe_epochs`` epochs (0: step 0 only). ``doctor=False`` (the yardstick, whose
        metrics alone are read) trains without the doctor's callback: no probe, no record.
        """
        data, load_seconds = self._load(config)
        steps = probe_epochs * -(-len(data.train) // config.train.batch_size)
        # probes=0 (the yardstick): a probe period past the run's end, step 0 only.
        every = max(1, steps // probes) if probes else 10 * steps * config.train.epochs + 1
        target_range = None
        if isinstance(data, Dataset) and data.task == "regression" and data.train.y.numel():
            y = data.train.y
            target_range = (float(y.min()), float(y.max()))
        cb = DoctorCallback(every=every,
                            num_classes=getattr(data, "num_classes", None),  # None: torch data
                            target_range=target_range)
        t0 = time.perf_counter()
        built = build_run(config, callbacks=[cb] if doctor else [], data=data)
        return _Session(config, built, cb, build_seconds=time.perf_counter() - t0,
                        load_seconds=load_seconds)

    def _load(self, config: Config) -> tuple[Any, float]:
        """The config's data and the seconds loading it took (the first time, if shared)."""
        key = json.dumps([config.data.model_dump(mode="json"), config.seed, str(config.root)],
                         sort_keys=True, default=str)
        if config.data.target is not None or key not in self._data:
            # the user's own loader is built each time (it may hold state)
            t0 = time.perf_counter()
            loaded = (build_data(config), time.perf_counter() - t0)
            if config.data.target is not None:
                return loaded
            self._data[key] = loaded
        return self._data[key]


def _score(m: dict[str, Any]) -> float:
    acc = m.get("val_accuracy")
    if isinstance(acc, int | float) and math.isfinite(acc):
        return float(acc)
    loss = m.get("val_loss")
    return -float(loss) if isinstance(loss, int | float) and math.isfinite(loss) else -math.inf


def diagnose(
    config: Config, *, out_dir: str | Path | None = None, yardstick: bool = True,
    full_look: bool = True,
) -> DoctorResult:
    """Train the diagnostic budget of ``config`` and return its findings (no repair).

    Args:
        config: a :class:`~trainwell.config.Config`.
        out_dir: folder for the diagnostic run (health.jsonl, report.html); None keeps
            nothing on disk.
        yardstick: also train the yardstick for the same short budget; its accuracy there
            is the bar for "failing to learn" (without it the rules use a fixed bar).
        full_look: continue a run without a finding at the short budget to the full budget
            and diagnose the whole run (the module docstring, step 2).

    Returns:
        A :class:`DoctorResult` with ``findings``, ``diagnostic``, ``before``,
        ``full_look`` and ``yardstick`` set and ``status`` "healthy" or "unresolved".
    """
    t0 = time.perf_counter()
    result, _, _ = _diagnose(config, out_dir, yardstick, full_look, _Builder())
    result.seconds = time.perf_counter() - t0
    return result


def _diagnose(
    config: Config, out_dir: str | Path | None, with_yardstick: bool, full_look: bool,
    builder: _Builder,
) -> tuple[DoctorResult, _Session, int]:
    """The short look (and the full look when it finds nothing); returns the result, the
    diagnostic session and the epochs trained so far."""
    short = diagnostic_epochs(config)
    session = builder.session(config, short)
    if full_look:
        attach_replay(session.built.trainer, config)  # early stopping, watched (late_repair)
    metrics = session.train_to(short)
    _time_folder_writes(session)
    run_estimate = one_run_seconds_estimate(session, config.train.epochs)
    yard: dict[str, Any] = {}
    spent = short
    activation = hidden_activation(session.callback.health)
    ycfg = yardstick_config(config, activation) if with_yardstick else None
    if ycfg is not None and ycfg == config:
        # The config already is the recipe: its own run is the yardstick (no extra epochs).
        yard = {**metrics, "reused": True}
    elif ycfg is not None:
        try:  # the recipe with a schedule of its own over the short budget
            ycfg = apply_patch(ycfg, {"train.epochs": short})
        except (UserError, ValueError):
            ycfg = None
        if ycfg is not None:
            try:
                yard_session = builder.session(ycfg, short, 0, doctor=False)
                yard = yard_session.train_to(short)
                spent += yard_session.epochs
            except Exception as e:  # noqa: BLE001 - the recipe failing must not end the diagnosis
                yard = {"failed": _one_line(e)}
    weak = yardstick_failed(yard, session.callback.num_classes) if yard else ""
    if weak:
        yard["failed"] = weak  # no bar: repaired only by learning like a healthy run (judge)
        classes = session.callback.num_classes
        if classes and classes >= 2:
            yard["chance_accuracy"] = 1.0 / classes
    _tell_yardstick(session, yard)
    findings = session.callback.findings()
    diag = Trial(None, {}, metrics["val_accuracy"], metrics["val_loss"],
                 [f.kind for f in findings], session.seconds, session.epochs)
    whole: dict[str, Any] = {}
    if not findings and full_look and short < config.train.epochs:
        session.reprobe()
        whole = session.train_to(config.train.epochs)
        spent += whole["epochs"] - short
        _tell_yardstick(session, yard)
        findings = session.callback.findings()
    if out_dir is not None:
        _save_run(Path(out_dir) / "diagnostic", session)
    result = DoctorResult(
        findings,
        diag,
        before=metrics,
        full_look=whole,
        yardstick=yard,
        judged_at_epochs=short,
        repaired_config=config,
        status="unresolved" if findings else "healthy",
        epochs=spent,
        full_epochs=config.train.epochs,
        run_seconds_estimate=run_estimate,
    )
    return result, session, spent


def _one_line(e: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0]}" if msg else type(e).__name__


def _tell_yardstick(session: _Session, yard: dict[str, Any]) -> None:
    """Give the rules the yardstick's accuracy at the short budget and the run's
    regularization (see Signals): the largest dropout rate in the built model (the user's
    own modules included) or the config's, and the config's L1/L2 penalties."""
    model = session.built.trainer.model
    rates = [float(m.p) for m in model.modules()
             if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    reg = session.config.regularization
    session.callback.health.context["regularization"] = {
        "dropout": max([session.config.model.dropout, *rates]),
        "l1": reg.l1,
        "l2": reg.l2,
    }
    acc = yard.get("val_accuracy")
    if isinstance(acc, int | float) and math.isfinite(acc) and not yard.get("failed"):
        session.callback.health.context["yardstick_accuracy"] = float(acc)
    elif isinstance(acc, int | float) and math.isfinite(acc) and "chance_accuracy" in yard:
        # trained, but stayed near chance: no bar for repairs, yet evidence for not_learning
        session.callback.health.context["yardstick_chance_accuracy"] = float(acc)


def _checkpoint_into(folder: Path, session: _Session) -> bool:
    """Make ``folder`` the run folder of the kept repair's continuation, so that
    ``trainwell train --resume folder`` finishes the very run ``repaired.toml`` gives.

    Only where ``trainwell train`` builds the same callbacks, in the same order (a resume
    matches callback states by position): early stopping with ``restore_best`` keeps its
    best weights in a run folder, which the doctor's session did not have. A ``final/`` an
    earlier doctor call left in the same output folder is removed first (its checkpoints
    belong to another run); a folder with other files is left alone. Returns whether the
    folder was claimed.
    """
    remove_created(folder)  # only what trainwell wrote there, by its manifest
    config = session.config
    same = ([type(c) for c in config_callbacks(config, folder)]
            == [type(c) for c in config_callbacks(config, None)])
    if not same or (folder.exists() and any(folder.iterdir())):
        return False
    claim_run_dir(folder)
    trainer = session.built.trainer
    trainer._resume_dir = trainer.run_dir = folder  # fit() checkpoints here from now on
    return True


def _save_run(folder: Path, session: _Session, *, checkpoint: bool = False) -> None:
    # config and health (the call writes one report.html, at its end; `trainwell doctor
    # report FOLDER` renders this one), and with ``checkpoint`` the epoch it stopped at, when
    # its continuation trained none (fit() saves the epochs it trains), and the manifest
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "config.toml", to_toml(session.config))
    session.callback.health.write(folder / "health.jsonl")
    if checkpoint:
        trainer = session.built.trainer
        if latest_checkpoint(folder) is None:
            save_checkpoint(folder, trainer.epoch, trainer.model, trainer.optimizer,
                            trainer_state(trainer))
        record_created(folder)


def _pair(
    config: Config, trials: list[tuple[Trial, dict[str, Any]]]
) -> tuple[str, dict[str, Any]] | None:
    """The best single trial's patch joined with the runner-up's (patches on different
    fields, the joined config valid), or None."""
    ranked = sorted(trials, key=lambda tm: -_score(tm[1]))
    if len(ranked) < 2 or ranked[0][0].repair is None:
        return None
    first = ranked[0][0]
    for other, _ in ranked[1:]:
        if other.repair is None or set(other.patch) & set(first.patch):
            continue
        patch = {**first.patch, **other.patch}
        try:
            apply_patch(config, patch)
        except (UserError, ValueError):
            continue
        return f"{first.repair}+{other.repair}", patch
    return None


def repair(
    config: Config, *, out_dir: str | Path | None = None, max_trials: int = MAX_TRIALS,
    finish: bool = True,
) -> DoctorResult:
    """Diagnose ``config``, try ranked repairs on short budgets, keep the best, finish it.

    The whole call trains at most :data:`BUDGET_RUNS` runs' worth of ``config``'s epochs,
    planning :data:`PLAN_RUNS` (the module docstring gives the plan and the rule for
    "repaired"); ``epochs`` in the result counts them.

    Args:
        config: a :class:`~trainwell.config.Config`.
        out_dir: where ``diagnostic/``, ``final/``, ``repaired.toml``, ``doctor.json`` and
            ``report.html`` go; None writes nothing.
        max_trials: most repair trials to run (the budget may allow fewer).
        finish: continue the kept trial to the full budget (``after``).

    Returns:
        A :class:`DoctorResult`; ``status`` is "repaired" only by :func:`.yardstick.verdict`
        (within 2 points of the yardstick at the short budget, held at the full budget),
        "improved" if it gained at least :data:`MIN_GAIN` but not that, "unresolved"
        otherwise (with ``finish`` False: the short trial's verdict alone).
    """

    t0 = time.perf_counter()
    builder = _Builder()
    result, diag_session, spent = _diagnose(config, out_dir, True, True, builder)
    diag_health = diag_session.callback.health
    activation = hidden_activation(diag_health)
    result.code_changes = code_changes(config, result.findings, signals(diag_health))
    repair_late_overfitting(result, config, diag_session)  # found by the full look: replayed
    full = config.train.epochs
    short = diagnostic_epochs(config)
    allowed = PLAN_RUNS * full
    reserve = (full - short) if finish else 0  # the winner's continuation

    def room() -> bool:
        # While no repair has gained, trials may use the margin up to BUDGET_RUNS: a late
        # winner still gets its continuation, and the call stays within BUDGET_RUNS·E epochs.
        limit = allowed if best is not None else BUDGET_RUNS * full
        # The top-ranked repair is always tried: a finding is never left untried. Only a
        # run of a few epochs (E < 5, where d = 1 is already a fifth of it) passes 1.5 runs.
        return not result.trials or spent + short + reserve <= limit + 1e-9

    best: tuple[str, dict, Any, _Session, dict] | None = None
    if result.findings and not result.full_look:
        best_score = _score(result.before) + MIN_GAIN
        yard = dict(result.yardstick)
        # a trial this good equals the recipe (a failed recipe ends no search)
        matched = math.inf if yard.get("failed") else _score(yard) - WITHIN_ACCURACY
        done: list[tuple[Trial, dict[str, Any]]] = []
        cost_samples: list[float] = []
        queue = candidate_patches(config, result.findings, activation)
        paired = False
        while len(result.trials) < max_trials and room():
            if queue:
                name, patch = queue.pop(0)
            elif not paired:  # no single matched the recipe (a match ends the loop)
                paired = True
                pair = _pair(config, done)
                if pair is None:
                    break
                name, patch = pair
            else:
                break
            try:
                patched = apply_patch(config, patch)
                session = builder.session(patched, short, 0)
                metrics, aborted = session.trial_to(short)
            except Exception as e:  # noqa: BLE001 - a failing trial is recorded, not fatal
                failed = Trial(name, patch, None, None, [], 0.0, 0, True, _one_line(e))
                result.trials.append(failed)
                done.append((failed, {}))
                continue
            spent += session.epochs
            if not aborted and same_cost(config, patch):
                cost_samples += _trial_epochs(session)  # the broken run's epoch cost, again
            _tell_yardstick(session, yard)
            kinds = [f.kind for f in session.callback.findings()]
            trial = Trial(name, patch, metrics["val_accuracy"], metrics["val_loss"], kinds,
                          session.seconds, session.epochs, aborted)
            result.trials.append(trial)
            done.append((trial, metrics))
            if not aborted and _score(metrics) >= best_score:
                best_score, best = _score(metrics), (name, patch, patched, session, metrics)
                if best_score >= matched:
                    break  # as good as the recipe at the same budget, and accuracy gained
        if best is not None:
            result.chosen, result.patch, result.repaired_config, session, trial_m = best
            result.status = judge(result.before, trial_m, yard or None)
            if finish:
                # Continue the kept trial toward the full budget (= rerunning repaired.toml)
                # while the call's time allows: a repair that makes each epoch dearer (batch
                # norm ~1.6-1.9x per step on small nets) is verified over fewer epochs.
                session.reprobe()
                final = Path(out_dir) / "final" if out_dir is not None else None
                resumable = final is not None and _checkpoint_into(final, session)
                budget = _Budget(t0, result.run_seconds_estimate, full,
                                 once_seconds(diag_session),
                                 per_epoch_seconds(diag_session, full),
                                 same_cost(config, result.patch))
                for seconds in cost_samples:
                    budget.sample(seconds)
                result.after = session.continue_within(full, budget,
                                                       at_least=-(-full // VERIFY_SHARE_DIV))
                result.run_seconds_budgeted = budget.run_seconds
                spent += result.after["epochs"] - short
                result.budget_stopped = session.budget_stopped
                result.status = verdict(result.before, trial_m, result.after, yard or None)
                if final is not None:
                    _save_run(final, session, checkpoint=resumable)
                    result.resumable = resumable
    result.epochs = spent
    result.seconds = time.perf_counter() - t0
    if out_dir is not None and result.repaired_config is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(out_dir) / "repaired.toml", to_toml(result.repaired_config))
    _write(result, out_dir, config)
    # doctor.json holds the time up to its writing; the call's own includes the report
    result.seconds = time.perf_counter() - t0
    return result


def _write(result: DoctorResult, out_dir: str | Path | None, config: Config) -> None:
    if out_dir is None:
        return

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "doctor.json", json.dumps(result.to_dict(), indent=2) + "\n")
    diag = out / "diagnostic" / "health.jsonl"
    if diag.is_file():
        health = Health.read(diag)
        atomic_write_text(out / "health.jsonl", diag.read_text(encoding="utf-8"))
        write_report(out, health=health, findings=result.findings)
