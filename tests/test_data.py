"""Data sources: registry and load(), mnist1d (cache, RNG isolation), digits, synthetic,
train-only standardization, and checksummed downloads from file:// URLs (no network)."""

from __future__ import annotations

import gzip
import hashlib
import random
import struct

import numpy as np
import pytest
import torch

import trainwell as tw
from trainwell.data import download as dl
from trainwell.data import sources
from trainwell.errors import UserError


@pytest.fixture(autouse=True)
def _per_test_cache(tmp_path, monkeypatch):
    """Keep every test's cache inside its tmp_path, never the user's."""
    monkeypatch.setenv("TRAINWELL_CACHE", str(tmp_path / "cache"))


# ---------------------------------------------------------------- registry and load()


def test_registry_and_exports():
    assert set(tw.data.SOURCES) == {
        "mnist1d",
        "digits",
        "synthetic",
        "idx",
        "npz",
        "cifar10",
        "mnist",
        "fashion-mnist",
    }
    for name in (
        "load",
        "SOURCES",
        "cache_dir",
        "Dataset",
        "Split",
        "standardize",
        "iterate_batches",
    ):
        assert name in tw.data.__all__
        assert getattr(tw.data, name).__doc__ or name == "SOURCES"


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAINWELL_CACHE", str(tmp_path / "a"))
    assert tw.data.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("TRAINWELL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert tw.data.cache_dir() == tmp_path / "x" / "trainwell"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert tw.data.cache_dir() == tmp_path / "home" / ".cache" / "trainwell"


def test_unknown_source_option_and_val_fraction():
    with pytest.raises(
        UserError,
        match=r"^source: unknown source 'x'; use one of mnist1d, digits, synthetic, "
        r"idx:PATH, npz:PATH, cifar10:PATH, mnist, fashion-mnist$",
    ):
        tw.data.load("x")
    with pytest.raises(
        UserError,
        match=r"data\.num_sample: unknown option for source 'mnist1d'; valid options: num_samples",
    ):
        tw.data.load("mnist1d", num_sample=10)
    with pytest.raises(
        UserError, match=r"data\.kind: unknown option for source 'digits'; valid options: none"
    ):
        tw.data.load("digits", kind="moons")
    for bad in (-0.1, 0.95, "a"):
        with pytest.raises(UserError, match=r"val_fraction: must be"):
            tw.data.load("digits", val_fraction=bad)
    with pytest.raises(UserError, match=r"source: idx needs a path"):
        tw.data.load("idx")
    with pytest.raises(UserError, match=r"source: digits takes no path"):
        tw.data.load("digits:/tmp")


def test_label_out_of_range_is_rejected_by_load(monkeypatch):
    def bad_loader():
        x = np.zeros((20, 2), np.float32)
        return {
            "x": x,
            "y": np.arange(20) % 4,
            "task": "classification",
            "num_classes": 3,
            "info": {},
        }

    monkeypatch.setitem(sources.SOURCES, "bad", bad_loader)
    with pytest.raises(UserError, match=r"source: bad has label 3 out of range 0\.\.2"):
        tw.data.load("bad")


# ---------------------------------------------------------------- digits


def test_digits_splits_dtypes_and_determinism():
    a = tw.data.load("digits", seed=0, standardize=False)
    assert a.feature_shape == (64,) and a.num_classes == 10 and a.name == "digits"
    n_test = round(1797 * 0.2)
    n_val = round((1797 - n_test) * 0.1)
    assert (len(a.train), len(a.val), len(a.test)) == (1797 - n_test - n_val, n_val, n_test)
    assert a.train.x.dtype == torch.float32 and a.train.y.dtype == torch.int64
    assert float(torch.cat([a.train.x, a.test.x]).max()) == 16.0
    b = tw.data.load("digits", seed=0, standardize=False)
    c = tw.data.load("digits", seed=1, standardize=False)
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.val.y, b.val.y)
    assert not torch.equal(a.test.y, c.test.y)
    # the three splits partition the bundled set: same multiset of rows
    from sklearn.datasets import load_digits

    x_all = load_digits().data.astype(np.float32)
    ours = torch.cat([a.train.x, a.val.x, a.test.x]).numpy()
    np.testing.assert_array_equal(np.sort(ours.sum(1)), np.sort(x_all.sum(1)))


