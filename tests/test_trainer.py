"""The Trainer: learning, determinism, events, non-finite steps, schedules, penalties."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import trainwell as tw
from trainwell.data import Dataset, Split
from trainwell.train import Callback


def blobs(n=600, seed=0, d=5, k=3):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 3
    y = torch.randint(0, k, (n,), generator=g)
    x = centers[y] + torch.randn(n, d, generator=g)
    cut1, cut2 = int(0.7 * n), int(0.85 * n)
    return Dataset(Split(x[:cut1], y[:cut1]), Split(x[cut1:cut2], y[cut1:cut2]),
                   Split(x[cut2:], y[cut2:]), "classification", k, "blobs")


def make(seed=0, **kw):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    kw.setdefault("epochs", 5)
    return model, tw.Trainer(model, opt, batch_size=32, seed=seed, progress=False,
                             device="cpu", **kw)


def test_users_own_module_learns_and_history_has_every_epoch():
    data = blobs()
    _, trainer = make()
    history = trainer.fit(data)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    test = trainer.evaluate(data.test)
    assert test["accuracy"] > 0.9  # 3 well-separated blobs; chance is 1/3
    assert set(history[0]) >= {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"}


def test_same_seed_gives_bit_identical_weights():
    data = blobs()
    m1, t1 = make(seed=3)
    m2, t2 = make(seed=3)
    t1.fit(data)
    t2.fit(data)
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_evaluate_matches_a_direct_computation():
    data = blobs()
    model, trainer = make()
    trainer.fit(data)
    with torch.no_grad():
        out = model(data.test.x)
        loss = nn.functional.cross_entropy(out, data.test.y).item()
        acc = (out.argmax(1) == data.test.y).float().mean().item()
    got = trainer.evaluate(data.test)
    assert got["loss"] == pytest.approx(loss, rel=1e-6)
    assert got["accuracy"] == pytest.approx(acc, abs=1e-9)


def test_events_fire_in_order_with_step_counts():
    seen = []

    class Spy(Callback):
        def on_fit_start(self, trainer):
            seen.append("fit_start")

        def on_epoch_start(self, trainer, epoch):
            seen.append(f"epoch_start{epoch}")

        def on_after_backward(self, trainer, step):
            assert all(p.grad is not None for p in trainer.model.parameters())
            seen.append("backward")

        def on_step_end(self, trainer, step, loss):
            seen.append(f"step{step}")

        def on_epoch_end(self, trainer, epoch, metrics):
            metrics["spy"] = epoch
            seen.append(f"epoch_end{epoch}")

        def on_fit_end(self, trainer, history):
            seen.append("fit_end")

    data = blobs(n=100)  # 70 train samples / 32 = 3 steps per epoch
    _, trainer = make(epochs=2, callbacks=[Spy()])
    history = trainer.fit(data)
    assert seen[:2] == ["fit_start", "epoch_start0"]
    assert seen.count("backward") == 6 and "step5" in seen and seen[-1] == "fit_end"
    assert [h["spy"] for h in history] == [0, 1]


def test_non_finite_steps_are_skipped_and_counted():
    data = blobs(n=100)

    class Poison(Callback):
        def on_after_backward(self, trainer, step):
            if step == 1:
                next(trainer.model.parameters()).grad[0, 0] = float("nan")

    model, trainer = make(epochs=1, callbacks=[Poison()], clip=tw.optim.clip.build("global_norm", 1e3))
    with pytest.warns(RuntimeWarning, match=r"^step 1: the gradient of 0\.weight is not finite"):
        trainer.fit(data)
    assert trainer.skipped_steps == 1
    assert trainer.failure is None  # 1 of 3 steps skipped: not "most"
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_stop_training_ends_after_the_epoch():
    class Stop(Callback):
        def on_epoch_end(self, trainer, epoch, metrics):
            trainer.stop_training = epoch == 1

    _, trainer = make(epochs=5, callbacks=[Stop()])
    assert len(trainer.fit(blobs(n=100))) == 2


def test_a_schedule_sets_the_lr_each_step():
    data = blobs(n=100)
    sched = tw.optim.schedules.exponential(0.1, 10)
    _, trainer = make(epochs=2, schedule=sched)
    history = trainer.fit(data)
    steps = trainer.step
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.1 ** ((steps - 1) / 10))
    assert history[-1]["lr"] == pytest.approx(0.1 * 0.1 ** ((steps - 1) / 10))


def test_a_fixed_length_schedule_that_does_not_fit_is_refused_before_training():
    data = blobs(n=100)  # 3 steps per epoch → 6 steps in 2 epochs
    sched = tw.optim.schedules.one_cycle(0.1, total_steps=1000)
    model, trainer = make(epochs=2, schedule=sched)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(tw.UserError, match=r"built for 1000 steps but the run has 6 \(2 epochs × 3 batches\)"):
        trainer.fit(data)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_penalty_is_added_to_the_loss_and_logged_apart():
    data = blobs(n=100)
    pen = tw.optim.penalties.Penalty(l2=1e-2)
    model, trainer = make(epochs=1, penalty=pen)
    history = trainer.fit(data)
    assert history[0]["train_penalty"] > 0
    expected = 1e-2 * sum(float((m.weight.detach().double() ** 2).sum()) for m in model if isinstance(m, nn.Linear))
    assert float(pen(model).detach()) == pytest.approx(expected, rel=1e-5)


def test_regression_uses_mse_and_reports_no_accuracy():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 4, generator=g)
    y = (x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]]))
    data = Dataset(Split(x[:200], y[:200]), Split(x[200:250], y[200:250]), Split(x[250:], y[250:]),
                   "regression", None, "linear")
    model = nn.Linear(4, 1)
    trainer = tw.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.05), epochs=30,
                         batch_size=20, progress=False, device="cpu")
    history = trainer.fit(data)
    assert "train_accuracy" not in history[0]
    assert trainer.evaluate(data.test)["loss"] < 1e-3
    assert math.isclose(float(model.weight.detach()[0, 1]), -2.0, abs_tol=0.05)


def test_grad_norm_before_clipping_is_logged_every_step():
    data = blobs(n=100)  # 3 steps per epoch
    norms = []

    class Record(Callback):
        def on_after_backward(self, trainer, step):
            norms.append(float(torch.sqrt(sum((p.grad.double() ** 2).sum()
                                              for p in trainer.model.parameters()))))

    _, trainer = make(epochs=2, clip=tw.optim.clip.build("global_norm", 1e-3), callbacks=[Record()])
    history = trainer.fit(data)
    logged = history[0]["grad_norms"] + history[1]["grad_norms"]
    assert logged == pytest.approx(norms, rel=1e-6)
    assert history[1]["grad_norm_max"] == pytest.approx(max(norms[3:]), rel=1e-6)
    _, plain = make(epochs=1)
    assert "grad_norms" not in plain.fit(data)[0]
    _, asked = make(epochs=1, log_grad_norm=True)
    assert len(asked.fit(data)[0]["grad_norms"]) == 3


def test_nll_takes_log_probabilities_as_in_torch_and_a_log_softmax_head_trains():
    data = blobs()
    out = torch.randn(7, 3, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    nll = tw.train.LOSSES["nll"](torch.log_softmax(out, 1), y)
    assert float(nll) == pytest.approx(float(nn.functional.cross_entropy(out, y)), rel=1e-6)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.Linear(32, 3), nn.LogSoftmax(dim=1))
    trainer = tw.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), epochs=5,
                         batch_size=32, loss="nll", progress=False, device="cpu")
    trainer.fit(data)
    assert trainer.evaluate(data.test)["accuracy"] > 0.9  # chance 1/3; probabilities gave 12%


def test_fit_until_pauses_and_a_later_fit_continues_the_same_run():
    data = blobs(n=100)
    m1, t1 = make(epochs=4)
    t1.fit(data)
    m2, t2 = make(epochs=4)
    assert len(t2.fit(data, until=2)) == 2 and t2.epoch == 2
    assert len(t2.fit(data)) == 4
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))
