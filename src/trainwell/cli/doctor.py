"""``trainwell doctor`` and ``trainwell report``: argument parsing and output.

``trainwell doctor CONFIG [--diagnose-only] [--json] [--set k=v ...] [--out DIR]``
diagnoses a config, tries repairs and writes ``repaired.toml``; ``--cases DIR`` runs every
case listed in ``DIR/cases.toml`` instead. Exit code 0 healthy/repaired, 1 a problem
remains (or a case missed its target), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

from ..config import Config, apply_patch, load_config
from ..doctor.callback import DoctorCallback
from ..doctor.causes import format_findings  # primary first, then "because of it:"
from ..doctor.report import verification_cut, write_report
from ..errors import UserError
from .args import add_config_args
from .candidates import auto_repairable
from .doctor_text import applied_patch_lines  # each change tried, the applied patch as TOML
from .repair_loop import MAX_TRIALS, DoctorResult, diagnose, repair
from .runner import run as train_run
from .yardstick import WITHIN_LOSS

__all__ = [
    "add_arguments",
    "register",
    "report_add_arguments",
    "report_command",
    "case_outcome",
    "load_cases",
    "one_run_seconds",
    "run",
    "run_cases",
]

REFERENCE_TOLERANCE = 0.02  # a repaired case must end within 2 accuracy points of healthy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``trainwell doctor`` arguments to ``parser``."""
    add_config_args(parser, "TOML config to diagnose")
    parser.add_argument("--diagnose-only", action="store_true", help="stop after the findings")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--cases", metavar="DIR", help="run the cases listed in DIR/cases.toml")
    parser.add_argument("--fast", action="store_true", help="with --cases: only cases marked fast")
    parser.add_argument("--no-timing", action="store_true",
                        help="with --cases: do not time one run of each case (no time_ratio)")
    parser.add_argument("--timing-rounds", type=int, default=1, metavar="N",
                        help="with --cases: time each case's doctor call N times, each between "
                             "runs of its own, and report the median ratio (a noisy machine)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: runs/NAME-doctor)")
    parser.add_argument("--max-trials", type=int, default=MAX_TRIALS,
                        help="repair trials at most (the time budget may allow fewer)")


