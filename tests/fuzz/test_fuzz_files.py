"""Fuzz the data readers with mutated IDX, NPZ and CIFAR files (issue 10, items 1, 3, 9).

Each example writes a small valid file in its real format, mutates it (bit flips,
truncation, header edits, NaN/Inf value edits, appended junk) and loads it through
``trainwell.data.load``: a clean load or a one-line UserError are the only outcomes allowed.
"""

from __future__ import annotations

import io
import pickle
import random
import tempfile
from pathlib import Path

import numpy as np
from _formats import IDX_STEMS, cifar_bin_folder, idx_folder, npz_arrays, write_file
from harness import ALLOWED, call, mutate
from hypothesis import given, settings
from hypothesis import strategies as st

import trainwell as tw
from conftest import SCALE


def load(source: str, **options) -> None:
    tw.data.load(source, seed=0, **options)


@settings(max_examples=60 * SCALE)
@given(rng=st.randoms(use_true_random=False), gz=st.booleans())
def test_mutated_idx_files_are_clean(rng: random.Random, gz: bool):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        contents = idx_folder(folder, gz=gz)
        stem = rng.choice(IDX_STEMS)
        (folder / (stem + ".gz" if gz else stem)).unlink()
        _, data = mutate(contents[stem], rng)
        write_file(folder / stem, data, gz=gz)
        outcome = call(lambda: load(f"idx:{folder}"))
    assert outcome.kind in ALLOWED, outcome


@settings(max_examples=60 * SCALE)
@given(rng=st.randoms(use_true_random=False),
       edit=st.sampled_from(["bytes", "nan", "inf", "huge_label", "float_label", "shape",
                             "object", "regression_nan"]),
       compressed=st.booleans())
def test_mutated_npz_files_are_clean(rng: random.Random, edit: str, compressed: bool):
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
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.npz"
        path.write_bytes(data)
        # Float y alone means regression; 1.5 as a class label must be refused.
        task = {"task": "classification"} if edit == "float_label" else {}
        outcome = call(lambda: load(f"npz:{path}", **task))
    assert outcome.kind in ALLOWED, outcome
    if edit in ("nan", "inf", "huge_label", "float_label", "regression_nan"):
        assert outcome.kind == "clean_error", f"{edit} was accepted"


@settings(max_examples=40 * SCALE)
@given(rng=st.randoms(use_true_random=False), flavour=st.sampled_from(["bin", "py"]))
def test_mutated_cifar_batches_are_clean(rng: random.Random, flavour: str):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cifar_bin_folder(folder)
        name = rng.choice([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"])
        if flavour == "py":
            for f in folder.glob("*.bin"):
                records = np.frombuffer(f.read_bytes(), np.uint8).reshape(-1, 3073)
                batch = {b"data": records[:, 1:].copy(), b"labels": records[:, 0].tolist()}
                (folder / f.stem).write_bytes(pickle.dumps(batch, protocol=2))
                f.unlink()
        target = folder / (name + (".bin" if flavour == "bin" else ""))
        _, data = mutate(target.read_bytes(), rng)
        target.write_bytes(data)
        outcome = call(lambda: load(f"cifar10:{folder}"))
    assert outcome.kind in ALLOWED, outcome
