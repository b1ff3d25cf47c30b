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

__all__ = ["applied_patch_lines", "change_lines", "code_change_lines"]


def change_lines(config: Config, patch: dict[str, Any]) -> list[str]:
    """``key: old → new`` for each field ``patch`` changes in ``config`` (unchanged keys left
    out)."""
    settings = to_dict(config)
    return [change_line(k, lookup(settings, k), v) for k, v in changed(patch, settings).items()]


def code_change_lines(result: Any) -> list[str]:
    """The code changes a user's model needs (``result.code_changes``), stated plainly:
    the doctor does not try them (it cannot edit ``forward``), and where the primary
    finding has no other repair it says the run is not repaired without one."""
    changes = getattr(result, "code_changes", None) or []
    if not changes:
        return []
    only = not result.chosen and bool(result.findings) and set(result.findings[0].repairs) <= {
        c["repair"] for c in changes}
    head = ("\nnot repaired: the fix is a change to your model's code, which the doctor does "
            "not make; make it yourself:" if only else
            "\ncode changes the doctor does not make (your model's forward), if needed:")
    return [head] + [f"  {c['finding']}: {c['change']}" for c in changes]


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
    lines += code_change_lines(result)
    if not result.chosen:
        if result.trials:
            lines.append("no repair kept: the config is unchanged")
        return lines
    settings = to_dict(config)
    lines.append(f"\napplied patch ({result.chosen}), the lines repaired.toml changes:")
    lines += [f"  {line}" if line else "" for line in toml_lines(changed(result.patch, settings))]
    lines.append(f"repaired config: {path}  (rerun: trainwell train {path})")
    return lines