def run(args: argparse.Namespace) -> int:
    """Run ``trainwell doctor`` from parsed arguments; return the exit code.

    Raises:
        UserError: bad config, arguments or case list (the CLI turns it into exit code 2).
    """

    if args.max_trials < 0:
        raise UserError(f"--max-trials: must be >= 0, got {args.max_trials}")
    if args.timing_rounds < 1:
        raise UserError(f"--timing-rounds: must be >= 1, got {args.timing_rounds}")
    if args.cases:
        if args.config:
            raise UserError("doctor: give CONFIG or --cases DIR, not both")
        return run_cases(
            Path(args.cases),
            as_json=args.json,
            fast=args.fast,
            diagnose_only=args.diagnose_only,
            out=args.out,
            timing=not args.no_timing,
            timing_rounds=args.timing_rounds,
        )
    if not args.config:
        raise UserError("doctor: CONFIG is missing; give a TOML config (or --cases DIR)")
    config = load_config(args.config, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / f"{config.name}-doctor"
    if args.diagnose_only:
        result = diagnose(config, out_dir=out)
    else:
        result = repair(config, out_dir=out, max_trials=args.max_trials)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        _print_findings(result)
        if not args.diagnose_only:
            _print_before_after(result, out)
            print("\n".join(applied_patch_lines(config, result, out)))
        print(f"report: {out / 'report.html'}")
    return result.exit_code


def _print_findings(result: DoctorResult) -> None:

    print("\n".join(format_findings(result.findings)))


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _ep(n: Any) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def _print_before_after(result: DoctorResult, out: Path | None = None) -> None:
    print(f"\n{'trial':<22} {'val_accuracy':>12} {'val_loss':>10}  findings")
    rows = [("(diagnostic)", result.diagnostic)] + [(t.repair, t) for t in result.trials]
    for name, t in rows:
        print(
            f"{name:<22} {_fmt(t.val_accuracy):>12} {_fmt(t.val_loss):>10}  {', '.join(t.findings) or '-'}"
        )
    held = result.verified_epochs if result.budget_stopped else result.full_epochs
    print(f"\nchosen: {result.chosen or 'none'} -> status {result.status} "
          f"(judged against the yardstick at {_ep(result.judged_at_epochs)}, held to "
          f"{held}; {_ep(result.epochs)} trained in all)")
    cut = verification_cut(result.to_dict(), str(out / "final") if out else "final")
    if cut:
        print(cut)
    if result.after or result.yardstick:
        print(f"{'':<10} {'val_accuracy':>12} {'test_accuracy':>13} {'val_loss':>10}")
        print(
            f"{'before':<10} {_fmt(result.before.get('val_accuracy')):>12} "
            f"{_fmt(result.before.get('test_accuracy')):>13} {_fmt(result.before.get('val_loss')):>10}"
            f"  ({_ep(result.before.get('epochs'))})"
        )
        print(
            f"{'after':<10} {_fmt(result.after.get('val_accuracy')):>12} "
            f"{_fmt(result.after.get('test_accuracy')):>13} {_fmt(result.after.get('val_loss')):>10}"
            f"  ({_ep(result.after.get('epochs'))})"
        )
        y = result.yardstick
        if y:
            print(
                f"{'yardstick':<10} {_fmt(y.get('val_accuracy')):>12} "
                f"{_fmt(y.get('test_accuracy')):>13} {_fmt(y.get('val_loss')):>10}  "
                f"({_ep(y.get('epochs'))}, a complete run of its own; "
                "auto init, standardized inputs, logits head, Adam + 1cycle)"
            )


def load_cases(folder: Path) -> list[dict[str, Any]]:
    """Read ``folder/cases.toml``: ``[[case]]`` tables with name, config, expected, reference.

    Raises:
        UserError: missing file, bad TOML, or a case without its fields / config file.
    """
    path = folder / "cases.toml"
    if not path.is_file():
        raise UserError(f"--cases {folder}: no cases.toml there; give the cases folder")
    try:
        cases = tomllib.loads(path.read_text(encoding="utf-8")).get("case", [])
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML ({e})") from None
    for i, case in enumerate(cases):
        for key in ("name", "config", "expected", "reference"):
            if key not in case:
                raise UserError(f"{path}: case {i + 1} has no {key!r}; add it")
        if not (folder / case["config"]).is_file():
            raise UserError(f"{path}: case {case['name']}: no file {case['config']} in {folder}")
    return cases


def _case_config(folder: Path, case: dict[str, Any]) -> Config:
    """Load a case's config; a relative ``npz:``/``idx:`` path is taken from the cases folder."""

    config = load_config(folder / case["config"])
    kind, sep, path = config.data.source.partition(":")
    if sep and not Path(path).is_absolute() and (folder / path).exists():
        config = apply_patch(config, {"data.source": f"{kind}:{folder / path}"})
    return config


TIMING_RUNS = 3  # one run is timed this often (2 before the doctor, 1 after), median kept


def one_run_seconds(config: Config, repeats: int = 1, *, out: Path | None = None,
                    cpu: list[float] | None = None) -> float:
    """Wall time of one run of ``config`` as ``trainwell train`` does it, in this process:
    building the data and the model, training with the default doctor probes, the final
    evaluation, and, with ``out``, writing the run folder there (config, metrics, summary,
    health.jsonl and report.html; removed afterwards). The median of ``repeats`` runs: the
    time ratio's unit. Give ``out`` exactly when the doctor call it is compared with writes
    its own folder, so both sides do the same kind of work. ``cpu``, when given, receives
    the median process CPU time of the same runs (steadier than wall time on a shared
    machine; one torch thread makes the two agree on an idle one)."""
    times = _timed_runs(config, repeats, out)
    if cpu is not None:
        cpu.append(_middle([c for _, c in times]))
    return _middle([w for w, _ in times])


def _middle(values: list[float]) -> float:
    return sorted(values)[(len(values) - 1) // 2]


def _timed_runs(config: Config, repeats: int, out: Path | None) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of ``repeats`` runs of ``config`` as :func:`one_run_seconds`."""
    times = []
    for i in range(repeats):
        folder = None if out is None else out / f"train-{i}"
        if folder is not None and folder.exists():
            shutil.rmtree(folder)
        t0, c0 = time.perf_counter(), time.process_time()
        train_run(config, folder, callbacks=[DoctorCallback(report=folder is not None)],
                  progress=False)
        times.append((time.perf_counter() - t0, time.process_time() - c0))
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    return times


def case_outcome(
    case: dict[str, Any], result: DoctorResult, one_run: float | None = None,
    cpu_ratio: float | None = None,
) -> dict[str, Any]:
    """One case's row: detected, primary, status against the yardstick and the reference, cost.

    ``detected``: the expected kind is among the findings (a healthy case: no finding);
    ``primary_right``: it is the primary one; ``consequences_missing``: kinds the case lists
    as consequences that were not found.

    ``epochs_ratio`` counts every epoch the doctor trained (diagnostic, yardstick, trials,
    continuations) over the case's full budget; ``time_ratio`` is the doctor's wall time
    over ``one_run``, the measured wall time of one ``trainwell train`` of the broken config
    (the median of :data:`TIMING_RUNS` runs as :func:`one_run_seconds` times them, two just
    before the doctor call and one just after, in the same process; both write their
    folders, report included, or neither does); ``cpu_time_ratio`` is the same ratio in
    process CPU time, which other processes on a shared machine disturb less.
    ``judged_at_epochs`` is the budget at which the repaired run was
    compared with the yardstick (see :mod:`.repair_loop`).
    """
    kinds = [f.kind for f in result.findings]
    healthy = case["expected"] == "healthy"
    detected = kinds == [] if healthy else case["expected"] in kinds
    primary = (kinds[0] if kinds else None) == (None if healthy else case["expected"])
    missing = [k for k in case.get("consequences", []) if k not in kinds]
    last = result.after or result.full_look or result.before
    final = last.get("test_accuracy")
    final_loss = last.get("test_loss")
    if final is None and isinstance(final_loss, float):  # regression: reference is a test loss
        ok_final = result.status == "repaired" and final_loss <= case["reference"] * (
            1 + WITHIN_LOSS
        )
    else:
        ok_final = (
            result.status == "repaired"
            and isinstance(final, float)
            and final >= case["reference"] - REFERENCE_TOLERANCE
        )
    full = result.full_epochs or 1
    return {
        "case": case["name"], "expected": case["expected"], "found": kinds, "detected": detected,
        "primary": kinds[0] if kinds else None, "primary_right": primary,
        "consequences_missing": missing,
        "chosen": result.chosen, "status": result.status,
        "status_detail": result.status_detail,  # "… needs a code change: …" (user models)
        # False: the primary finding's only repairs are code changes the doctor states
        "auto_repairable": None if healthy else auto_repairable(result.findings,
                                                                result.code_changes) is not False,
        "judged_at_epochs": result.judged_at_epochs,
        "accuracy_before": result.before.get("test_accuracy"), "accuracy_after": final,
        "yardstick": result.yardstick.get("test_accuracy"),
        "loss_before": result.before.get("test_loss"), "loss_after": final_loss,
        "yardstick_loss": result.yardstick.get("test_loss"),
        "yardstick_epochs": result.yardstick.get("epochs"),
        "yardstick_failed": result.yardstick.get("failed"),  # why it is no bar, if it is not
        "reference": case["reference"], "within_reference": bool(ok_final) if not healthy else None,
        "epochs": result.epochs, "full_epochs": result.full_epochs,
        "verified_epochs": result.verified_epochs, "budget_stopped": result.budget_stopped,
        "epochs_ratio": round(result.epochs / full, 3),
        "one_run_seconds": None if one_run is None else round(one_run, 2),
        "time_ratio": round(result.seconds / one_run, 2) if one_run else None,
        "cpu_time_ratio": None if cpu_ratio is None else round(cpu_ratio, 2),
        "seconds": round(result.seconds, 2),
    }  # fmt: skip


def run_cases(
    folder: Path,
    *,
    as_json: bool = False,
    fast: bool = False,
    diagnose_only: bool = False,
    out: str | None = None,
    timing: bool = True,
    timing_rounds: int = 1,
) -> int:
    """Run the doctor over every case; print one row per case and the totals.

    With ``timing_rounds`` > 1 each case's doctor call is made that many times, each round
    between runs of its own (two before, one after), and ``time_ratio`` is the median of the
    rounds' ratios (``time_ratios`` lists them): how this project's benchmarks compare two
    sides on a machine whose speed moves between minutes. The row's findings, status and
    files are the first call's.

    Returns:
        0 when every case is detected right, no healthy control is flagged, and at least
        90% of broken cases end within 2 points of their reference; 1 otherwise.
    """

    cases = [c for c in load_cases(folder) if c.get("fast") or not fast]
    rows = []
    t0 = time.perf_counter()
    for case in cases:
        config = _case_config(folder, case)
        run_out = Path(out) / case["name"] if out else None
        first: DoctorResult | None = None
        wall_ratios: list[float] = []
        cpu_ratios: list[float] = []
        all_runs: list[tuple[float, float]] = []
        for round_ in range(timing_rounds if timing else 1):
            # Runs of the broken config timed before and after the doctor call (the median of
            # all): a load that changes during the case weighs on both sides alike. In this
            # process, each with its output folder (report included) or neither.
            with tempfile.TemporaryDirectory(prefix="trainwell-timing-") as tmp:
                train_out = Path(tmp) if run_out is not None else None
                call_out = run_out if round_ == 0 or run_out is None else Path(tmp) / "doctor"
                runs = (_timed_runs(config, TIMING_RUNS - TIMING_RUNS // 2, train_out)
                        if timing else [])
                t_call, c_call = time.perf_counter(), time.process_time()
                result = (
                    diagnose(config, out_dir=call_out) if diagnose_only
                    else repair(config, out_dir=call_out)
                )
                result.seconds = time.perf_counter() - t_call  # the whole call, files included
                call_cpu = time.process_time() - c_call
                runs += _timed_runs(config, TIMING_RUNS // 2, train_out) if timing else []
            if runs:
                wall_ratios.append(result.seconds / _middle([w for w, _ in runs]))
                cpu_one = _middle([c for _, c in runs])
                cpu_ratios.append(call_cpu / cpu_one if cpu_one else 0.0)
                all_runs += runs
            first = first or result
        assert first is not None
        one_run = _middle([w for w, _ in all_runs]) if all_runs else None
        row = case_outcome(case, first, one_run,
                           statistics.median(cpu_ratios) if cpu_ratios else None)
        if wall_ratios:  # the rounds' median, not the first call over the runs' median
            row["time_ratio"] = round(statistics.median(wall_ratios), 2)
            if timing_rounds > 1:
                row["time_ratios"] = [round(r, 2) for r in wall_ratios]
        rows.append(row)
        if as_json:
            print(json.dumps(row), flush=True)
        else:
            print(
                f"{row['case']:<24} {row['expected']:<20} {'ok' if row['detected'] else 'MISSED':<7}"
                f" {str(row['chosen']):<20} {row['status']:<10} {_fmt(row['accuracy_before']):>7}"
                f" -> {_fmt(row['accuracy_after']):>7} (yardstick {_fmt(row['yardstick']):>7}, "
                f"ref {row['reference']:.3f}) {row['seconds']:>6.1f}s ×{row['time_ratio']} "
                f"({row['epochs']}/{row['full_epochs']} epochs)",
                flush=True,
            )
    broken = [r for r in rows if r["expected"] != "healthy"]
    repaired = sum(1 for r in broken if r["within_reference"])
    summary = {
        "cases": len(rows),
        "detected": sum(r["detected"] for r in rows),
        "broken": len(broken),
        "repaired_within_reference": repaired,
        "repaired_vs_yardstick": sum(1 for r in broken if r["status"] == "repaired"),
        "repairable": sum(1 for r in broken if r["auto_repairable"]),
        "repaired_of_repairable": sum(1 for r in broken
                                      if r["auto_repairable"] and r["status"] == "repaired"),
        "not_auto_repairable": [r["case"] for r in broken if not r["auto_repairable"]],
        "improved": sum(1 for r in broken if r["status"] == "improved"),
        "unresolved": sum(1 for r in broken if r["status"] == "unresolved"),
        "primary_right": sum(r["primary_right"] for r in rows),
        "time_ratio_median": _median([r["time_ratio"] for r in rows]),
        "time_ratio_max": max((r["time_ratio"] or 0.0 for r in rows), default=0.0),
        "cpu_time_ratio_median": _median([r["cpu_time_ratio"] for r in rows]),
        "cpu_time_ratio_max": max((r["cpu_time_ratio"] or 0.0 for r in rows), default=0.0),
        "epochs_ratio_median": _median([r["epochs_ratio"] for r in rows]),
        "epochs_ratio_max": max((r["epochs_ratio"] for r in rows), default=0.0),
        "healthy_flagged": sum(1 for r in rows if r["expected"] == "healthy" and not r["detected"]),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps({"summary": summary}) if as_json else f"summary: {summary}")
    # The targets: every case detected (healthy ones unflagged), the primary finding
    # right on 95 %, and 90 % of the cases a config change can repair repaired.
    repairable = summary["repairable"]
    ok = (summary["detected"] == len(rows)
          and summary["primary_right"] >= 0.95 * len(rows)
          and (diagnose_only or not repairable
               or summary["repaired_of_repairable"] >= 0.9 * repairable))
    return 0 if ok else 1


def _median(values: list[float | None]) -> float | None:
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    return round((v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2, 3)


def report_add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``trainwell report`` arguments to ``parser``."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder with health.jsonl")


def report_command(args: argparse.Namespace) -> int:
    """Regenerate ``RUN_DIR/report.html``; return 0.

    Raises:
        UserError: RUN_DIR is not a folder or has no health.jsonl.
    """

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UserError(f"report: {run_dir} is not a folder; give a run folder (runs/NAME)")
    path = write_report(run_dir)
    print(f"report: {path}", file=sys.stdout)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``doctor`` and ``report`` subcommands to the CLI's subparsers."""
    p = subparsers.add_parser("doctor", help="diagnose a config's training and repair it")
    add_arguments(p)
    p.set_defaults(func=run)
    p = subparsers.add_parser("report", help="regenerate a run's report.html")
    report_add_arguments(p)
    p.set_defaults(func=report_command)
