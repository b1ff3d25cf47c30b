"""File sources: IDX folders (plain and gzip), .npz archives, CIFAR-10 binary and pickle batches.

Every file here is generated in tmp_path in the real format; no network.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch

import trainwell as tw
from trainwell.data.cifar import safe_unpickle
from trainwell.data.files import read_idx
from trainwell.errors import UserError

IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """Encode an array in the IDX format: 0, 0, type code, ndim, big-endian dims, data."""
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + array.astype(dtype).tobytes()


def write_idx(path, array, *, gz=False, code=0x08):
    data = idx_bytes(array, code)
    if gz:
        with gzip.open(f"{path}.gz", "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


def make_idx_folder(folder, *, n_train=60, n_test=20, gz=False, seed=0):
    """A small MNIST-layout folder; returns the uint8 images and labels written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": np.arange(n_train, dtype=np.uint8) % 10,
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": np.arange(n_test, dtype=np.uint8) % 10,
    }
    arrays["train_images"][0, 0, 0] = 255
    arrays["train_images"][0, 0, 1] = 0
    arrays["train_images"][:, 0, 27] = 0  # a constant border pixel column
    for key, stem in IDX_STEMS.items():
        write_idx(folder / stem, arrays[key], gz=gz)
    return arrays


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_shapes_values_and_splits(tmp_path, gz):
    arrays = make_idx_folder(tmp_path, gz=gz)
    data = tw.data.load(f"idx:{tmp_path}", standardize=False, val_fraction=0.1, seed=3)
    assert data.feature_shape == (1, 28, 28)
    assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.int64
    assert data.train.x.is_contiguous()
    assert (len(data.train), len(data.val), len(data.test)) == (54, 6, 20)
    assert data.num_classes == 10 and data.task == "classification"
    # test split is the file's order, untouched: exact byte / 255
    expected = arrays["test_images"].astype(np.float64) / 255.0
    np.testing.assert_allclose(data.test.x[:, 0].numpy(), expected, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(data.test.y.numpy(), arrays["test_labels"])
    # the 255 and 0 pixels of train image 0 land at 1.0 and 0.0 wherever it went
    train_all = torch.cat([data.train.x, data.val.x])
    first = (train_all[:, 0, 0, 0] == 1.0) & (train_all[:, 0, 0, 1] == 0.0)
    assert first.any()
    assert float(train_all.max()) == 1.0 and float(train_all.min()) == 0.0


def test_idx_mixed_gz_and_plain(tmp_path):
    make_idx_folder(tmp_path, gz=True)
    plain = tmp_path / IDX_STEMS["test_labels"]
    gz = tmp_path / f"{IDX_STEMS['test_labels']}.gz"
    plain.write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    assert len(tw.data.load(f"idx:{tmp_path}").test) == 20


def test_idx_per_channel_standardization_uses_train_only(tmp_path):
    make_idx_folder(tmp_path)
    data = tw.data.load(f"idx:{tmp_path}", seed=0)
    x = data.train.x.double()
    assert abs(float(x.mean())) < 1e-5
    assert abs(float(x.std()) - 1.0) < 1e-4
    assert data.info["standardized"] == "per_channel"
    assert len(data.info["mean"]) == 1 and len(data.info["std"]) == 1
    # statistics are the raw train split's, not the pooled data's
    raw = tw.data.load(f"idx:{tmp_path}", seed=0, standardize=False)
    mean = raw.train.x.double().mean()
    std = raw.train.x.double().std()
    assert data.info["mean"][0] == pytest.approx(float(mean), rel=1e-5)
    assert data.info["std"][0] == pytest.approx(float(std), rel=1e-5)
    ref = (raw.test.x.double() - mean) / (std + 1e-8)
    torch.testing.assert_close(data.test.x.double(), ref, rtol=1e-5, atol=1e-5)
    assert torch.isfinite(data.test.x).all()


def test_read_idx_other_dtypes(tmp_path):
    values = np.array([[1.5, -2.0], [3.25, 0.0]])
    write_idx(tmp_path / "f", values, code=0x0E)
    np.testing.assert_array_equal(read_idx(tmp_path / "f"), values)
    ints = np.array([-70000, 5, 70000])
    write_idx(tmp_path / "i", ints, code=0x0C)
    np.testing.assert_array_equal(read_idx(tmp_path / "i"), ints)


def test_idx_missing_folder_and_file(tmp_path):
    with pytest.raises(UserError, match=r"idx folder .*nope does not exist"):
        tw.data.load(f"idx:{tmp_path / 'nope'}")
    make_idx_folder(tmp_path)
    (tmp_path / IDX_STEMS["test_images"]).unlink()
    with pytest.raises(
        UserError,
        match=r"has no t10k-images-idx3-ubyte \(or t10k-images-idx3-ubyte\.gz\); expected the "
        r"files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
        r"t10k-labels-idx1-ubyte",
    ):
        tw.data.load(f"idx:{tmp_path}")


def test_idx_bad_magic(tmp_path):
    make_idx_folder(tmp_path)
    path = tmp_path / IDX_STEMS["train_images"]
    raw = bytearray(path.read_bytes())
    raw[0] = 0x1F
    path.write_bytes(bytes(raw))
    with pytest.raises(
        UserError, match=r"train-images-idx3-ubyte is not an IDX file \(magic bytes 1f"
    ):
        tw.data.load(f"idx:{tmp_path}")


def test_idx_truncated_and_trailing(tmp_path):
    make_idx_folder(tmp_path)
    path = tmp_path / IDX_STEMS["train_images"]
    full = path.read_bytes()
    expected = 16 + 60 * 28 * 28
    assert len(full) == expected
    path.write_bytes(full[:100])
    with pytest.raises(
        UserError,
        match=rf"train-images-idx3-ubyte is truncated \(expected {expected} bytes, found 100\); re-download it",
    ):
        tw.data.load(f"idx:{tmp_path}")
    path.write_bytes(full + b"xx")
    with pytest.raises(
        UserError, match=rf"has trailing data \(expected {expected} bytes, found {expected + 2}\)"
    ):
        tw.data.load(f"idx:{tmp_path}")


def test_idx_truncated_gzip(tmp_path):
    make_idx_folder(tmp_path, gz=True)
    path = tmp_path / f"{IDX_STEMS['train_images']}.gz"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(
        UserError, match=r"cannot read .*train-images-idx3-ubyte\.gz .*re-download it"
    ):
        tw.data.load(f"idx:{tmp_path}")


def test_idx_count_mismatch_and_label_range(tmp_path):
    make_idx_folder(tmp_path)
    write_idx(tmp_path / IDX_STEMS["train_labels"], np.zeros(59, dtype=np.uint8))
    with pytest.raises(
        UserError, match=r"has 60 images but .*train-labels-idx1-ubyte has 59 labels"
    ):
        tw.data.load(f"idx:{tmp_path}")
    labels = np.zeros(60, dtype=np.uint8)
    labels[7] = 12
    write_idx(tmp_path / IDX_STEMS["train_labels"], labels)
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte has label 12 outside 0\.\.9"):
        tw.data.load(f"idx:{tmp_path}")


# ---------------------------------------------------------------- NPZ


def test_npz_explicit_splits(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.normal(size=(50, 4)),
        "y_train": np.arange(50) % 3,
        "x_test": rng.normal(size=(10, 4)),
        "y_test": np.arange(10) % 3,
        "x_val": rng.normal(size=(5, 4)),
        "y_val": np.arange(5) % 3,
    }
    np.savez(tmp_path / "d.npz", **arrays)
    data = tw.data.load(f"npz:{tmp_path / 'd.npz'}", standardize=False)
    assert (len(data.train), len(data.val), len(data.test)) == (50, 5, 10)
    assert data.num_classes == 3 and data.train.y.dtype == torch.int64
    np.testing.assert_allclose(data.val.x.numpy(), arrays["x_val"].astype(np.float32))
    np.testing.assert_array_equal(data.test.y.numpy(), arrays["y_test"])
    # without x_val: a tenth of train becomes validation
    del arrays["x_val"], arrays["y_val"]
    np.savez(tmp_path / "e.npz", **arrays)
    data = tw.data.load(f"npz:{tmp_path / 'e.npz'}")
    assert (len(data.train), len(data.val), len(data.test)) == (45, 5, 10)
    assert data.info["standardized"] == "per_feature"
    torch.testing.assert_close(
        data.train.x.double().mean(0), torch.zeros(4, dtype=torch.float64), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        data.train.x.double().std(0), torch.ones(4, dtype=torch.float64), atol=1e-5, rtol=0
    )
    assert data.test.x.double().mean(0).abs().max() > 1e-3  # test stats are not forced to 0


def test_npz_xy_split_is_seeded_and_images_scaled(tmp_path):
    x = np.arange(100 * 2 * 3 * 3, dtype=np.uint8).reshape(100, 2, 3, 3)
    x[0] = 255
    np.savez(tmp_path / "img.npz", x=x, y=np.arange(100) % 4)
    path = f"npz:{tmp_path / 'img.npz'}"
    a = tw.data.load(path, seed=1, standardize=False)
    b = tw.data.load(path, seed=1, standardize=False)
    c = tw.data.load(path, seed=2, standardize=False)
    assert (len(a.train), len(a.val), len(a.test)) == (72, 8, 20)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.test.y, c.test.y)
    everything = torch.cat([a.train.x, a.val.x, a.test.x])
    assert float(everything.max()) == 1.0
    assert a.feature_shape == (2, 3, 3)
    z = tw.data.load(path, seed=1)
    assert z.info["standardized"] == "per_channel" and len(z.info["mean"]) == 2


