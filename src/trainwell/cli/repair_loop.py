"""The diagnose/repair loop over a config.

1. Train a short diagnostic budget (``diagnostic_epochs``) with dense probes, and the
   *yardstick* (the same architecture with a known-good recipe, :mod:`.yardstick`) to the
   same budget; the findings see the yardstick's early accuracy ("failing to learn" is
   judged against what the recipe reaches by then).
2. For the findings in order, their ranked repairs that apply to the config become trial
   patches; each trial trains the same short budget from the same seed.
3. A trial counts only if its validation accuracy beats the diagnostic run's by at least
   ``MIN_GAIN`` (same budget, same seed): the symptom going away is not enough. A trial
   that clears the gain and either leaves no finding or matches the yardstick's short run
   ends the search early.
4. The best trial continues to the full budget; the yardstick continues too unless the
   repaired run is already short of the yardstick's *short* run. The verdict
   (:func:`.yardstick.judge`): *repaired* within 2 points of the yardstick (regression: val
   loss within 10%), else *improved* or *unresolved*. Every run is built for the full budget
   and stopped early, so the continued trial is epoch for epoch the run that ``trainwell
   train repaired.toml`` gives. Cost: (2 + trials)·short + (full − short) epochs, plus
   (full − short) when the yardstick must be continued.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config, apply_patch, to_toml
from ..data.dataset import Dataset
from ..doctor.callback import DoctorCallback
from ..doctor.causes import primary_and_consequences
from ..doctor.findings import Finding, Health
from ..doctor.repairs import REPAIRS
from ..doctor.report import write_report
from ..train.checkpoint import atomic_write_text
from .runner import build_data, build_run
from .yardstick import MIN_GAIN, WITHIN_ACCURACY, judge, needs_full_yardstick, yardstick_config

__all__ = ["MIN_GAIN", "DoctorResult", "Trial", "diagnose", "diagnostic_epochs", "repair"]

DIAG_SHARE = 0.25  # share of the full budget the diagnostic and each trial train
DIAG_MIN_EPOCHS = 3  # …but at least this many epochs (overfitting needs a trend)
DIAG_PROBES = 40  # probe steps wanted in a diagnostic run (sets the probe period)
MAX_TRIALS = 3


@dataclass
class Trial:
    """One short training run: the diagnostic (``repair=None``) or a repair's trial."""

    repair: str | None
    patch: dict[str, Any]
    val_accuracy: float | None
    val_loss: float | None
    findings: list[str]
    seconds: float


@dataclass
class DoctorResult:
    """What :func:`repair` (or :func:`diagnose`) found and did.

    Attributes:
        findings: findings of the diagnostic run.
        diagnostic: the diagnostic :class:`Trial`.
        trials: the repair trials, in the order run.
        chosen: name of the kept repair, or None.
        patch: its config patch ({} when none).
        repaired_config: the config to rerun (the original when nothing was kept).
        before, after: ``{"val_accuracy", "test_accuracy", ...}`` of the diagnostic run
            and of the final full-budget run (``after`` empty without a final run).
        yardstick: the same metrics of the known-good recipe on the same architecture
            (:mod:`.yardstick`) at the last budget it trained (``epochs`` says which);
            empty where the architecture does not allow the recipe.
        status: ``"healthy"``, ``"repaired"`` (within 2 points of the yardstick),
            ``"improved"`` (≥ ``MIN_GAIN`` better than before, short of the yardstick) or
            ``"unresolved"``.
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
    yardstick: dict[str, Any] = field(default_factory=dict)
    status: str = "healthy"
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """0 healthy or repaired, 1 a problem remains (also when only improved)."""
        return 0 if self.status in ("healthy", "repaired") else 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the CLI's ``--json`` output)."""
        return {
            "status": self.status,
            "findings": [f.to_dict() for f in self.findings],
            "kinds": [f.kind for f in self.findings],
            **primary_and_consequences(self.findings),  # primary first, then what it explains
            "chosen": self.chosen,
            "patch": self.patch,
            "before": self.before,
            "after": self.after,
            "yardstick": self.yardstick,
            "diagnostic": asdict(self.diagnostic),
            "trials": [asdict(t) for t in self.trials],
            "seconds": round(self.seconds, 3),
        }


