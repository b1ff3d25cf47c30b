"""One fuzz case per input family, shared by the hypothesis tests and the reliability table.

Each function builds a small valid input in its real format, damages it with ``rng`` and
runs it through the real code path, returning the :class:`harness.Outcome` and whether the
input was bad in a way that must be refused (then ``ok`` counts as silently accepted).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import pickle
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
from _formats import IDX_STEMS, cifar_bin_folder, idx_folder, npz_arrays, write_file
from harness import TINY, Outcome, call, mutate, mutate_json, run_cli, set_strings

import trainwell as tw
from trainwell.cli.runner import build_run
from trainwell.config import load_config
from trainwell.train.checkpoint import latest_checkpoint

NPZ_EDITS = ("bytes", "nan", "inf", "huge_label", "float_label", "shape", "regression_nan")
MUST_REFUSE = {"nan", "inf", "huge_label", "float_label", "regression_nan"}
CHECKPOINT_CONFIG = load_config(None, [
    "data.source=synthetic", "data.num_samples=120", "model.depth=1", "model.width=8",
    "train.epochs=1", "train.batch_size=32", "train.threads=1", "optim.name=momentum",
    "optim.momentum=0.9"])


def load(source: str, **options) -> None:
    """Load a data source as ``trainwell train`` would (seed 0, defaults)."""
    tw.data.load(source, seed=0, **options)


def idx_case(rng: random.Random, gz: bool) -> tuple[Outcome, bool]:
    """One mutated file of an MNIST-layout folder, loaded as ``idx:PATH``."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        contents = idx_folder(folder, gz=gz)
        stem = rng.choice(IDX_STEMS)
        (folder / (stem + ".gz" if gz else stem)).unlink()
        _, data = mutate(contents[stem], rng)
        write_file(folder / stem, data, gz=gz)
        return call(lambda: load(f"idx:{folder}")), False


def npz_case(rng: random.Random, edit: str, compressed: bool) -> tuple[Outcome, bool]:
    """An ``.npz`` with one edit (NaN/Inf, huge or float labels, shapes, raw bytes)."""
    arrays = npz_arrays()
    x, y = arrays["x"].astype(np.float64), arrays["y"]
    i = rng.randrange(len(x))
    if edit in ("nan", "inf"):
        x[i, rng.randrange(x.shape[1])] = np.nan if edit == "nan" else np.inf
    elif edit == "huge_label":
        y = y.astype(np.uint64)
        y[i] = rng.choice([2**40, 2**63, 2**64 - 1])
    elif edit == "float_label":
        y = y.astype(np.float64) + 0.5
    elif edit == "shape":
        y = y[: rng.randrange(len(y))]
    elif edit == "regression_nan":
        y = y.astype(np.float32)
        y[i] = np.nan
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, x=x, y=y)
    data = buffer.getvalue()
    if edit == "bytes":
        _, data = mutate(data, rng)
    # Float y alone means regression; 1.5 as a class label must be refused.
    task = {"task": "classification"} if edit == "float_label" else {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.npz"
        path.write_bytes(data)
        return call(lambda: load(f"npz:{path}", **task)), edit in MUST_REFUSE


def cifar_case(rng: random.Random, flavour: str) -> tuple[Outcome, bool]:
    """One mutated batch of a CIFAR-10 folder, binary or python (pickle) release."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cifar_bin_folder(folder)
        if flavour == "py":
            for f in folder.glob("*.bin"):
                records = np.frombuffer(f.read_bytes(), np.uint8).reshape(-1, 3073)
                batch = {b"data": records[:, 1:].copy(), b"labels": records[:, 0].tolist()}
                (folder / f.stem).write_bytes(pickle.dumps(batch, protocol=2))
                f.unlink()
        name = rng.choice([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"])
        target = folder / (name + (".bin" if flavour == "bin" else ""))
        _, data = mutate(target.read_bytes(), rng)
        target.write_bytes(data)
        return call(lambda: load(f"cifar10:{folder}")), False


def train_checkpointed(run_dir: Path) -> Path:
    """Train :data:`CHECKPOINT_CONFIG` for one epoch into ``run_dir``; return it."""
    built = build_run(CHECKPOINT_CONFIG, run_dir=run_dir)
    built.trainer.fit(built.data)
    return run_dir


def checkpoint_case(trained: Path, rng: random.Random, target: str,
                    rehash: bool) -> tuple[Outcome, bool]:
    """A copy of ``trained`` with its checkpoint damaged, restored by the runner's trainer."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        shutil.copytree(trained, run_dir)
        path = latest_checkpoint(run_dir)
        meta = json.loads(path.read_text())
        if target == "json":
            path.write_text(json.dumps(mutate_json(meta, rng)))
        else:
            tensors = path.with_suffix(".safetensors")
            _, data = mutate(tensors.read_bytes(), rng)
            tensors.write_bytes(data)
            if rehash:  # past the hash: the loader's own checks must catch the damage
                meta["sha256"] = hashlib.sha256(data).hexdigest()
                path.write_text(json.dumps(meta))
        restore = lambda: build_run(CHECKPOINT_CONFIG, run_dir=run_dir).trainer.restore()  # noqa: E731
        return call(restore), False


def train_case(rng: random.Random, fields: list[str]) -> tuple[Outcome, bool]:
    """``trainwell train`` of a tiny config with 1-2 hostile ``--set`` strings.

    Returns ``bad = True`` when the run finished but every step was skipped or the final
    loss is not finite: the input was accepted although nothing was learned.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        argv = ["train", *TINY, *set_strings(rng, fields, rng.randint(1, 2)), "--quiet",
                "--out", str(out)]
        outcome = run_cli(argv, out, timeout_s=120)
        if outcome.kind != "ok":
            return outcome, False
        summary = json.loads((out / "summary.json").read_text())
        loss = summary["final"]["train"].get("loss", 0.0)
        wasted = summary["skipped_steps"] >= summary["steps"] or not math.isfinite(loss)
        return outcome, wasted