def test_standardization_uses_train_split_only():
    raw = tw.data.load("digits", seed=0, standardize=False)
    z = tw.data.load("digits", seed=0)
    x = raw.train.x.double()
    mean, std = x.mean(0), x.std(0)
    const = std < 1e-6
    assert const.any()  # digits has always-blank pixels: they must stay finite
    scale = torch.where(const, torch.ones_like(std), std + 1e-8)
    for split_raw, split_z in zip((raw.train, raw.val, raw.test), (z.train, z.val, z.test)):
        ref = (split_raw.x.double() - mean) / scale
        torch.testing.assert_close(split_z.x.double(), ref, rtol=1e-5, atol=1e-5)
    zt = z.train.x.double()
    assert zt.mean(0).abs().max() < 1e-5
    torch.testing.assert_close(
        zt.std(0)[~const], torch.ones(int((~const).sum()), dtype=torch.float64), atol=1e-5, rtol=0
    )
    assert z.test.x.double().mean(0).abs().max() > 0.01  # test statistics differ
    np.testing.assert_allclose(z.info["mean"], mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z.info["std"], std.numpy(), rtol=1e-5, atol=1e-6)
    assert z.info["standardized"] == "per_feature"


# ---------------------------------------------------------------- synthetic


@pytest.mark.parametrize(
    ("kind", "features", "classes"),
    [("gaussian", 20, 3), ("blobs", 2, 3), ("circles", 2, 2), ("moons", 2, 2)],
)
def test_synthetic_classification_kinds(kind, features, classes):
    a = tw.data.load("synthetic", kind=kind, num_samples=300, seed=5, standardize=False)
    b = tw.data.load("synthetic", kind=kind, num_samples=300, seed=5, standardize=False)
    c = tw.data.load("synthetic", kind=kind, num_samples=300, seed=6, standardize=False)
    assert (
        a.feature_shape == (features,) and a.num_classes == classes and a.task == "classification"
    )
    assert (len(a.train), len(a.val), len(a.test)) == (216, 24, 60)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.x, c.train.x)
    labels = torch.cat([a.train.y, a.val.y, a.test.y])
    assert set(labels.tolist()) == set(range(classes))


def test_synthetic_gaussian_formula():
    """x = μ_y + 10·noise·ε: within-class spread is 10·noise per coordinate."""
    data = tw.data.load(
        "synthetic", num_samples=6000, num_features=4, noise=0.05, standardize=False, val_fraction=0
    )
    x, y = data.train.x.double(), data.train.y
    for k in range(3):
        assert x[y == k].std(0).mean().item() == pytest.approx(0.5, rel=0.05)


def test_synthetic_regression_formula():
    data = tw.data.load(
        "synthetic",
        task="regression",
        num_samples=4000,
        num_features=5,
        num_targets=2,
        noise=0.0,
        seed=3,
        standardize=False,
        val_fraction=0,
    )
    assert data.task == "regression" and data.num_classes is None and data.out_features == 2
    x, y = data.train.x.double(), data.train.y.double()
    assert data.train.y.dtype == torch.float32 and y.shape == (len(x), 2)
    rng = np.random.default_rng(3)
    rng.standard_normal((4000, 5))
    w = torch.from_numpy(rng.standard_normal((5, 2)))
    ref = x @ w / 5**0.5 + 0.5 * torch.sin(torch.pi * x[:, [0, 1]])
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-5)
    # targets are not standardized
    z = tw.data.load(
        "synthetic",
        task="regression",
        num_samples=4000,
        num_features=5,
        num_targets=2,
        noise=0.0,
        seed=3,
        val_fraction=0,
    )
    assert torch.equal(z.train.y, data.train.y)


