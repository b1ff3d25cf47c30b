"""The reliability table: hostile inputs through the real code paths, kills, corrupt checkpoints.

Runs the fuzz families of ``tests/fuzz`` (``--set`` strings and config files through the
CLI in-process, mutated IDX/NPZ/CIFAR files through the loaders, damaged checkpoints through
resume, tiny trainings with hostile overrides) with a seeded RNG, then SIGKILLs real runs at
uniform times and during checkpoint writes and resumes them (``tests/faults/killing.py``).
Prints the markdown table of benchmarks/RESULTS.md ("Reliability").

Usage: python benchmarks/reliability.py [--scale 1] [--kills 10] [--write-kills 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import time
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(_TESTS / "fuzz"), str(_TESTS / "faults")]

from families import (  # noqa: E402
    NPZ_EDITS,
    checkpoint_case,
    cifar_case,
    idx_case,
    npz_case,
    train_case,
    train_checkpointed,
)
from harness import run_cli, set_strings  # noqa: E402
from killing import kill_and_resume, reference  # noqa: E402
from test_config_fields import LEAVES  # noqa: E402

FIELDS = [p for p, _ in LEAVES]
ROW_KINDS = ("ok", "clean_error", "traceback", "internal", "multi_line", "dirty_folder", "hang")


def _fuzz(rng: random.Random, scale: int, checkpoint_dir: Path) -> dict[str, collections.Counter]:
    families = {
        "--set strings (config show)": (300, lambda: (run_cli(
            ["config", "show", *set_strings(rng, FIELDS, rng.randint(1, 3))], timeout_s=20), False)),
        "tiny trainings with hostile --set": (30, lambda: train_case(rng, FIELDS)),
        "IDX files (plain and .gz)": (150, lambda: idx_case(rng, rng.random() < 0.5)),
        "NPZ files": (150, lambda: npz_case(rng, rng.choice(NPZ_EDITS), rng.random() < 0.5)),
        "CIFAR-10 batches (bin and pickle)": (80, lambda: cifar_case(rng, rng.choice(["bin", "py"]))),
        "checkpoints (JSON and tensors)": (120, lambda: checkpoint_case(
            checkpoint_dir, rng, rng.choice(["json", "tensors"]), rng.random() < 0.5)),
    }
    counts: dict[str, collections.Counter] = {}
    for name, (n, case) in families.items():
        c = collections.Counter()
        for _ in range(n * scale):
            outcome, bad = case()
            c[outcome.kind] += 1
            c["silently_accepted"] += int(bad and outcome.kind == "ok")
            if outcome.kind not in ("ok", "clean_error"):
                print(f"FINDING [{name}] {outcome}", file=sys.stderr)
        counts[name] = c
    return counts


def main() -> None:
    """Run everything and print the table (findings go to stderr as they happen)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1, help="multiply every fuzz count")
    parser.add_argument("--kills", type=int, default=10, help="kills at uniform times")
    parser.add_argument("--write-kills", type=int, default=5, help="kills during checkpoint writes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        counts = _fuzz(rng, args.scale, train_checkpointed(tmp_path / "ckpt"))
        ref, wall_s = reference(tmp_path / "ref")
        trials = []
        for k in range(args.kills + args.write_kills):
            at_write = k >= args.kills
            out = tmp_path / f"kill-{k}"
            trials.append(kill_and_resume(out, ref, rng.uniform(0, wall_s) if not at_write
                                          else wall_s, at_write=at_write))
    print("| inputs | tried | clean runs | clean errors | tracebacks | hangs | other findings "
          "| silently accepted bad inputs |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    total = collections.Counter()
    for name, c in counts.items():
        tried = sum(c[k] for k in ROW_KINDS)
        other = c["internal"] + c["multi_line"] + c["dirty_folder"]
        print(f"| {name} | {tried} | {c['ok']} | {c['clean_error']} | {c['traceback']} | "
              f"{c['hang']} | {other} | {c['silently_accepted']} |")
        total.update(c)
    tried = sum(total[k] for k in ROW_KINDS)
    other = total["internal"] + total["multi_line"] + total["dirty_folder"]
    print(f"| **all** | {tried} | {total['ok']} | {total['clean_error']} | {total['traceback']} | "
          f"{total['hang']} | {other} | {total['silently_accepted']} |")
    print()
    phases = collections.Counter(t.phase for t in trials)
    identical = sum(t.identical for t in trials)
    leftovers = sum(bool(t.leftovers) for t in trials)
    print(f"Kills: {len(trials)} ({args.kills} at uniform times over the {wall_s:.1f} s run, "
          f"{args.write_kills} during checkpoint writes); landed {dict(phases)}; "
          f"{identical}/{len(trials)} bit-identical after resume; {leftovers} left .tmp files.")
    print(f"Wall time {time.monotonic() - started:.0f} s.")


if __name__ == "__main__":
    main()
