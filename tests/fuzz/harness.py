"""The fuzz harness: run one hostile input through the real code path and classify it.

Allowed outcomes are ``ok`` (a clean run) and ``clean_error`` (exit 2 with one line
``error: ...`` and the output folder untouched, or a :class:`UserError` from a loader).
Everything else is a finding: ``traceback`` (any other exception, which the CLI's top-level
guard would have to catch), ``hang`` (past the time limit), ``multi_line`` (an error of
more than one line), ``dirty_folder`` (a refused run that changed its output folder) and
``internal`` (an error line that is the guard's). The tests and
``benchmarks/reliability.py`` share these functions, so the table counts what CI checks.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import random
import signal
import struct
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainwell.cli import main
from trainwell.errors import UserError

ALLOWED = ("ok", "clean_error")
TINY = ["--set", "data.source=synthetic", "--set", "data.num_samples=120", "--set",
        "model.depth=1", "--set", "model.width=8", "--set", "train.epochs=1", "--set",
        "train.batch_size=32", "--set", "train.threads=1", "--set", "name=fuzz"]


@dataclass(frozen=True)
class Outcome:
    """What one input did: its kind (see the module doc) and a line of evidence."""

    kind: str
    detail: str = ""


class Hang(Exception):
    """Raised by the alarm when an input runs past its time limit."""


@contextlib.contextmanager
def time_limit(seconds: int):
    """Raise :class:`Hang` in the main thread after ``seconds`` (SIGALRM)."""
    def on_alarm(signum, frame):
        raise Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def snapshot(folder: Path | None) -> dict[str, bytes] | None:
    """Every file under ``folder`` with its bytes, or ``None`` when it does not exist."""
    if folder is None or not folder.exists():
        return None
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _finding(e: BaseException) -> Outcome:
    if isinstance(e, Hang):
        return Outcome("hang", str(e))
    where = traceback.extract_tb(e.__traceback__)[-1]
    return Outcome("traceback", f"{type(e).__name__} at {Path(where.filename).name}:"
                                f"{where.lineno}: {str(e)[:200]}")


def run_cli(argv: list[str], out: Path | None = None, timeout_s: int = 120) -> Outcome:
    """``trainwell.cli.main(argv)`` in-process; ``out`` is the folder that must stay untouched."""
    before = snapshot(out)
    err = io.StringIO()
    try:
        with time_limit(timeout_s), contextlib.redirect_stderr(err), \
                contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(argv)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 2
    except BaseException as e:  # noqa: BLE001 - any of them is the finding
        if isinstance(e, KeyboardInterrupt) and not isinstance(e, Hang):
            raise
        return _finding(e)
    lines = [line for line in err.getvalue().splitlines() if not line.startswith("warning:")]
    if code == 0:
        return Outcome("ok")
    if "internal error" in err.getvalue():
        return Outcome("internal", lines[0] if lines else "")
    if code != 2 or len(lines) != 1 or not lines[0].startswith("error: "):
        return Outcome("multi_line", f"exit {code}: {err.getvalue()[:300]!r}")
    if snapshot(out) != before:
        return Outcome("dirty_folder", lines[0])
    return Outcome("clean_error", lines[0])


def call(fn: Callable[[], object], timeout_s: int = 60) -> Outcome:
    """Run a loader or restore; a one-line UserError is clean, anything else a finding."""
    try:
        with time_limit(timeout_s):
            fn()
    except UserError as e:
        text = str(e)
        return Outcome("clean_error", text) if "\n" not in text else Outcome("multi_line", text)
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, KeyboardInterrupt) and not isinstance(e, Hang):
            raise
        return _finding(e)
    return Outcome("ok")


# ------------------------------------------------------------------ hostile values

HOSTILE_VALUES = ["1e308", "-1e308", "inf", "-inf", "nan", "0", "-1", "1", "2", "3", "0.5",
                  "1e-300", "1e9", "99999999999999999999", "true", "false", '""', '"x"',
                  "[1e9]", "[16, 16]", "[]", "[[[[1]]]]", "{a = 1}", "{noise = inf}", "none",
                  '"relu"', '"sgd"', '"' + "a" * 300 + '"', '"a/b"', '"\\u0000"', "x = 1",
                  "[" * 400 + "]" * 400]


def set_strings(rng: random.Random, fields: list[str], n: int) -> list[str]:
    """``n`` ``--set FIELD=VALUE`` strings: real fields, hostile and ordinary values."""
    out = []
    for _ in range(n):
        field = rng.choice(fields) if rng.random() < 0.95 else rng.choice(["", "a..b", "model."])
        sep = "=" if rng.random() < 0.97 else ""
        out += ["--set", f"{field}{sep}{rng.choice(HOSTILE_VALUES)}"]
    return out


# ------------------------------------------------------------------ byte mutations

_SPECIAL_F32 = [struct.pack(">f", v) for v in (math.nan, math.inf, -math.inf, 3e38)]


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One random mutation of ``data``: bit flips, truncation, a header edit, a value edit."""
    kind = rng.choice(["bit_flip", "truncate", "header_edit", "value_edit", "append"])
    b = bytearray(data)
    if not b:
        return "append", bytes(rng.randrange(256) for _ in range(8))
    if kind == "bit_flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        b = b[: rng.randrange(len(b))]
    elif kind == "header_edit":  # an int32 in the first 64 bytes: counts, dims, offsets
        i = rng.randrange(0, max(1, min(len(b), 64) - 3))
        value = rng.choice([-1, 0, 2**31 - 1, -(2**31), rng.randrange(2**31), 10**9])
        b[i:i + 4] = struct.pack(">i", value)[: len(b[i:i + 4])]
    elif kind == "value_edit":
        i = rng.randrange(len(b))
        patch = rng.choice(_SPECIAL_F32)
        b[i:i + 4] = patch[: len(b[i:i + 4])]
    else:
        b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    return kind, bytes(b)


def mutate_json(meta: object, rng: random.Random) -> object:
    """A copy of a checkpoint's JSON with one value deleted, retyped or made absurd."""
    meta = json.loads(json.dumps(meta))
    paths: list[tuple[object, object]] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for k in node:
                paths.append((node, k))
                walk(node[k])
        elif isinstance(node, list):
            for i in range(len(node)):
                paths.append((node, i))
                walk(node[i])

    walk(meta)
    if not paths:
        return rng.choice([None, [], "x", 1])
    parent, key = rng.choice(paths)
    choice = rng.choice(["delete", "abc", "neg", "huge", "null", "list", "float", "bool"])
    if choice == "delete" and isinstance(parent, dict):
        del parent[key]
    else:
        parent[key] = {"delete": None, "abc": "abc", "neg": -1, "huge": 10**30, "null": None,
                       "list": [], "float": 1.5, "bool": True}[choice]  # type: ignore[index]
    return meta