def test_synthetic_errors():
    with pytest.raises(
        UserError,
        match=r"kind: unknown kind 'spiral'; use one of gaussian, blobs, circles, moons",
    ):
        tw.data.load("synthetic", kind="spiral")
    with pytest.raises(UserError, match=r"task: unknown task 'ranking'"):
        tw.data.load("synthetic", task="ranking")
    with pytest.raises(
        UserError,
        match=r"kind: circles makes 2 features and 2 classes, got num_features=2, num_classes=3",
    ):
        tw.data.load("synthetic", kind="circles", num_classes=3)
    with pytest.raises(UserError, match=r"noise: must be a number in \[0, 1e6\), got -1"):
        tw.data.load("synthetic", noise=-1)
    with pytest.raises(UserError, match=r"test_fraction: must be in \(0, 1\), got 1\.5"):
        tw.data.load("synthetic", test_fraction=1.5)
    with pytest.raises(UserError, match=r"num_samples: must be an integer >= 10, got 2\.5"):
        tw.data.load("synthetic", num_samples=2.5)


# ---------------------------------------------------------------- mnist1d


def test_mnist1d_cache_rng_isolation_and_determinism(tmp_path):
    random.seed(123)
    np.random.seed(456)
    py_state, np_state = random.getstate(), np.random.get_state()
    cache = tmp_path / "c"
    a = tw.data.load("mnist1d", num_samples=500, cache_dir=cache, seed=0)
    assert random.getstate() == py_state
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    assert a.info["from_cache"] is False
    files = list((cache / "mnist1d").glob("mnist1d-n500-*.npz"))
    assert len(files) == 1 and not list((cache / "mnist1d").glob(".*"))  # no temp files left
    assert a.feature_shape == (40,) and a.num_classes == 10
    assert (len(a.train), len(a.val), len(a.test)) == (360, 40, 100)  # package 80/20, then 10%
    assert a.train.x.dtype == torch.float32 and a.train.y.dtype == torch.int64

    b = tw.data.load("mnist1d", num_samples=500, cache_dir=cache, seed=0)
    assert b.info["from_cache"] is True
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    c = tw.data.load("mnist1d", num_samples=500, cache_dir=cache, seed=1, standardize=False)
    a_raw = tw.data.load("mnist1d", num_samples=500, cache_dir=cache, seed=0, standardize=False)
    assert torch.equal(a_raw.test.x, c.test.x)  # the package's test split does not move
    assert not torch.equal(a_raw.val.y, c.val.y)  # the validation hold-out does

    # the cached arrays are exactly the package's canonical data (seed 42)
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = 500
    ref = make_dataset(args)
    raw = tw.data.load("mnist1d", num_samples=500, cache_dir=cache, standardize=False)
    np.testing.assert_allclose(raw.test.x.numpy(), ref["x_test"].astype(np.float32))
    np.testing.assert_array_equal(raw.test.y.numpy(), ref["y_test"])
    train = torch.cat([raw.train.x, raw.val.x]).double()
    assert train.sum().item() == pytest.approx(float(ref["x"].sum()), abs=1e-3)

    # a corrupt cache file is regenerated, not an error
    files[0].write_bytes(b"garbage")
    d = tw.data.load("mnist1d", num_samples=500, cache_dir=cache, seed=0)
    assert d.info["from_cache"] is False and torch.equal(d.train.x, a.train.x)
    assert tw.data.load("mnist1d", num_samples=500, cache_dir=cache).info["from_cache"] is True


def test_mnist1d_bad_num_samples(tmp_path):
    with pytest.raises(UserError, match=r"num_samples: must be >= 100 for mnist1d, got 5"):
        tw.data.load("mnist1d", num_samples=5, cache_dir=tmp_path)


# ---------------------------------------------------------------- downloads (file:// only)


def _idx(array: np.ndarray) -> bytes:
    return (
        bytes([0, 0, 8, array.ndim])
        + struct.pack(f">{array.ndim}i", *array.shape)
        + array.tobytes()
    )


