"""examples/cifar10.toml: its fields fit the ResNet, Augment and BestCheckpoint APIs, and the
pieces run end to end on a generated CIFAR-10 binary folder (no download)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import torch

import trainwell as tw
from trainwell.data.augment import Augment
from trainwell.train import BestCheckpoint

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "cifar10.toml"


def test_example_fields_build_the_parts():
    config = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert config["data"]["source"].startswith("cifar10:")
    m = config["model"]
    assert m["kind"] == "resnet"
    net = tw.nn.resnet((3, 32, 32), 10, widths=m["channels"], blocks=m["blocks"],
                       activation=m["activation"])
    # the count its comment states, by the formula of trainwell.nn.resnet: stem 9·3·32;
    # stage 1: 2 × (64 + 9·32² + 64 + 9·32²); stage 2: (64 + 9·32·64 + 128 + 9·64² + 32·64)
    # + (128 + 2·9·64² + 128); stage 3 likewise at 64 → 128; final BN 2·128; head 128·10 + 10
    parts = [864, 2 * 18_560, 57_536, 73_984, 229_760, 295_424, 256, 1_290]
    assert sum(p.numel() for p in net.parameters()) == sum(parts) == 696_234
    assert repr(Augment(**config["data"]["augment"])) == "Augment(crop_padding=4, flip=True)"
    best = BestCheckpoint(**config["train"]["best"])
    assert (best.monitor, best.mode) == ("val_accuracy", "max")
    steps = -(-round(50_000 * (1 - config["data"]["val_fraction"])) // config["train"]["batch_size"])
    assert steps == 352  # what the header says


def write_fake_cifar_bin(folder: Path, per_batch: int = 8) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = np.empty((per_batch, 3073), dtype=np.uint8)
        records[:, 0] = np.arange(per_batch) % 10
        records[:, 1:] = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        (folder / name).write_bytes(records.tobytes())


def test_cifar_folder_to_augmented_batch_to_resnet(tmp_path):
    torch.set_num_threads(1)
    write_fake_cifar_bin(tmp_path / "cifar-10-batches-bin")
    data = tw.data.load(f"cifar10:{tmp_path}", val_fraction=0.25)
    assert tuple(data.train.x.shape) == (30, 3, 32, 32) and data.num_classes == 10
    x = Augment()(data.train.x[:6], torch.Generator().manual_seed(0))
    net = tw.nn.resnet((3, 32, 32), 10, widths=(4, 8), blocks=(1, 1))
    assert net(x).shape == (6, 10)
