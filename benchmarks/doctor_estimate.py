"""How well the doctor's short look estimates one run of a config (its time budget's unit).

For every case in ``cases/`` (or those named): the doctor's short look of the broken config
(``d`` epochs with dense probes, built as ``trainwell doctor`` builds it), its estimate of
one ``trainwell train`` (:func:`trainwell.cli.repair_loop.one_run_seconds_estimate`), and
one run measured the way ``trainwell doctor --cases`` measures it (the median of three runs,
two before the short look and one after, each writing its run folder and report). Prints
one JSON line per case (``ratio`` = estimate / measured) and a summary line: the ratio's
median, min, max and standard deviation. 1 torch thread.

Usage: OMP_NUM_THREADS=1 python benchmarks/doctor_estimate.py [CASE ...] [--cases cases]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from trainwell.cli import doctor as doctor_cli
from trainwell.cli import repair_loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="cases to run (default: all)")
    parser.add_argument("--cases", default="cases", help="the cases folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = Path(args.cases)
    ratios = []
    for case in doctor_cli.load_cases(folder):
        if args.names and case["name"] not in args.names:
            continue
        config = doctor_cli._case_config(folder, case)
        with tempfile.TemporaryDirectory(prefix="trainwell-estimate-") as tmp:
            runs = doctor_cli._timed_runs(config, 2, Path(tmp))
            short = repair_loop.diagnostic_epochs(config)
            session = repair_loop._Builder().session(config, short)
            session.train_to(short)
            repair_loop._time_folder_writes(session)
            estimate = repair_loop.one_run_seconds_estimate(session, config.train.epochs)
            runs += doctor_cli._timed_runs(config, 1, Path(tmp))
        measured = sorted(w for w, _ in runs)[1]
        ratios.append(estimate / measured)
        print(json.dumps({"case": case["name"], "estimate_s": round(estimate, 3),
                          "one_run_s": round(measured, 3), "ratio": round(ratios[-1], 2)}),
              flush=True)
    if ratios:
        print(json.dumps({"summary": {
            "cases": len(ratios), "median": round(statistics.median(ratios), 2),
            "min": round(min(ratios), 2), "max": round(max(ratios), 2),
            "sd": round(statistics.pstdev(ratios), 3), "threads": torch.get_num_threads()}}))


if __name__ == "__main__":
    main()
