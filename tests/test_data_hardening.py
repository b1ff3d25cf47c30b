"""Hostile data files get one line naming the file (issue 10, items 1, 3 and 9)."""

from __future__ import annotations

import gzip
import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fuzz"))
from _formats import IDX_STEMS, idx_bytes, idx_folder, npz_arrays, write_file  # noqa: E402

import trainwell as tw  # noqa: E402
from trainwell.data.files import MAX_DATA_BYTES, read_idx  # noqa: E402
from trainwell.errors import UserError  # noqa: E402


def load(source: str, **kw):
    return tw.data.load(source, seed=0, **kw)


# ------------------------------------------------------------------ IDX headers


def test_negative_idx_dimension_is_refused(tmp_path):
    path = write_file(tmp_path / "f", idx_bytes(np.zeros(4, np.uint8), dims=(-4,)))
    with pytest.raises(UserError, match=r"f has a negative size in its header \(-4,\); re-download"):
        read_idx(path)


def test_absurd_idx_dimensions_are_refused_before_reading(tmp_path):
    path = write_file(tmp_path / "f", idx_bytes(np.zeros(4, np.uint8), dims=(2**31 - 1, 2**31 - 1)))
    with pytest.raises(UserError, match=r"claims 4,611,686,014,132,420,609 values .*past the limit "
                                        rf"of {MAX_DATA_BYTES // 4:,}"):
        read_idx(path)


def test_gz_bomb_stops_at_the_size_the_header_promises(tmp_path):
    # 64 MB of zeros compress to ~64 KB; the header promises 100 bytes.
    bomb = io.BytesIO()
    with gzip.GzipFile(fileobj=bomb, mode="wb") as handle:
        handle.write(idx_bytes(np.zeros(100, np.uint8)))
        handle.write(bytes(64 << 20))
    path = tmp_path / "f.gz"
    path.write_bytes(bomb.getvalue())
    with pytest.raises(UserError, match=r"has trailing data \(expected 108 bytes, found more\)"):
        read_idx(path)


def test_gz_header_promising_more_than_deflate_can_hold_is_refused(tmp_path):
    data = idx_bytes(np.zeros(4, np.uint8), dims=(20_000, 10_000))  # 200 MB promised
    path = write_file(tmp_path / "f", data, gz=True)
    with pytest.raises(UserError, match=r"claims 200,000,012 bytes, more than its \d+ compressed"):
        read_idx(path)


def test_float_idx_labels_are_refused_not_truncated(tmp_path):
    contents = idx_folder(tmp_path)
    assert contents
    write_file(tmp_path / IDX_STEMS[1], idx_bytes(np.full(40, 1.5), code=0x0D))
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte holds float32 labels; IDX class"):
        load(f"idx:{tmp_path}")


# ------------------------------------------------------------------ NPZ


def test_npz_with_a_member_that_is_not_npy_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, **npz_arrays())
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(UserError, match=r"holds 'notes.txt', which is not a .npy array"):
        load(f"npz:{path}")


def test_npy_header_claiming_5e11_floats_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f4", "fortran_order": False, "shape": (500_000_000_000,)})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", buffer.getvalue() + bytes(16))
        archive.writestr("y.npy", buffer.getvalue())
    with pytest.raises(UserError, match=r"'x.npy' claims shape \(500000000000,\) of float32 "
                                        r"\(2,000,000,000,000 bytes\), but the member holds 16"):
        load(f"npz:{path}")


@pytest.mark.parametrize("label", [2**40, 2**64 - 1])
def test_labels_out_of_range_are_one_line(tmp_path, label):
    arrays = npz_arrays()
    arrays["y"] = arrays["y"].astype(np.uint64)
    arrays["y"][5] = label
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(UserError, match=rf"has label {label} out of range; .* at most 65536"):
        load(f"npz:{tmp_path / 'd.npz'}")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e300])
def test_non_finite_features_are_refused_with_count_and_first_index(tmp_path, bad):
    arrays = npz_arrays()
    x = arrays["x"].astype(np.float64)
    x[7, 2] = bad
    x[9, 0] = bad
    np.savez(tmp_path / "d.npz", x=x, y=arrays["y"])
    with pytest.raises(UserError) as err:
        load(f"npz:{tmp_path / 'd.npz'}")
    assert str(err.value) == (
        f"source: {tmp_path / 'd.npz'}: x has 2 non-finite values (NaN, inf, or beyond "
        "float32), the first at index (7, 2); remove or impute them")


def test_nan_regression_targets_are_refused(tmp_path):
    arrays = npz_arrays()
    y = arrays["y"].astype(np.float32)
    y[3] = np.nan
    np.savez(tmp_path / "d.npz", x=arrays["x"], y=y)
    with pytest.raises(UserError, match=r": y has 1 non-finite value \(NaN.*index \(3, 0\)"):
        load(f"npz:{tmp_path / 'd.npz'}")


def test_features_that_overflow_when_standardized_are_refused(tmp_path):
    arrays = npz_arrays()
    arrays["x"][:, 0] = 3e38  # finite in float32, but their sum is not
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(UserError, match=r"features as large as 3e\+38 overflow float32"):
        load(f"npz:{tmp_path / 'd.npz'}")
    assert load(f"npz:{tmp_path / 'd.npz'}", standardize=False).train.x.isfinite().all()


# ------------------------------------------------------------------ CIFAR and synthetic


def test_cifar_batch_past_the_size_limit_is_refused_without_reading(tmp_path, monkeypatch):
    from trainwell.data import cifar

    monkeypatch.setattr(cifar, "_MAX_BATCH_BYTES", 3073 * 2)
    from _formats import cifar_bin_folder

    cifar_bin_folder(tmp_path, n=3)
    with pytest.raises(UserError, match=r"data_batch_1.bin has 9,219 bytes, past the limit of 6,146"):
        load(f"cifar10:{tmp_path}")


def test_synthetic_size_is_estimated_before_generating():
    with pytest.raises(UserError, match=r"^num_samples: 10000000 samples of 1000 features need "
                                        r"80,000,000,000 bytes, past the limit"):
        load("synthetic", num_samples=10_000_000, num_features=1000)