def _fake_remote(folder):
    """Write the four gz files; return a Remote with file:// URLs and their true digests."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    contents = {
        "train-images-idx3-ubyte.gz": _idx(rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)),
        "train-labels-idx1-ubyte.gz": _idx((np.arange(30) % 10).astype(np.uint8)),
        "t10k-images-idx3-ubyte.gz": _idx(rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)),
        "t10k-labels-idx1-ubyte.gz": _idx((np.arange(10) % 10).astype(np.uint8)),
    }
    sha, size = {}, {}
    for name, raw in contents.items():
        packed = gzip.compress(raw, mtime=0)
        (folder / name).write_bytes(packed)
        sha[name], size[name] = hashlib.sha256(packed).hexdigest(), len(packed)
    return dl.Remote(base_url=folder.as_uri() + "/", sha256=sha, size=size)


def test_pinned_checksums_are_well_formed():
    for name, remote in dl.REMOTES.items():
        assert set(remote.sha256) == set(dl.IDX_FILES) == set(remote.size), name
        for digest in remote.sha256.values():
            assert len(digest) == 64 and int(digest, 16) >= 0


def test_missing_download_message(tmp_path):
    with pytest.raises(
        UserError,
        match=r"^source: mnist is not in the cache .*cache/mnist; run with --set "
        r"data\.download=true to download it \(or point data\.source at idx:PATH\)$",
    ):
        tw.data.load("mnist")
    with pytest.raises(UserError, match=r"fashion-mnist is not in the cache"):
        tw.data.load("fashion-mnist", cache_dir=tmp_path)


def test_download_verifies_and_loads(tmp_path, monkeypatch):
    remote = _fake_remote(tmp_path / "mirror")
    monkeypatch.setitem(dl.REMOTES, "mnist", remote)
    cache = tmp_path / "dl"
    data = tw.data.load("mnist", cache_dir=cache, download=True, standardize=False)
    assert data.feature_shape == (1, 28, 28) and len(data.test) == 10 and data.num_classes == 10
    for name, digest in remote.sha256.items():
        assert dl.sha256_file(cache / "mnist" / name) == digest
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(remote.sha256)

    # present files are used without a download (an opener that fails proves it)
    def refuse(url, timeout):
        raise AssertionError("no download expected")

    assert dl.fetch("mnist", cache, download=True, opener=refuse) == cache / "mnist"
    again = tw.data.load("mnist", cache_dir=cache, standardize=False)
    assert torch.equal(again.test.x, data.test.x)


def test_download_checksum_mismatch_deletes_temp(tmp_path):
    remote = _fake_remote(tmp_path / "mirror")
    bad_sha = dict(remote.sha256, **{"t10k-images-idx3-ubyte.gz": "0" * 64})
    bad = dl.Remote(remote.base_url, bad_sha, remote.size)
    cache = tmp_path / "dl"
    with pytest.raises(
        UserError,
        match=r"downloaded t10k-images-idx3-ubyte\.gz from file://.* has SHA-256 [0-9a-f]{64}, expected 0{64}",
    ):
        dl.fetch("mnist", cache, download=True, remote=bad)
    left = sorted(p.name for p in (cache / "mnist").iterdir())
    assert "t10k-images-idx3-ubyte.gz" not in left
    assert not [n for n in left if n.endswith(".part")]
    assert left == [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ]  # verified ones kept


def test_download_network_error(tmp_path):
    remote = _fake_remote(tmp_path / "mirror")
    gone = dl.Remote((tmp_path / "nowhere").as_uri() + "/", remote.sha256, remote.size)
    with pytest.raises(
        UserError, match=r"could not download file://.*nowhere/train-images-idx3-ubyte\.gz"
    ):
        dl.fetch("mnist", tmp_path / "dl", download=True, remote=gone)
    assert not [p for p in (tmp_path / "dl" / "mnist").iterdir()]