def test_npz_regression_by_float_y_or_task(tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 3))
    np.savez(tmp_path / "r.npz", x=x, y=x.sum(1))
    data = tw.data.load(f"npz:{tmp_path / 'r.npz'}")
    assert data.task == "regression" and data.num_classes is None
    assert data.train.y.shape == (len(data.train), 1) and data.train.y.dtype == torch.float32
    np.savez(tmp_path / "ri.npz", x=x, y=np.arange(40))
    data = tw.data.load(f"npz:{tmp_path / 'ri.npz'}", task="regression")
    assert data.task == "regression" and data.train.y.dtype == torch.float32


def test_npz_errors(tmp_path):
    x = np.zeros((10, 2))
    np.savez(tmp_path / "k.npz", x_train=x, y_train=np.zeros(10, int))
    with pytest.raises(
        UserError,
        match=r"lacks keys x_test, y_test; expected x_train, y_train, x_test, y_test \(optionally x_val, y_val\), or x, y",
    ):
        tw.data.load(f"npz:{tmp_path / 'k.npz'}")
    np.savez(tmp_path / "n.npz", x=x, y=np.zeros(9, int))
    with pytest.raises(UserError, match=r"x has shape \(10, 2\) and y \(9,\)"):
        tw.data.load(f"npz:{tmp_path / 'n.npz'}")
    np.savez(tmp_path / "neg.npz", x=x, y=np.array([0, 1, -1] + [0] * 7))
    with pytest.raises(
        UserError, match=r"has label -1 out of range; labels must be integers 0\.\.K-1"
    ):
        tw.data.load(f"npz:{tmp_path / 'neg.npz'}")
    np.savez(tmp_path / "frac.npz", x=x, y=np.linspace(0, 1, 10))
    with pytest.raises(UserError, match=r"labels are not whole numbers"):
        tw.data.load(f"npz:{tmp_path / 'frac.npz'}", task="classification")
    np.savez(tmp_path / "obj.npz", x=x, y=np.array([object()] * 10, dtype=object))
    with pytest.raises(UserError, match=r"holds object \(pickled\) arrays, which are refused"):
        tw.data.load(f"npz:{tmp_path / 'obj.npz'}")
    with pytest.raises(UserError, match=r"npz file .*missing\.npz does not exist"):
        tw.data.load(f"npz:{tmp_path / 'missing.npz'}")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match=r"junk\.npz is not a readable \.npz file"):
        tw.data.load(f"npz:{tmp_path / 'junk.npz'}")


