"""Reading, overriding, patching and writing configs.

``load_config(path, ["optim.lr=3e-4"])`` reads TOML, applies ``--set`` overrides (values
parsed as TOML, so ``[64, 64]``, ``true`` and ``"x"`` work; bare words are strings) and
validates. Every failure is one :class:`~trainwell.errors.UserError` line naming the field.
"""

from __future__ import annotations

import copy
import math
import stat
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import UserError
from .schema import Config

__all__ = ["load_config", "parse_overrides", "apply_patch", "to_toml", "validate", "to_dict"]


def _format_validation_error(err: ValidationError, where: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if p != "__root__")
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return (f"{where}{loc}: unknown field; check its spelling (trainwell config show "
                "lists every field)")
    named = msg.split(":")[0]
    if ":" in msg and "." in named and named.startswith(loc):  # a rule naming its own field
        return f"{where}{msg}"
    given = first.get("input")
    shown = "" if isinstance(given, dict | list) else f" (got {_short(given)})"
    return f"{where}{loc}: {msg}{shown}"


def _short(value: Any, limit: int = 60) -> str:
    # A 300-character name or a megabyte string must not flood the one error line.
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def validate(raw: Mapping[str, Any], where: str = "") -> Config:
    """Validate a plain dict into a :class:`Config`; errors become one UserError line."""
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise UserError(_format_validation_error(e, where)) from None


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word: take it as a string (e.g. optim.name=sgd)
    except RecursionError:
        raise UserError(f"--set: value nested too deeply ({text[:40]}...)") from None


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"--set {key}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", ...]`` into ``{"a.b": 1, ...}``; a malformed item is a UserError."""
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set optim.lr=3e-4")
        out[key] = _parse_value(text.strip())
    return out


def to_dict(config: Config) -> dict[str, Any]:
    """The config as a plain dict of TOML-ready values (aliases used, e.g. transfer.from)."""
    return config.model_dump(mode="json", by_alias=True)


def apply_patch(config: Config, patch: Mapping[str, Any], where: str = "") -> Config:
    """A new validated config with dotted keys set, e.g. ``{"model.init": "he_normal"}``."""
    raw = copy.deepcopy(to_dict(config))
    for key, value in patch.items():
        _set_dotted(raw, key, value)
    return validate(raw, where)


def load_config(path: str | Path | None, overrides: Iterable[str] = ()) -> Config:
    """Read a TOML config (or the defaults when ``path`` is None) and apply overrides."""
    raw: dict[str, Any] = {}
    where = ""
    if path is not None:
        p = Path(path)
        raw = _read_toml(p)
        where = f"{p}: "
        _resolve_paths(raw, p.parent)
    for key, value in parse_overrides(overrides).items():
        _set_dotted(raw, key, value)
    return validate(raw, where)


_FILE_SOURCES = ("idx:", "npz:", "cifar10:")


def _resolve_paths(raw: dict[str, Any], folder: Path) -> None:
    """Make a config file's relative paths relative to the file's folder, as users expect.

    ``data.source = "npz:digits.npz"`` in ``cases/a.toml`` means ``cases/digits.npz`` from any
    working directory; so does ``transfer.from``. ``~`` is expanded first. A config that names
    a ``model.target``/``data.target`` gets ``root`` = its folder, where those modules are
    looked up (unless it sets ``root`` itself). ``--set`` values stay relative to the working
    directory, like every other command-line path.
    """
    def resolve(path: str) -> str:
        expanded = Path(path).expanduser()
        return str(expanded if expanded.is_absolute() else (folder / expanded))

    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("source"), str):
        source = data["source"]
        for prefix in _FILE_SOURCES:
            if source.startswith(prefix) and len(source) > len(prefix):
                data["source"] = prefix + resolve(source[len(prefix):])
    transfer = raw.get("transfer")
    if isinstance(transfer, dict) and isinstance(transfer.get("from"), str):
        transfer["from"] = resolve(transfer["from"])
    wants_root = any(isinstance(raw.get(k), dict) and raw[k].get("target") is not None
                     for k in ("model", "data"))
    if wants_root and "root" not in raw:
        raw["root"] = str(folder.resolve())


_MAX_CONFIG_BYTES = 1 << 20  # a config is a few KB; a bigger "config" is the wrong file


def _read_toml(p: Path) -> dict[str, Any]:
    """Parse the TOML file ``p``; anything but a readable regular file is one UserError."""
    try:
        mode = p.stat().st_mode
    except (OSError, ValueError):
        raise UserError(f"config {p}: no such file; give the path of a TOML config "
                        "(trainwell config show > my.toml writes one)") from None
    if not stat.S_ISREG(mode):
        raise UserError(f"config {p}: not a regular file; give the path of a TOML config")
    try:
        with open(p, "rb") as f:
            data = f.read(_MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise UserError(f"config {p}: cannot be read ({e.strerror or type(e).__name__})") from None
    if len(data) > _MAX_CONFIG_BYTES:
        raise UserError(f"config {p}: larger than {_MAX_CONFIG_BYTES} bytes; a config is a few "
                        "KB of TOML, check the path")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"config {p}: not valid TOML ({e})") from None
    except RecursionError:
        raise UserError(f"config {p}: tables or arrays nested too deeply to read; a config "
                        "nests at most a few levels") from None


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_toml_value(x)}" for k, x in v.items()
                               if x is not None) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _toml_value(k)


def _write_table(lines: list[str], prefix: str, table: Mapping[str, Any]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict) or k in ("options", "params")}
    sections = {k: v for k, v in table.items() if isinstance(v, dict) and k not in ("options", "params")}
    if prefix:
        lines.append(f"\n[{prefix}]")
    for k, v in scalars.items():
        if v is None:
            lines.append(f"# {_key(k)} = (unset)")
        else:
            lines.append(f"{_key(k)} = {_toml_value(v)}")
    for k, v in sections.items():
        _write_table(lines, f"{prefix}.{k}" if prefix else k, v)


def to_toml(config: Config) -> str:
    """The fully resolved config as TOML that :func:`load_config` reads back identically."""
    lines: list[str] = ["# trainwell run configuration (fully resolved)"]
    _write_table(lines, "", to_dict(config))
    return "\n".join(lines) + "\n"
