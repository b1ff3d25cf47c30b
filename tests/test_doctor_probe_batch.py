"""The fixed probe batch: honest statistics at batch size 1, and no effect on training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainwell.data.dataset import Dataset, Split
from trainwell.doctor import DoctorCallback, watch
from trainwell.doctor.probe_batch import draw_probe_batch
from trainwell.train import Trainer


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # conftest puts the count back


def _blobs(n: int = 96) -> Dataset:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.randn(n, 8, generator=g) + 2.0 * (y[:, None].float() * 2 - 1)
    return Dataset(Split(x[:64], y[:64]), Split(x[64:80], y[64:80]), Split(x[80:], y[80:]),
                   "classification", 2, "blobs")  # fmt: skip


def _train(model: nn.Module, *, batch_size: int, callbacks=(), epochs: int = 2) -> Trainer:
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
                      epochs=epochs, batch_size=batch_size, callbacks=list(callbacks),
                      device="cpu", progress=False)  # fmt: skip
    trainer.fit(_blobs())
    return trainer


def _bn_dropout_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(16, 2))  # fmt: skip


def test_probes_leave_the_trained_weights_bit_identical():
    plain, probed = _bn_dropout_net(), _bn_dropout_net()
    _train(plain, batch_size=16)
    cb = DoctorCallback(every=1, num_classes=2)
    _train(probed, batch_size=16, callbacks=[cb])
    assert len(cb.health.probes) == 8  # every step of 2 epochs × 4 batches was probed
    for (name, a), b in zip(plain.state_dict().items(), probed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # parameters and BN statistics, bit for bit


def test_draw_probe_batch_is_seeded_and_capped():
    x, y = torch.arange(1000.0)[:, None], torch.arange(1000)
    a, b = draw_probe_batch(x, y, seed=3), draw_probe_batch(x, y, seed=3)
    assert a[0].shape == (256, 1) and torch.equal(a[0], b[0]) and torch.equal(a[0][:, 0].long(), a[1])
    assert not torch.equal(draw_probe_batch(x, y, seed=4)[0], a[0])
    assert draw_probe_batch(x[:10], y[:10], seed=0)[0].shape == (10, 1)


def _relu_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 2))  # fmt: skip


def _dead_share(cb: DoctorCallback) -> float:
    vals = [p["layers"]["2"].get("dead_share") for p in cb.health.probes[1:]]
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals)


def test_batch_size_one_healthy_relu_net_is_not_called_dead():
    fixed = DoctorCallback(every=8, num_classes=2)
    _train(_relu_net(), batch_size=1, callbacks=[fixed])
    kinds = [f.kind for f in fixed.findings()]
    assert "dying_relu" not in kinds and "vanishing_gradients" not in kinds
    assert _dead_share(fixed) < 0.2  # a few units at most are off for all 64 samples
    # The training batch (one sample) would call most of the same units "dead".
    batch = DoctorCallback(every=8, num_classes=2, probe_samples=0)
    _train(_relu_net(), batch_size=1, callbacks=[batch])
    assert _dead_share(batch) > 0.3


def _batch1_loop(probe_batch):
    # A hand-written loop at batch size 1 with tw.doctor.watch; returns the watcher's
    # probe records and the final weights.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(300, 8, generator=g), torch.randint(0, 3, (300,), generator=g)
    with watch(model, every=5, num_classes=3, probe_batch=(x, y) if probe_batch else None) as w:
        for i in range(40):
            loss = torch.nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1])
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    return w.health.probes, [p.detach().clone() for p in model.parameters()]


def test_watch_probes_a_fixed_batch_and_leaves_training_untouched():
    on_batch, weights = _batch1_loop(True)
    on_training, weights_plain = _batch1_loop(False)
    assert [r["step"] for r in on_batch] == [0, 5, 10, 15, 20, 25, 30, 35]
    for a, b in zip(weights, weights_plain):
        assert torch.equal(a, b)  # the probe's own forward/backward changes nothing
    dead_batch = [r["layers"]["0"]["dead_share"] for r in on_batch]
    dead_train = [r["layers"]["0"]["dead_share"] for r in on_training]
    # one sample leaves about half the units at 0; 256 samples leave almost none "dead"
    assert min(dead_train) > 0.3
    assert max(dead_batch) < 0.1
    assert all(r["layers"]["0"]["update_ratio"] > 0 for r in on_batch)


def test_a_dataloader_run_probes_a_fixed_batch_drawn_from_its_dataset():
    # A torch Dataset behind a DataLoader of batch size 1: the callback draws its 256-sample
    # probe batch from the dataset (seeded) instead of probing the one-sample batch.
    from torch.utils.data import DataLoader, TensorDataset

    from trainwell.doctor.probe_batch import draw_from_dataset

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(300, 8, generator=g), torch.randint(0, 3, (300,), generator=g)
    ds = TensorDataset(x, y)
    xb, yb = draw_from_dataset(ds, seed=5)
    xr, yr = draw_probe_batch(x, y, seed=5)
    assert torch.equal(xb, xr) and torch.equal(yb, yr)  # the same samples as in memory
    assert draw_from_dataset([1, 2, 3], seed=0) is None  # not (x, y) samples
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    doctor = DoctorCallback(every=5)
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.01), epochs=1,
                      batch_size=1, progress=False, device="cpu", callbacks=[doctor])
    trainer.fit(DataLoader(ds, batch_size=1, shuffle=True))
    assert doctor._batch is not None and doctor._batch[0].shape == (256, 8)
    assert max(r["layers"]["0"]["dead_share"] for r in doctor.health.probes) < 0.1
