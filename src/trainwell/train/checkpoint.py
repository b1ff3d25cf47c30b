"""Checkpoints: safetensors for every tensor, JSON for the rest, written atomically.

A checkpoint of epoch ``E`` is two files in ``run_dir/checkpoints/``:

- ``epoch-EEEE.safetensors``: the model's state (``model/<name>``) and every tensor of the
  optimizer's state (``optim/<param index>/<key>``), plus any extra tensors the trainer
  saves (a mid-epoch checkpoint's random-number-generator states, ``rng/...``);
- ``epoch-EEEE.json``: everything else (optimizer hyperparameters and scalar state, the
  trainer's counters and history, callback and schedule state) plus the SHA-256 of the
  tensor file.

A mid-epoch checkpoint, taken after global optimizer step ``S`` while epoch ``E + 1`` runs
(``E`` epochs done), is named ``epoch-EEEE_step-SSSSSSSS``. Checkpoints are ordered by
``(E, S)``, an epoch-end checkpoint of ``E`` before every mid-epoch one of ``E`` (which
come after it in time), so the newest is the one a resume takes.

Each file is written to a temporary name, flushed to disk and renamed into place, and the
JSON goes last: a checkpoint exists only once its JSON does, so a run killed at any moment
leaves either a whole checkpoint or none. Loading checks the hash, the names and the shapes
and turns any mismatch into one :class:`~trainwell.errors.UserError` line. Nothing is ever
unpickled.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import UserError

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "atomic_write_text",
    "apply_model_state",
    "apply_optimizer_state",
    "clean_leftovers",
]

_NAME = re.compile(r"^epoch-(\d+)(?:_step-(\d+))?\.json$")
FORMAT_VERSION = 1


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never half."""
    _atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _file_mode() -> int:
    """The mode ``open()`` would give a new file: 0o666 less the process's umask.

    ``mkstemp`` creates files 0o600 whatever the umask, so a run folder shared with a group
    would hold files only their writer can read.
    """
    mask = os.umask(0)  # the only portable way to read the umask is to set it
    os.umask(mask)
    return 0o666 & ~mask


