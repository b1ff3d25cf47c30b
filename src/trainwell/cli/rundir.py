"""Run-folder safety: claim a folder, never touch a foreign file, refuse a changed resume.

The CLI calls these around a run (see each function):

- :func:`choose_run_dir` when the command starts (writes nothing): the default
  ``runs/NAME`` that already holds a run moves on to ``runs/NAME-2`` (and says so); any
  other non-empty folder is refused.
- :func:`claim_run_dir` after every check, before the run's first file: the folder is
  created (or an empty one taken) with a manifest, ``.trainwell-run.json``.
- :func:`record_created` when a run ends: the manifest lists every file the run made.
- :func:`after_failure` when a run fails after the claim: a folder with a checkpoint is
  kept for ``--resume``; otherwise the files the run created are removed, nothing else.
- :func:`resume_config` for ``--resume RUN [--set ...]``: a change to anything the
  checkpoint depends on is refused, naming the field, before any file is written.
- :func:`run_guarded` around the whole command: any exception that is not a
  :class:`~trainwell.errors.UserError` becomes one line and a hint to rerun with ``--debug``.
"""

from __future__ import annotations

import json
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from ..config import Config, load_config, to_dict
from ..errors import UserError
from ..train.checkpoint import atomic_write_text, clean_leftovers, latest_checkpoint

__all__ = ["MANIFEST", "choose_run_dir", "claim_run_dir", "record_created", "created_files", "remove_created",
           "after_failure", "changed_fields", "check_resume_config", "resume_config",
           "run_guarded", "RESUME_SAFE_FIELDS"]

MANIFEST = ".trainwell-run.json"
# Fields a resume may change: none of them is read into the checkpoint's state or decides
# the next step's arithmetic (threads change speed, not results, in deterministic mode).
RESUME_SAFE_FIELDS = frozenset({"name", "device", "train.threads", "train.checkpoint_every",
                                "train.checkpoint_every_steps"})
_MAX_FRESH = 1_000  # runs/NAME-2 .. runs/NAME-1000; past that the user should clean up
# What trainwell writes in a run folder: the only names it ever deletes.
_TMP_NAME = re.compile(r"^\.[\w.-]+\.\w+\.tmp$")
_OURS = re.compile(r"^(\.[\w.-]+\.\w+\.tmp|[\w.-]+\.(toml|json|jsonl|html|png|md|safetensors))$")


def _manifest(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) and data.get("tool") == "trainwell" else None


def _write_manifest(folder: Path, made_folder: bool, files: list[str]) -> None:
    atomic_write_text(folder / MANIFEST, json.dumps(
        {"tool": "trainwell", "made_folder": made_folder, "files": files}) + "\n")


def _unstarted(folder: Path) -> bool:
    """Empty, or claimed by a run killed before its first file (manifest and .tmp only)."""
    rest = [p for p in folder.iterdir() if p.name != MANIFEST and not _TMP_NAME.match(p.name)]
    return not rest and (_manifest(folder) is not None or not any(folder.iterdir()))


def choose_run_dir(out: str | Path, *, default: bool) -> tuple[Path, str | None]:
    """The folder a new run will write to, and a note when it is not ``out``; writes nothing.

    Args:
        out: the folder asked for (``--out``, or ``runs/NAME`` by default).
        default: ``out`` came from the config's name, not from ``--out``; an earlier run
            there is kept and the run goes to the first free ``runs/NAME-K`` instead.

    Returns:
        ``(folder, note)``: note is ``None``, or one line for the user saying which folder
        was chosen and why.

    Raises:
        UserError: ``out`` is a file, holds an earlier run (with ``--out``), or holds files
            trainwell did not write.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder; choose another --out")
    if not out.exists() or _unstarted(out):
        return out, None
    if default:
        for k in range(2, _MAX_FRESH + 1):
            fresh = out.with_name(f"{out.name}-{k}")
            if not fresh.exists() or (fresh.is_dir() and _unstarted(fresh)):
                return fresh, (f"note: {out} holds an earlier run, kept; this run writes to "
                               f"{fresh}")
        raise UserError(f"{out}: {out.name}-2 .. {out.name}-{_MAX_FRESH} are all taken; "
                        "delete old runs or set another name")
    if _manifest(out) is not None:
        raise UserError(f"--out {out}: holds an earlier trainwell run; continue it with --resume "
                        f"{out}, or choose another --out")
    first = sorted(p.name for p in out.iterdir())[0]
    raise UserError(f"--out {out}: holds files trainwell did not write ({first}, ...); choose an "
                    "empty or new folder")


def claim_run_dir(out: str | Path) -> Path:
    """Create (or take the empty) ``out`` for a new run and write its manifest.

    Call it once every check has passed, just before the run's first file, so a refused
    run leaves nothing behind.

    Raises:
        UserError: as :func:`choose_run_dir` with ``default=False`` (``out`` filled up
            since it was chosen, or was never checked).
    """
    out, _ = choose_run_dir(out, default=False)
    earlier = _manifest(out) if out.exists() else None
    made = not out.exists() or bool(earlier and earlier.get("made_folder"))
    out.mkdir(parents=True, exist_ok=True)
    clean_leftovers(out)  # .tmp files of a run killed before its first file
    _write_manifest(out, made, [])
    return out


def created_files(out: str | Path) -> list[Path]:
    """Files in a claimed run folder that trainwell wrote (by name, never the manifest)."""
    out = Path(out)
    if _manifest(out) is None:
        return []
    found = []
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out)
        if path.is_file() and not path.is_symlink() and path.name != MANIFEST \
                and len(rel.parts) <= 2 and _OURS.match(path.name):
            found.append(path)
    return found


def record_created(out: str | Path) -> None:
    """Write the manifest's list of the files the run created (call when the run ends)."""
    out = Path(out)
    manifest = _manifest(out)
    if manifest is None:
        return  # not a folder this run claimed (e.g. a resumed run from before manifests)
    files = [str(p.relative_to(out)) for p in created_files(out)]
    _write_manifest(out, bool(manifest.get("made_folder")), files)


