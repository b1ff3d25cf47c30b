"""Smoke test of ``benchmarks/gpu.py``: its CPU path runs and reports every section.

Speed is never asserted (the ratios depend on the machine and its load); the test checks
that the script that a GPU machine runs unmodified also runs here, end to end, and prints
one JSON object whose timings are finite positive numbers.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.py"


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p)
    return env


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=300, env=_env(), cwd=ROOT, check=False)


def _positive(value: object, where: str) -> None:
    assert isinstance(value, (int, float)) and not isinstance(value, bool), where
    assert math.isfinite(value) and value > 0, f"{where}: {value}"


@pytest.mark.slow
def test_gpu_benchmark_cpu_quick_reports_every_section():
    proc = _run("--device", "cpu", "--quick")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["device"] == "cpu" and out["torch"] and out["date"] and "cuda" in out
    for section in ("mlp", "resnet"):
        for precision in ("fp32", "bf16"):
            case = out[section][precision]
            assert case["paired_epochs"] >= 1
            for key in ("plain_epoch_s_median", "trainwell_epoch_s_median", "ratio_median",
                        "ratio_of_medians", "plain_step_us_median", "trainwell_step_us_median"):
                _positive(case[key], f"{section}.{precision}.{key}")
            # Same weights, same batches, same augmentation draws: on the CPU the two sides
            # agree exactly after the warm-up epoch (a check that the comparison is fair).
            assert case["max_abs_weight_diff_after_warmup"] < 1e-5
    opt = out["optimizers"]
    assert len(opt["us_per_step"]) == 14
    for name, us in opt["us_per_step"].items():
        _positive(us, f"optimizers.us_per_step.{name}")
    assert {k.split("/")[1] for k in opt["ratio_to_torch"]} == {"adam", "momentum", "nadam"}
    for name, row in opt["ratio_to_torch"].items():
        assert row["vs"] in opt["us_per_step"]
        _positive(row["ratio_median"], f"optimizers.ratio_to_torch.{name}")
    doctor = out["doctor"]
    for key in ("off_s_median", "on_s_median", "ratio_median"):
        _positive(doctor[key], f"doctor.{key}")
    _positive(out["total_s"], "total_s")


def test_gpu_benchmark_without_cuda_skips_cleanly():
    proc = _run("--device", "cuda")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == {"skipped": "no CUDA device"}
    assert len(proc.stderr.strip().splitlines()) == 1 and "no CUDA device" in proc.stderr


def test_doctor_estimate_benchmark_prints_a_ratio_per_case():
    # benchmarks/doctor_estimate.py on one small case: a JSON line with both times and their
    # ratio, then the summary over the cases run (the ratio's value is the machine's).
    script = ROOT / "benchmarks" / "doctor_estimate.py"
    proc = subprocess.run([sys.executable, str(script), "healthy_moons"], capture_output=True,
                          text=True, timeout=300, env=_env(), cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row, summary = (json.loads(line) for line in proc.stdout.strip().splitlines())
    assert row["case"] == "healthy_moons"
    for key in ("estimate_s", "one_run_s", "ratio"):
        _positive(row[key], key)
    assert row["ratio"] == pytest.approx(row["estimate_s"] / row["one_run_s"], abs=0.02)
    assert summary["summary"]["cases"] == 1 and summary["summary"]["median"] == row["ratio"]
