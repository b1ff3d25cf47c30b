"""SIGKILL a real ``trainwell train`` at a chosen moment, resume it, compare with a clean run.

Shared by ``test_sigkill.py`` and ``benchmarks/reliability.py``. A trial starts the CLI in
a subprocess, kills it after ``delay`` seconds (or the moment a checkpoint write is under
way), then finishes the run: ``--resume`` when the folder holds its config.toml, else the
same command again (a kill before the run folder exists leaves nothing to resume).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file

# Tiny but real: dropout (its RNG must resume), one-cycle schedule, 3 epochs of ~170 steps.
ARGS = ["--set", "data.source=synthetic", "--set", "data.num_samples=3000",
        "--set", "model.depth=2", "--set", "model.width=32", "--set", "model.dropout=0.1",
        "--set", "train.epochs=3", "--set", "train.batch_size=16", "--set", "train.threads=1",
        "--set", "name=faults", "--quiet"]
TIMEOUT_S = 600


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def start(out: Path, *, resume: bool = False, extra: Sequence[str] = ()) -> subprocess.Popen:
    """Start ``trainwell train`` (or ``--resume``) writing to ``out``; ``extra``: more
    ``--set`` arguments for a new run (a resume reads the run's own config)."""
    argv = ["--resume", str(out), "--quiet"] if resume else [*ARGS, *extra, "--out", str(out)]
    return subprocess.Popen([sys.executable, "-m", "trainwell.cli", "train", *argv], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen) -> None:
    """Wait for a run; a non-zero exit is an AssertionError carrying its last error lines."""
    _, err = proc.communicate(timeout=TIMEOUT_S)
    if proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {err.decode()[-1500:]}")


def _timeless(value: object) -> object:
    """``value`` without wall-clock fields (keys ending in ``_s``), which no rerun reproduces."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if not k.endswith("_s")}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def final_state(run: Path) -> dict[str, object]:
    """What must be bit-identical: newest checkpoint tensors, metrics less timings, health.jsonl."""
    last = sorted((run / "checkpoints").glob("epoch-*.safetensors"))[-1]
    tensors = load_file(str(last))
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run / "summary.json").read_text())
    return {
        "checkpoint": last.name,
        "tensors": {k: v.numpy().tobytes() for k, v in tensors.items()},
        "metrics": _timeless(metrics),
        "health": [_timeless(json.loads(line))
                   for line in (run / "health.jsonl").read_text().splitlines()],
        "final": summary["final"],
        "steps": summary["steps"],
    }


def reference(out: Path) -> tuple[dict[str, object], float]:
    """An uninterrupted run: its final state and its wall time in seconds."""
    t0 = time.monotonic()
    finish(start(out))
    return final_state(out), time.monotonic() - t0


@dataclass
class Trial:
    """One kill: when it landed, what was on disk, and whether the finished run matched."""

    delay_s: float
    phase: str  # before_folder, before_checkpoint, after_checkpoint, finished
    resumed: bool
    identical: bool
    leftovers: list[str]


def _wait_for_write(out: Path, proc: subprocess.Popen, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    folder = out / "checkpoints"
    while time.monotonic() < deadline and proc.poll() is None:
        if folder.is_dir() and any(p.name.endswith(".tmp") for p in folder.iterdir()):
            return
        time.sleep(0.0005)


def kill_and_resume(out: Path, ref: dict[str, object], delay_s: float,
                    at_write: bool = False) -> Trial:
    """Kill a run after ``delay_s`` (or at its first checkpoint write), finish it, compare."""
    proc = start(out)
    if at_write:
        _wait_for_write(out, proc, delay_s)
    else:
        time.sleep(delay_s)
    finished = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    checkpoints = list((out / "checkpoints").glob("epoch-*.json")) if out.is_dir() else []
    phase = ("finished" if finished else "before_folder" if not (out / "config.toml").is_file()
             else "after_checkpoint" if checkpoints else "before_checkpoint")
    resumed = (out / "config.toml").is_file()
    finish(start(out, resume=resumed))
    leftovers = sorted(p.name for p in out.rglob("*") if p.name.endswith(".tmp"))
    return Trial(delay_s, phase, resumed, final_state(out) == ref, leftovers)
