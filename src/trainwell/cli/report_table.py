"""The final table of a run, printed with rich."""

from __future__ import annotations

from typing import Any

__all__ = ["print_run_summary"]


def print_run_summary(result: Any) -> None:
    """Print train/val/test loss and accuracy, epochs, wall time and throughput."""
    # rich is imported here, not at the top: it costs start-up time of every command
    from rich.console import Console
    from rich.table import Table

    s = result.summary
    table = Table(title=f"trainwell run: {s['name']}", title_justify="left")
    table.add_column("split")
    table.add_column("loss", justify="right")
    table.add_column("accuracy", justify="right")
    for split in ("train", "val", "test"):
        m = s["final"].get(split) or {}
        if not m:
            continue
        acc = f"{m['accuracy']:.4f}" if "accuracy" in m else "-"
        table.add_row(split, f"{m['loss']:.4f}", acc)
    console = Console()
    console.print(table)
    sps = s.get("samples_per_s")
    console.print(f"epochs {s['epochs']}  steps {s['steps']}  wall time {s['wall_time_s']:.1f} s  "
                  f"(training {s['fit_time_s']:.1f} s)  "
                  f"{sps:,.0f} samples/s  device {s['device']}  seed {s['seed']}"
                  + (f"  skipped steps {s['skipped_steps']}" if s["skipped_steps"] else ""))
    if result.run_dir is not None:
        console.print(f"run folder: {result.run_dir}")