def remove_created(out: str | Path) -> list[Path]:
    """Delete the files trainwell created in ``out``, then empty folders it made; return them.

    A folder without trainwell's manifest is left alone entirely.
    """
    out = Path(out)
    manifest = _manifest(out)
    if manifest is None:
        return []
    listed = {out / str(f) for f in manifest.get("files", []) if isinstance(f, str)}
    removed = []
    for path in sorted(set(created_files(out)) | {p for p in listed if p.is_file()}):
        if out.resolve() in path.resolve().parents:  # a listed "../x" stays where it is
            path.unlink(missing_ok=True)
            removed.append(path)
    for sub in sorted((p for p in out.iterdir() if p.is_dir()), reverse=True):
        if not any(sub.iterdir()):
            sub.rmdir()
    (out / MANIFEST).unlink(missing_ok=True)
    if manifest.get("made_folder") is True and not any(out.iterdir()):
        out.rmdir()  # only a folder the run made: an empty folder the user gave stays
    return removed


def after_failure(out: str | Path) -> str:
    """Leave a failed run's folder resumable or remove what the run created; say which."""
    out = Path(out)
    clean_leftovers(out)
    if latest_checkpoint(out) is not None:
        return f"the run folder {out} is kept; continue it with trainwell train --resume {out}"
    if _manifest(out) is None:
        return f"the run folder {out} is left as it was"
    removed = remove_created(out)
    return f"removed the {len(removed)} files this run had written to {out}"


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and key not in ("options", "params"):
            flat.update(_flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def changed_fields(saved: Config, new: Config) -> list[tuple[str, Any, Any]]:
    """``(field, saved value, new value)`` for every field that differs, in schema order."""
    a, b = _flatten(to_dict(saved)), _flatten(to_dict(new))
    return [(k, a.get(k), b.get(k)) for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]


def check_resume_config(saved: Config, new: Config) -> None:
    """Refuse a resume whose config changes anything the checkpoint depends on.

    Everything but :data:`RESUME_SAFE_FIELDS` shapes the model, the optimizer's state, the
    data order or the schedule, so a change would fail deep in the run (``KeyError:
    'momentum'``) or, worse, quietly continue a different run.

    Raises:
        UserError: naming the first such field, its saved and its new value.
    """
    for field, old, value in changed_fields(saved, new):
        if field not in RESUME_SAFE_FIELDS:
            raise UserError(f"--resume: {field} was {old!r} in the run and would become {value!r};"
                            " the checkpoint depends on it — resume without that --set, or start "
                            "a new run with --out")


def resume_config(run_dir: str | Path, overrides: Iterable[str] = ()) -> Config:
    """The config to resume ``run_dir`` with: its own ``config.toml`` plus safe overrides.

    Nothing is written; call it before anything else touches the folder.

    Raises:
        UserError: no ``config.toml`` there, or an override that :func:`check_resume_config`
            refuses.
    """
    run_dir = Path(run_dir)
    saved_path = run_dir / "config.toml"
    if not saved_path.is_file():
        raise UserError(f"--resume {run_dir}: no config.toml there; give the folder of a run "
                        "made by trainwell train")
    saved = load_config(saved_path)
    overrides = list(overrides)
    if not overrides:
        return saved
    new = load_config(saved_path, overrides)
    check_resume_config(saved, new)
    return new


def run_guarded(command: Callable[[], int], *, debug: bool = False,
                stream: TextIO | None = None) -> int:
    """Run ``command``; turn an unexpected exception into one line and exit code 1.

    A :class:`~trainwell.errors.UserError`, ``SystemExit`` and ``KeyboardInterrupt`` pass
    through (the CLI already answers them). Anything else is a trainwell bug: the user sees
    its type, its first line and where to get the traceback. With ``debug`` it propagates.

    Returns:
        ``command()``'s result, or 1 after an unexpected exception.
    """
    try:
        return command()
    except (UserError, SystemExit, KeyboardInterrupt):
        raise
    except BaseException as e:
        if debug:
            raise
        where = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
        at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
        first = (str(e).splitlines() or [""])[0][:200]
        print(f"error: internal error {type(e).__name__}{at}: {first}; rerun with --debug for "
              "the traceback and report it", file=stream if stream is not None else sys.stderr)
        return 1