# ---------------------------------------------------------------- CIFAR-10


def cifar_arrays(n, seed):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    data[0, :1024] = 255  # image 0: red channel all 255
    data[0, 1024:] = 0
    return data, [int(v) for v in np.arange(n) % 10]


def make_cifar_bin(folder, n=6):
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data, labels = cifar_arrays(n, i)
        records = np.concatenate([np.array(labels, dtype=np.uint8)[:, None], data], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())
        written[name] = (data, labels)
    return written


def make_cifar_py(folder, n=6, protocol=2):
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data, labels = cifar_arrays(n, i)
        batch = {
            b"batch_label": b"training batch",
            b"labels": labels,
            b"data": data,
            b"filenames": [b"img%d.png" % j for j in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        written[name] = (data, labels)
    return written


def check_cifar(data, written):
    assert data.feature_shape == (3, 32, 32) and data.num_classes == 10
    assert (len(data.train) + len(data.val), len(data.test)) == (30, 6)
    test_data, test_labels = written["test_batch"]
    expected = test_data.reshape(-1, 3, 32, 32).astype(np.float64) / 255.0
    np.testing.assert_allclose(data.test.x.numpy(), expected, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(data.test.y.numpy(), test_labels)
    assert torch.all(data.test.x[0, 0] == 1.0) and torch.all(data.test.x[0, 1:] == 0.0)


def test_cifar_binary(tmp_path):
    written = make_cifar_bin(tmp_path / "cifar-10-batches-bin")
    data = tw.data.load(f"cifar10:{tmp_path}", standardize=False)  # finds the subfolder
    check_cifar(data, written)
    assert data.info["format"] == "bin"


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar_python_pickles(tmp_path, protocol):
    written = make_cifar_py(tmp_path, protocol=protocol)
    data = tw.data.load(f"cifar10:{tmp_path}", standardize=False)
    check_cifar(data, written)
    assert data.info["format"] == "py"
    z = tw.data.load(f"cifar10:{tmp_path}")
    assert len(z.info["mean"]) == 3
    torch.testing.assert_close(
        z.train.x.double().mean(dim=(0, 2, 3)),
        torch.zeros(3, dtype=torch.float64),
        atol=1e-5,
        rtol=0,
    )


def test_cifar_binary_errors(tmp_path):
    make_cifar_bin(tmp_path)
    batch = tmp_path / "data_batch_3.bin"
    batch.write_bytes(batch.read_bytes()[:-10])
    with pytest.raises(
        UserError, match=r"data_batch_3\.bin has 18428 bytes, not a positive multiple of 3073"
    ):
        tw.data.load(f"cifar10:{tmp_path}")
    batch.unlink()
    with pytest.raises(UserError, match=r"has no data_batch_3\.bin; expected data_batch_1\.bin"):
        tw.data.load(f"cifar10:{tmp_path}")
    make_cifar_bin(tmp_path)
    raw = bytearray((tmp_path / "test_batch.bin").read_bytes())
    raw[3073] = 10  # label byte of record 1
    (tmp_path / "test_batch.bin").write_bytes(bytes(raw))
    with pytest.raises(UserError, match=r"test_batch\.bin has label 10 outside 0\.\.9"):
        tw.data.load(f"cifar10:{tmp_path}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"empty has no test_batch\.bin or test_batch"):
        tw.data.load(f"cifar10:{tmp_path / 'empty'}")


class _Exploit:
    """Unpickling this calls os.system — the attack a CIFAR pickle could carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_side_effect(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": _Exploit(marker), b"labels": [0]}, protocol=2)
    with pytest.raises(
        UserError,
        match=r"asks to load posix\.system|asks to load os\.system|asks to load nt\.system",
    ):
        safe_unpickle(payload, source="evil")
    assert not marker.exists()
    # the same attack inside a CIFAR folder
    make_cifar_py(tmp_path)
    (tmp_path / "data_batch_2").write_bytes(payload)
    with pytest.raises(
        UserError, match=r"data_batch_2 asks to load .*system.*refusing to unpickle"
    ):
        tw.data.load(f"cifar10:{tmp_path}")
    assert not marker.exists()
    eval_payload = b"cbuiltins\neval\n(S'1+1'\ntR."
    with pytest.raises(UserError, match=r"asks to load builtins\.eval"):
        safe_unpickle(eval_payload, source="evil")


def test_malformed_pickle(tmp_path):
    make_cifar_py(tmp_path)
    (tmp_path / "test_batch").write_bytes(b"\x80\x02}q\x00")  # truncated
    with pytest.raises(UserError, match=r"test_batch is not a readable CIFAR-10 python batch"):
        tw.data.load(f"cifar10:{tmp_path}")
    (tmp_path / "test_batch").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, protocol=2)
    )
    with pytest.raises(UserError, match=r"expected uint8 \(N, 3072\)"):
        tw.data.load(f"cifar10:{tmp_path}")


def test_cifar_pickle_with_numpy1_module_names(tmp_path):
    """Real CIFAR pickles name numpy.core.multiarray (numpy 1); numpy 2 must load them quietly."""
    written = make_cifar_py(tmp_path, protocol=2)
    for name in written:
        path = tmp_path / name
        raw = path.read_bytes()
        if b"numpy._core.multiarray" in raw:
            path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert b"numpy.core.multiarray" in (tmp_path / "test_batch").read_bytes()
    check_cifar(tw.data.load(f"cifar10:{tmp_path}", standardize=False), written)


def test_codecs_encode_only_latin1():
    payload = b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00aq\x01X\x05\x00\x00\x00utf-7q\x02\x86q\x03Rq\x04."
    with pytest.raises(UserError, match=r"_codecs\.encode with 'utf-7'"):
        safe_unpickle(payload, source="evil")
