"""The Trainer on any data pipeline: tuples, torch Datasets, DataLoaders, dict batches."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import trainwell as tw
from trainwell.data import Dataset, Split
from trainwell.data.loaders import EpochSampler, epoch_order


def blobs(n=200, seed=0, d=5, k=3):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 3
    y = torch.randint(0, k, (n,), generator=g)
    x = centers[y] + torch.randn(n, d, generator=g)
    cut = int(0.7 * n)
    return Dataset(Split(x[:cut], y[:cut]), Split(x[cut:], y[cut:]), Split(x[cut:], y[cut:]),
                   "classification", k, "blobs")


def train(data, *, epochs=3, val=None, seed=0, **kw):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))
    trainer = tw.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), epochs=epochs,
                         batch_size=16, seed=seed, progress=False, device="cpu", **kw)
    history = trainer.fit(data, val=val)
    return model, trainer, history


def same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_tuple_and_map_style_dataset_match_the_in_memory_path_bit_for_bit():
    data = blobs()
    ref, _, ref_hist = train(data)
    tup, _, _ = train((data.train.x, data.train.y), val=(data.val.x, data.val.y))
    ds, _, ds_hist = train(TensorDataset(data.train.x, data.train.y),
                           val=TensorDataset(data.val.x, data.val.y))
    assert same_weights(ref, tup) and same_weights(ref, ds)
    assert ds_hist[-1]["val_loss"] == pytest.approx(ref_hist[-1]["val_loss"], rel=1e-6)
    assert ds_hist[-1]["train_accuracy"] == ref_hist[-1]["train_accuracy"]


def test_epoch_sampler_order_is_a_pure_function_of_seed_and_epoch():
    s = EpochSampler(10, seed=3)
    s.set_epoch(2)
    first = list(s)
    s.set_epoch(0)
    s.set_epoch(2)
    assert list(s) == first == epoch_order(10, 3, 2).tolist()
    assert sorted(first) == list(range(10))
    s.set_epoch(1)
    assert list(s) != first


def test_a_shuffling_dataloader_with_workers_is_deterministic_and_resumes_exactly(tmp_path):
    data = blobs()
    ds = TensorDataset(data.train.x, data.train.y)

    def loader(workers):
        return DataLoader(ds, batch_size=16, shuffle=True, num_workers=workers)

    a, _, hist_a = train(loader(0), epochs=3)
    b, _, _ = train(loader(2), epochs=3)  # worker processes: same batches, same order
    assert same_weights(a, b)
    assert hist_a[-1]["train_accuracy"] > 0.9  # 3 separated blobs; chance 1/3
    # killed after epoch 2, resumed: the same weights as the uninterrupted run
    train(loader(0), epochs=2, run_dir=tmp_path)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))
    resumed = tw.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), epochs=3,
                         batch_size=16, progress=False, device="cpu", run_dir=tmp_path)
    resumed.fit(loader(0), resume=True)
    assert resumed.step == 27  # 140 samples / 16 → 9 steps × 3 epochs
    assert same_weights(a, model)


class Stream(IterableDataset):
    """An iterable dataset that draws its samples from torch's (per-epoch seeded) RNG."""

    def __iter__(self):
        centers = torch.tensor([[3.0, 0, 0, 0, 0], [-3.0, 0, 0, 0, 0]])
        for _ in range(100):
            y = int(torch.randint(0, 2, ()))
            yield centers[y] + torch.randn(5) * 0.5, y


def test_an_iterable_dataset_trains_without_a_known_length():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))
    trainer = tw.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), epochs=2,
                         batch_size=16, progress=False, device="cpu")
    assert trainer.check(Stream()) is None  # unknown length: no schedule length check
    history = trainer.fit(Stream())
    assert trainer.step == 14  # 100 samples: 7 batches (6 × 16 + 4) per epoch
    assert history[-1]["train_accuracy"] > 0.9  # separated by 6 std; chance 1/2


def test_dict_batches_with_a_users_forward_and_loss():
    class DictModel(nn.Module):  # not "x in, logits out": a dict in, a dict out
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(5, 3)

        def forward(self, features):
            return {"logits": self.net(features)}

    class Records(torch.utils.data.Dataset):
        def __init__(self, split):
            self.split = split

        def __len__(self):
            return len(self.split)

        def __getitem__(self, i):
            return {"features": self.split.x[i], "label": self.split.y[i]}

    data = blobs()
    model = DictModel()
    seen = []

    def loss_fn(out, batch):
        seen.append(sorted(batch))
        return nn.functional.cross_entropy(out["logits"], batch["label"])

    trainer = tw.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), epochs=5,
                         batch_size=16, progress=False, device="cpu",
                         forward=lambda m, b: m(b["features"]), loss_fn=loss_fn)
    history = trainer.fit(Records(data.train), val=Records(data.val))
    assert seen[0] == ["features", "label"]
    assert "train_accuracy" not in history[-1]  # a custom loss: no accuracy is guessed
    assert history[-1]["val_loss"] < 0.2 < history[0]["train_loss"]
    assert trainer.evaluate(Records(data.val))["loss"] == pytest.approx(history[-1]["val_loss"])


def test_a_dataloader_with_bn_drops_a_one_sample_batch_with_one_warning():
    data = blobs(n=24)  # 16 training samples; batches of 15 and 1
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    trainer = tw.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), epochs=2,
                         batch_size=15, progress=False, device="cpu")
    loader = DataLoader(TensorDataset(data.train.x, data.train.y), batch_size=15)
    with pytest.warns(RuntimeWarning, match="a batch of one sample.*was dropped") as rec:
        trainer.fit(loader)
    assert len(rec) == 1 and trainer.step == 2
    wrapped = tw.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), epochs=1,
                         batch_size=15, progress=False, device="cpu")
    with pytest.warns(RuntimeWarning, match="one sample.*it is dropped each epoch"):
        assert wrapped.check(TensorDataset(data.train.x, data.train.y)) == 1


def test_unknown_data_kinds_are_refused_by_name():
    _, trainer = None, tw.Trainer(nn.Linear(5, 3), torch.optim.SGD(nn.Linear(5, 3).parameters(),
                                                                   lr=0.1),
                                  epochs=1, batch_size=4, progress=False, device="cpu")
    with pytest.raises(TypeError, match="got dict"):
        trainer.fit({"x": torch.zeros(3, 5)})
