"""A model and a data pipeline written the way PyTorch users write them, for trainwell's
``model.target`` / ``data.target`` (see custom.toml beside this file)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset


class SmallConv1d(nn.Module):
    """A 1-D conv net for MNIST-1D-like sequences; activations are function calls."""

    def __init__(self, channels: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, channels, 5, padding=2)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1, stride=2)
        self.fc = nn.Linear(channels * 20, 128)
        self.out = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x.unsqueeze(1)))
        x = F.relu(self.conv2(x))
        return self.out(F.relu(self.fc(x.flatten(1))))


class Sequences(Dataset):
    """A map-style dataset that returns one (x, y) sample at a time, as on-disk data would."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


def mnist1d_loaders(num_samples: int = 4000, batch_size: int = 128, seed: int = 0):
    """(train, val) DataLoaders over MNIST-1D, made offline by the mnist1d package."""
    import trainwell as tw  # only to generate the data; the model above knows nothing of it

    data = tw.data.load("mnist1d", num_samples=num_samples, seed=seed)
    train = DataLoader(Sequences(data.train.x, data.train.y), batch_size=batch_size,
                       shuffle=True, generator=torch.Generator().manual_seed(seed))
    val = DataLoader(Sequences(data.val.x, data.val.y), batch_size=512)
    return train, val