def _atomic_write(path: Path, write: Callable[[str], object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _file_mode())  # after: safetensors recreates the file it writes
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, pstate in state["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{idx}/{key}"] = value.detach().cpu().clone().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_checkpoint(run_dir: Path, epoch: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, extra: dict[str, Any], keep: int = 2, *,
                    step: int | None = None,
                    extra_tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the checkpoint of the completed epoch ``epoch`` and keep the newest ``keep``.

    Args:
        run_dir: the run folder; files go to ``run_dir/checkpoints``.
        epoch: number of completed epochs (1-based: ``epoch-0001`` after the first).
        model, optimizer: whose states are saved.
        extra: JSON-serializable trainer state (counters, history, callbacks, schedule).
        keep: how many checkpoints to keep; older ones are deleted after the new one exists.
        step: a mid-epoch checkpoint: the optimizer steps done (``epoch-EEEE_step-SSSSSSSS``);
            None for an epoch's end.
        extra_tensors: more tensors for the tensor file, named outside ``model/`` and
            ``optim/`` (e.g. ``rng/cpu/0``).

    Returns:
        The path of the JSON file (the checkpoint's name).
    """
    folder = Path(run_dir) / "checkpoints"
    stem = f"epoch-{epoch:04d}" if step is None else f"epoch-{epoch:04d}_step-{step:08d}"
    tensors = {f"model/{k}": v.detach().cpu().clone().contiguous()
               for k, v in model.state_dict().items()}
    optim_tensors, optim_rest = _split_optimizer_state(optimizer.state_dict())
    tensors.update(optim_tensors)
    for name, value in (extra_tensors or {}).items():
        if name.startswith(("model/", "optim/")) or name in tensors:
            raise ValueError(f"extra_tensors: {name!r} clashes with the model or optimizer state")
        tensors[name] = value.detach().cpu().clone().contiguous()
    tensor_path = folder / f"{stem}.safetensors"
    _atomic_write(tensor_path, lambda tmp: save_file(tensors, tmp))
    meta = {
        "format": FORMAT_VERSION,
        "epoch": epoch,
        "tensors": tensor_path.name,
        "sha256": _sha256(tensor_path),
        "model_keys": sorted(model.state_dict()),
        "optimizer": optim_rest,
        "trainer": extra,
    }
    json_path = folder / f"{stem}.json"
    atomic_write_text(json_path, json.dumps(meta))
    for old in _checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".safetensors").unlink(missing_ok=True)
    clean_leftovers(run_dir)  # the only writer of this folder: nothing else is mid-write
    return json_path


# Names this module (and atomic_write_text in a run folder) give to files in progress and
# to tensor files; nothing else is ever deleted.
_TMP = re.compile(
    r"^\.((epoch-\d+(_step-\d+)?|best)\.(json|safetensors)|[\w.-]+\.(toml|json|jsonl|html|csv))"
    r"\.\w+\.tmp$")
_TENSORS = re.compile(r"^epoch-(\d+)(?:_step-(\d+))?\.safetensors$")


def clean_leftovers(run_dir: Path) -> list[Path]:
    """Delete what killed writes left in a run folder; return the paths deleted.

    A kill during a write leaves a ``.NAME.XXXX.tmp`` file; a kill between a checkpoint's
    tensor file and its JSON leaves a tensor file no checkpoint names. Only files with
    exactly those names are deleted, in ``run_dir`` and ``run_dir/checkpoints``. Call it
    only when no other process writes the run (at resume, or by the run's own writer).
    """
    removed: list[Path] = []
    run_dir = Path(run_dir)
    for folder in (run_dir, run_dir / "checkpoints"):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            orphan = (_TENSORS.match(path.name) is not None
                      and not path.with_suffix(".json").exists())
            if (_TMP.match(path.name) or orphan) and path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed.append(path)
    return sorted(removed)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The JSON file of the newest checkpoint in ``run_dir/checkpoints``, or ``None``."""
    found = _checkpoints(Path(run_dir) / "checkpoints")
    return found[-1] if found else None


def _checkpoints(folder: Path) -> list[Path]:
    """The checkpoints' JSON files in ``folder``, oldest first (see the module docstring)."""
    def order(path: Path) -> tuple[int, int]:
        m = _NAME.match(path.name)
        assert m is not None
        return int(m.group(1)), -1 if m.group(2) is None else int(m.group(2))

    return sorted((p for p in folder.glob("epoch-*.json") if _NAME.match(p.name)), key=order)


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and verify a checkpoint; return ``(tensors, meta)``.

    Raises:
        UserError: the JSON is unreadable, the tensor file is missing or its SHA-256 does
            not match (a corrupt or truncated checkpoint).
    """
    path = Path(path)
    try:
        if path.stat().st_size > _MAX_JSON_BYTES:
            raise ValueError(f"larger than {_MAX_JSON_BYTES} bytes")
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise UserError(f"checkpoint {path}: unreadable ({type(e).__name__}); "
                        "delete it to resume from the previous one") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise UserError(f"checkpoint {path}: format {found!r} is not "
                        f"{FORMAT_VERSION}; it was written by another trainwell version")
    problem = _check_meta(meta)
    if problem:
        raise UserError(f"checkpoint {path}: {problem}; the file was edited or damaged — delete "
                        "it to resume from the previous one")
    tensor_path = path.parent / meta["tensors"]
    expected = meta["sha256"]
    if not tensor_path.is_file():
        raise UserError(f"checkpoint {path}: its tensor file {tensor_path.name} is missing; "
                        "delete the checkpoint to resume from the previous one")
    if _sha256(tensor_path) != expected:
        raise UserError(f"checkpoint {tensor_path}: corrupt (SHA-256 does not match the one "
                        "recorded); delete it to resume from the previous checkpoint")
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"checkpoint {tensor_path}: unreadable safetensors file ({e})") from None
    for name, value in tensors.items():
        # The trainer never applies a non-finite step, so a NaN here is damage, and resuming
        # from it would silently skip every step that follows.
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            count = int((~torch.isfinite(value)).sum())
            raise UserError(f"checkpoint {tensor_path}: tensor {name!r} holds {count} non-finite "
                            "values; delete the checkpoint to resume from the previous one")
    return tensors, meta


_MAX_JSON_BYTES = 256 << 20  # the JSON holds scalars and the history: a few MB at most
_TRAINER_FIELDS = {"epoch": int, "step": int, "skipped_steps": int, "history": list}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _check_meta(meta: Any) -> str | None:
    """What is wrong with a checkpoint's JSON, in words, or ``None`` when it is sound.

    Every value that resuming reads is checked here, so an edited JSON is one line and
    never a ``KeyError`` deep in the trainer.
    """
    if not isinstance(meta, dict):
        return f"holds a {type(meta).__name__}, not an object"
    tensors = meta.get("tensors")
    if not isinstance(tensors, str) or not (_TENSORS.match(tensors) or tensors == "best.safetensors"):
        return ("field 'tensors' is not the name of an epoch-NNNN.safetensors or "
                "best.safetensors file")
    if not isinstance(meta.get("sha256"), str):
        return "field 'sha256' is missing or not text"
    if not _is_int(meta.get("epoch")):
        return "field 'epoch' is missing or not a whole number >= 0"
    if tensors == "best.safetensors":  # best-model weights only (train.best): no optimizer
        return None
    optim = meta.get("optimizer")
    if not isinstance(optim, dict) or not isinstance(optim.get("param_groups"), list):
        return "field 'optimizer.param_groups' is missing or not a list"
    for group in optim["param_groups"]:
        if not isinstance(group, dict) or not isinstance(group.get("params"), list) \
                or not all(_is_int(i) for i in group["params"]):
            return "field 'optimizer.param_groups' holds a group without a list of param indices"
    scalars = optim.get("scalars")
    if not isinstance(scalars, dict) or not all(
            k.isdigit() and isinstance(v, dict) for k, v in scalars.items()):
        return "field 'optimizer.scalars' is not a table of parameter indices"
    trainer = meta.get("trainer")
    if not isinstance(trainer, dict):
        return "field 'trainer' is missing or not an object"
    if trainer and any(k in trainer for k in _TRAINER_FIELDS):  # {}: no trainer state saved
        for key, kind in _TRAINER_FIELDS.items():
            value = trainer.get(key)
            if not (_is_int(value) if kind is int else isinstance(value, kind)):
                return f"field 'trainer.{key}' is missing or not a {kind.__name__}"
        if not all(isinstance(h, dict) for h in trainer["history"]):
            return "field 'trainer.history' holds an entry that is not an object"
        if "seed" in trainer and not _is_int(trainer["seed"]):
            return "field 'trainer.seed' is not a whole number >= 0"
        if not isinstance(trainer.get("plateau"), dict | None):
            return "field 'trainer.plateau' is not an object"
        callbacks = trainer.get("callbacks", [])
        if not isinstance(callbacks, list) or not all(isinstance(c, dict | None) for c in callbacks):
            return "field 'trainer.callbacks' is not a list of objects"
        if trainer.get("position") is not None:
            return _check_position(trainer["position"])
    return None


def _is_number(value: Any) -> bool:
    # NaN and ±Inf are legal: a skipped step's loss is logged as it was.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_position(position: Any) -> str | None:
    """What is wrong with a mid-epoch checkpoint's position (``trainer.position``), or None."""
    if not isinstance(position, dict):
        return "field 'trainer.position' is not an object"
    for key in ("batch", "world_size"):
        if not _is_int(position.get(key)) or position[key] < 1:
            return f"field 'trainer.position.{key}' is missing or not a whole number >= 1"
    logs = position.get("logs")
    if not isinstance(logs, list) or len(logs) != position["world_size"]:
        return "field 'trainer.position.logs' is not a list of one log per process"
    for log in logs:
        where = "trainer.position.logs[]"
        if not isinstance(log, dict):
            return f"field '{where}' holds an entry that is not an object"
        for key in ("losses", "penalties", "norms"):
            if not isinstance(log.get(key), list) or not all(_is_number(v) for v in log[key]):
                return f"field '{where}.{key}' is not a list of numbers"
        for key in ("sizes", "step_sizes"):
            if not isinstance(log.get(key), list) or not all(_is_int(v) for v in log[key]):
                return f"field '{where}.{key}' is not a list of whole numbers"
        if len(log["sizes"]) != len(log["losses"]):
            return f"fields '{where}.losses' and '.sizes' differ in length"
        if log.get("correct") is not None and not _is_int(log["correct"]):
            return f"field '{where}.correct' is not a whole number"
        if log.get("loss_dtype") not in (None, "float16", "bfloat16", "float32", "float64"):
            return f"field '{where}.loss_dtype' is not a float dtype"
    return None


def _kind(value: Any) -> str:
    """The JSON kind of a hyperparameter: a saved value must keep its kind."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return type(value).__name__
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


def _check_groups(saved: list[dict[str, Any]], own: list[dict[str, Any]]) -> str | None:
    """Why the saved param groups cannot drive this optimizer, or ``None``."""
    if len(saved) != len(own):
        return f"{len(saved)} parameter groups saved, the optimizer has {len(own)}"
    for i, (group, mine) in enumerate(zip(saved, own)):
        missing = sorted(set(mine) - set(group))
        if missing:
            return f"group {i} lacks {missing[0]!r} (another optimizer or version)"
        for key, value in group.items():
            if key == "params" or key not in mine:
                continue
            if _kind(value) != _kind(mine[key]):
                return f"group {i} has {key} = {value!r} where {_kind(mine[key])} belongs"
            values = value if isinstance(value, list | tuple) else [value]
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                return f"group {i} has {key} = {value!r}, not finite"
    return None


def apply_model_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load the ``model/*`` tensors into ``model`` after checking names and shapes.

    Raises:
        UserError: a missing or unexpected parameter, or a shape that differs — the
            checkpoint comes from another model.
    """
    state = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise UserError(f"checkpoint {source}: it is from another model ({what}); resume with "
                        "the config the run was made with")
    for name, value in sorted(state.items(), key=lambda kv: list(own).index(kv[0])):
        if tuple(value.shape) != tuple(own[name].shape):
            raise UserError(
                f"checkpoint {source}: parameter {name!r} has shape {tuple(value.shape)} but the "
                f"model has {tuple(own[name].shape)}; resume with the config the run was made with")
    model.load_state_dict(state)


def apply_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                          meta: dict[str, Any], source: str) -> None:
    """Rebuild the optimizer's state dict from a checkpoint and load it."""
    rest = meta["optimizer"]
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, idx, name = (key.split("/", 2) + ["", ""])[:3]
            if not idx.isdigit() or not name:
                raise UserError(f"checkpoint {source}: tensor {key[:80]!r} is not optim/INDEX/NAME; "
                                "the file was edited or damaged")
            state.setdefault(int(idx), {})[name] = value
    for idx, scalars in rest["scalars"].items():
        state.setdefault(int(idx), {}).update(scalars)
    groups = rest["param_groups"]
    problem = _check_groups(groups, optimizer.state_dict()["param_groups"])
    if problem is None:
        bad = [(i, k) for i, sc in rest["scalars"].items() for k, v in sc.items()
               if _kind(v) != "number" or not math.isfinite(v)]
        problem = f"state {bad[0][0]} has {bad[0][1]} that is not a finite number" if bad else None
    if problem is not None:
        raise UserError(f"checkpoint {source}: optimizer state does not fit ({problem}); resume "
                        "with the config the run was made with")
    for group in groups:  # JSON turns tuples into lists; optimizers expect tuples
        for k, v in group.items():
            if isinstance(v, list) and k != "params":
                group[k] = tuple(v)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError, TypeError, IndexError) as e:
        raise UserError(f"checkpoint {source}: optimizer state does not fit ({e}); resume with "
                        "the config the run was made with") from None
