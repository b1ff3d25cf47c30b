"""A tiny classification run for callback tests: 3 epochs of a small MLP, in well under 1 s."""

from __future__ import annotations

import torch
from torch import nn

import trainwell as tw
from trainwell.data import Dataset, Split
from trainwell.train import Callback


def blobs(n=120, seed=0, d=4, k=3) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 2
    y = torch.randint(0, k, (n,), generator=g)
    x = centers[y] + torch.randn(n, d, generator=g)
    return Dataset(Split(x[:80], y[:80]), Split(x[80:100], y[80:100]), Split(x[100:], y[100:]),
                   "classification", k, "blobs")


class Recorder(Callback):
    """Keeps each step's loss as a float and a copy of the model's state after each epoch."""

    def __init__(self):
        self.losses: list[tuple[int, float]] = []
        self.states: list[dict[str, torch.Tensor]] = []

    def on_step_end(self, trainer, step, loss):
        self.losses.append((step, float(loss)))

    def on_epoch_end(self, trainer, epoch, metrics):
        self.states.append({k: v.clone() for k, v in trainer.model.state_dict().items()})


def trainer(run_dir, callbacks, epochs=3, seed=0) -> tw.Trainer:
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    return tw.Trainer(model, opt, epochs=epochs, batch_size=32, seed=seed, progress=False,
                      device="cpu", run_dir=run_dir, callbacks=callbacks)