def diagnostic_epochs(config: Config) -> int:
    """Epochs of the diagnostic and trial runs: max(3, ⌈0.25·epochs⌉), at most epochs."""
    e = config.train.epochs
    return min(e, max(DIAG_MIN_EPOCHS, math.ceil(DIAG_SHARE * e)))


@dataclass
class _Session:
    """A built run that can be trained to the short budget, then continued to the full one."""

    config: Any
    built: Any
    callback: DoctorCallback
    seconds: float = 0.0

    def train_to(self, epochs: int) -> dict[str, Any]:
        """Train until ``epochs`` epochs are done (continuing); return the metrics."""
        trainer = self.built.trainer
        t0 = time.perf_counter()
        # The trainer keeps the run's full length, so a schedule built for the full budget
        # (1cycle, cosine, …) stays valid and continuing later equals one uninterrupted run.
        history = self.built.fit(until=epochs)
        self.seconds += time.perf_counter() - t0
        last = history[-1] if history else {}
        split = self.built.data.test
        test = trainer.evaluate(split) if split is not None else {}
        return {
            "val_accuracy": last.get("val_accuracy"),
            "val_loss": last.get("val_loss"),
            "test_accuracy": test.get("accuracy"),
            "test_loss": test.get("loss"),
            "epochs": len(history),
        }


