"""What ``trainwell doctor`` prints about the repairs: each change tried and the applied patch.

The doctor's trials carry their patches as dotted config keys (``{"optim.lr": 0.05}``); here
they are shown against the config the user gave, in config terms: ``optim.lr: 10 → 0.05``
per repair tried, then the kept patch as the TOML lines that ``repaired.toml`` changed and
where that file was written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Config, to_dict
from ..doctor.wording import change_line, changed, lookup, toml_lines

__all__ = ["applied_patch_lines", "change_lines"]


def change_lines(config: Config, patch: dict[str, Any]) -> list[str]:
    """``key: old → new`` for each field ``patch`` changes in ``config`` (unchanged keys left
    out)."""
    settings = to_dict(config)
    return [change_line(k, lookup(settings, k), v) for k, v in changed(patch, settings).items()]


def applied_patch_lines(config: Config, result: Any, out: Path) -> list[str]:
    """Terminal lines after the trial table: the change each repair tried, the applied patch
    as TOML, and where ``repaired.toml`` is.

    Args:
        config: the config the doctor was given.
        result: the :class:`~trainwell.cli.repair_loop.DoctorResult`.
        out: the doctor's output folder.
    """
    lines: list[str] = []
    if result.trials:
        lines.append("\nchanges tried:")
        width = max(len(str(t.repair)) for t in result.trials)
        for t in result.trials:
            changes = "; ".join(change_lines(config, t.patch)) or "(no change)"
            lines.append(f"  {str(t.repair):<{width}}  {changes}")
    path = out / "repaired.toml"
    if not result.chosen:
        if result.trials:
            lines.append("no repair kept: the config is unchanged")
        return lines
    settings = to_dict(config)
    lines.append(f"\napplied patch ({result.chosen}), the lines repaired.toml changes:")
    lines += [f"  {line}" if line else "" for line in toml_lines(changed(result.patch, settings))]
    lines.append(f"repaired config: {path}  (rerun: trainwell train {path})")
    return lines