def _session(config: Config) -> _Session:
    """Build ``config`` for its *full* budget (schedules see the full length), not yet trained.

    Training it to the short budget and later continuing gives, epoch for epoch, the same
    run as ``trainwell train`` on the config (each epoch's shuffling is seeded by the seed
    and the epoch), so the reported "after" is what rerunning repaired.toml gives.
    """

    data = build_data(config)
    steps = diagnostic_epochs(config) * -(-len(data.train) // config.train.batch_size)
    target_range = None
    if isinstance(data, Dataset) and data.task == "regression" and data.train.y.numel():
        y = data.train.y
        target_range = (float(y.min()), float(y.max()))
    cb = DoctorCallback(every=max(1, steps // DIAG_PROBES),
                        num_classes=getattr(data, "num_classes", None),  # None: user's torch data
                        target_range=target_range)
    return _Session(config, build_run(config, callbacks=[cb], data=data), cb)


def _score(m: dict[str, Any]) -> float:
    acc = m.get("val_accuracy")
    if isinstance(acc, int | float) and math.isfinite(acc):
        return float(acc)
    loss = m.get("val_loss")
    return -float(loss) if isinstance(loss, int | float) and math.isfinite(loss) else -math.inf


def diagnose(
    config: Config, *, out_dir: str | Path | None = None, yardstick: bool = True
) -> DoctorResult:
    """Train the diagnostic budget of ``config`` and return its findings (no repair).

    Args:
        config: a :class:`~trainwell.config.Config`.
        out_dir: folder for the diagnostic run (health.jsonl, report.html); None keeps
            nothing on disk.
        yardstick: also train the yardstick to the same budget; its accuracy there is the
            bar for "failing to learn" (without it the rules use a fixed bar).

    Returns:
        A :class:`DoctorResult` with ``findings``, ``diagnostic``, ``before`` and
        ``yardstick`` (short budget) set and ``status`` "healthy" or "unresolved".
    """
    return _diagnose(config, out_dir, yardstick)[0]


def _diagnose(
    config: Config, out_dir: str | Path | None, with_yardstick: bool
) -> tuple[DoctorResult, _Session | None]:
    t0 = time.perf_counter()
    short = diagnostic_epochs(config)
    session = _session(config)
    metrics = session.train_to(short)
    yard_session, yard = None, {}
    ycfg = yardstick_config(config) if with_yardstick else None
    if ycfg is not None and ycfg == config:
        # The config already is the recipe: its own run is the yardstick (no extra epochs).
        yard = {**metrics, "reused": True}
    elif ycfg is not None:
        yard_session = _session(ycfg)
        yard = yard_session.train_to(short)
    _tell_yardstick(session, yard)
    findings = session.callback.findings()
    diag = Trial(
        None,
        {},
        metrics["val_accuracy"],
        metrics["val_loss"],
        [f.kind for f in findings],
        session.seconds,
    )
    if out_dir is not None:
        _save_run(Path(out_dir) / "diagnostic", session, findings)
    result = DoctorResult(
        findings,
        diag,
        before=metrics,
        yardstick=yard,
        repaired_config=config,
        status="unresolved" if findings else "healthy",
        seconds=time.perf_counter() - t0,
    )
    return result, yard_session


def _tell_yardstick(session: _Session, yard: dict[str, Any]) -> None:
    """Give the rules the yardstick's accuracy at the same budget (see Signals)."""
    acc = yard.get("val_accuracy")
    if isinstance(acc, int | float) and math.isfinite(acc):
        session.callback.health.context["yardstick_accuracy"] = float(acc)


def _save_run(folder: Path, session: _Session, findings: list[Finding]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "config.toml", to_toml(session.config))
    session.callback.health.write(folder / "health.jsonl")
    write_report(folder, health=session.callback.health, findings=findings)


def candidate_patches(config: Config, findings: list[Finding]) -> list[tuple[str, dict[str, Any]]]:
    """Applicable ``(repair name, patch)`` pairs, in finding then repair rank order."""
    seen: set[str] = set()
    out = []
    for f in findings:
        for name in f.repairs:
            if name in seen or name not in REPAIRS:
                continue
            seen.add(name)
            patch = REPAIRS[name].patch(config)
            if patch:
                out.append((name, patch))
    return out


def repair(
    config: Config, *, out_dir: str | Path | None = None, max_trials: int = MAX_TRIALS,
    finish: bool = True,
) -> DoctorResult:
    """Diagnose ``config``, try ranked repairs on short budgets, keep the best, finish it.

    Args:
        config: a :class:`~trainwell.config.Config`.
        out_dir: where ``diagnostic/``, ``final/``, ``repaired.toml``, ``doctor.json`` and
            ``report.html`` go; None writes nothing.
        max_trials: most repair trials to run.
        finish: train the kept config for the full budget (``after``).

    Returns:
        A :class:`DoctorResult`; ``status`` is "repaired" only if the final run ends
        within 2 points of the yardstick (:func:`.yardstick.judge`), "improved" if it
        gained at least :data:`MIN_GAIN` but not that, "unresolved" otherwise (with
        ``finish`` False: the short trial judged against the yardstick's short run).
    """

    t0 = time.perf_counter()
    result, yard_session = _diagnose(config, out_dir, True)
    if not result.findings:
        result.seconds = time.perf_counter() - t0
        _write(result, out_dir, config)
        return result
    short_epochs = diagnostic_epochs(config)
    best_score = _score(result.before) + MIN_GAIN
    yard_short = dict(result.yardstick)
    matched = _score(yard_short) - WITHIN_ACCURACY  # a trial this good equals the recipe
    best: tuple[str, dict, Any, _Session, dict] | None = None
    for name, patch in candidate_patches(config, result.findings)[:max_trials]:
        patched = apply_patch(config, patch)
        session = _session(patched)
        metrics = session.train_to(short_epochs)
        _tell_yardstick(session, yard_short)
        kinds = [f.kind for f in session.callback.findings()]
        result.trials.append(
            Trial(name, patch, metrics["val_accuracy"], metrics["val_loss"], kinds, session.seconds)
        )
        if _score(metrics) >= best_score:
            best_score, best = _score(metrics), (name, patch, patched, session, metrics)
            if not kinds or best_score >= matched:
                break  # symptom gone, or as good as the recipe, *and* accuracy gained
    if best is not None:
        result.chosen, result.patch, result.repaired_config, session, trial = best
        # Without a full run the verdict is the short trial's against the short yardstick.
        result.status = judge(result.before, trial, yard_short or None)
        if finish:
            # Continue the kept trial to the full budget (same run as rerunning repaired.toml).
            result.after = session.train_to(config.train.epochs)
            if yard_session is not None and needs_full_yardstick(result.after, yard_short):
                result.yardstick = yard_session.train_to(config.train.epochs)
            result.status = judge(result.before, result.after, result.yardstick or None)
            if out_dir is not None:
                _save_run(Path(out_dir) / "final", session, session.callback.findings())
    result.seconds = time.perf_counter() - t0
    if out_dir is not None and result.repaired_config is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(out_dir) / "repaired.toml", to_toml(result.repaired_config))
    _write(result, out_dir, config)
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
