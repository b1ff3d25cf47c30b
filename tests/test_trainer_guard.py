"""The non-finite guard, precision, accumulation, compile and the run-failed signal."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import trainwell as tw
from trainwell.data import Dataset, Split
from trainwell.train import Callback
from trainwell.train.guard import run_failure


def blobs(n=100, seed=0, d=5, k=3):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 3
    y = torch.randint(0, k, (n,), generator=g)
    x = centers[y] + torch.randn(n, d, generator=g)
    cut = int(0.7 * n)
    return Dataset(Split(x[:cut], y[:cut]), Split(x[cut:], y[cut:]), Split(x[cut:], y[cut:]),
                   "classification", k, "blobs")


def bn_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def snapshot(trainer):
    """Every parameter, buffer and optimizer state tensor, cloned."""
    out = {f"model/{k}": v.detach().clone() for k, v in trainer.model.state_dict().items()}
    for i, st in enumerate(trainer.optimizer.state.values()):
        for key, v in st.items():
            if isinstance(v, torch.Tensor):
                out[f"optim/{i}/{key}"] = v.detach().clone()
    return out


class PoisonAt(Callback):
    """Put ``value`` into one gradient element at step ``at``; record the state around it."""

    def __init__(self, at, value=float("inf")):
        self.at, self.value = at, value
        self.before = self.after = None

    def on_step_end(self, trainer, step, loss):
        if step == self.at - 1:  # after the step before: also before the next forward
            self.before = snapshot(trainer)
        if step == self.at:
            self.after = snapshot(trainer)

    def on_after_backward(self, trainer, step):
        if step == self.at:
            trainer.model[3].weight.grad[1, 2] = self.value


@pytest.mark.parametrize("mode, fused", [("host", False), ("amp_args", True),
                                         ("masked", False)])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_a_non_finite_gradient_leaves_weights_state_and_bn_statistics_bit_identical(
        mode, fused, value):
    model = bn_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, fused=fused)
    poison = PoisonAt(2, value)
    trainer = tw.Trainer(model, opt, epochs=1, batch_size=10, progress=False, device="cpu",
                         callbacks=[poison])
    assert trainer._guard.mode == ("amp_args" if fused else "host")
    trainer._guard.mode = mode  # "masked" is the CUDA path for non-fused optimizers
    with pytest.warns(RuntimeWarning, match=r"^step 2: the gradient of 3\.weight is not finite"):
        trainer.fit(blobs())  # 70 samples / 10 = 7 steps
    assert trainer.skipped_steps == 1
    assert poison.before.keys() == poison.after.keys()
    assert any(k.endswith("running_mean") for k in poison.after)
    assert any(k.endswith("exp_avg_sq") for k in poison.after)
    for key, value_before in poison.before.items():  # exact: zero tolerance
        assert torch.equal(poison.after[key], value_before), key
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_the_guarded_paths_agree_with_a_plain_step_when_all_is_finite():
    results = []
    for mode in ("host", "masked"):
        model = bn_model()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        trainer = tw.Trainer(model, opt, epochs=2, batch_size=10, progress=False, device="cpu")
        trainer._guard.mode = mode
        trainer.fit(blobs())
        results.append(snapshot(trainer))
    for key in results[0]:
        assert torch.equal(results[0][key], results[1][key]), key


def test_a_non_finite_loss_is_named_and_every_skip_counts_once():
    model = bn_model()
    calls = []

    def loss_fn(out, batch):
        calls.append(1)
        loss = nn.functional.cross_entropy(out, batch[1])
        return loss * float("nan") if len(calls) in (3, 5) else loss

    trainer = tw.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), epochs=1,
                         batch_size=10, loss_fn=loss_fn, progress=False, device="cpu")
    with pytest.warns(RuntimeWarning, match=r"^step 2: the loss is not finite; the step was skipped"):
        history = trainer.fit(blobs())
    assert trainer.skipped_steps == 2 and history[0]["skipped_steps"] == 2
    assert trainer.failure is None  # 2 of 7


def test_fp16_scaler_and_guard_skip_one_step_once_and_the_scale_halves():
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
    calls = []

    def loss_fn(out, batch):  # finite in fp32, but its scaled gradient overflows fp16
        calls.append(1)
        loss = nn.functional.cross_entropy(out.float(), batch[1])
        return loss * 1e30 if len(calls) == 2 else loss

    trainer = tw.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), epochs=1,
                         batch_size=10, loss_fn=loss_fn, precision="fp16", progress=False,
                         device="cpu")
    history = trainer.fit(blobs())  # the scaler's overflow is routine: counted, not warned
    assert trainer.skipped_steps == 1
    assert history[0]["loss_scale"] == 2.0**15  # torch's initial 2**16, halved once
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains(precision):
    data = blobs(n=300)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.Linear(32, 3))
    trainer = tw.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), epochs=5,
                         batch_size=32, precision=precision, progress=False, device="cpu")
    trainer.fit(data)
    assert trainer.evaluate(data.test)["accuracy"] > 0.9  # 3 separated blobs; chance 1/3
    assert model[0].weight.dtype == torch.float32  # autocast, weights stay fp32


def test_most_steps_skipped_is_a_failed_run():
    class Poison(Callback):
        def on_after_backward(self, trainer, step):
            trainer.model[0].weight.grad[0, 0] = float("nan")

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    trainer = tw.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), epochs=2,
                         batch_size=32, progress=False, device="cpu", callbacks=[Poison()])
    with pytest.warns(RuntimeWarning, match="step 0"):
        trainer.fit(blobs())
    assert trainer.skipped_steps == 6  # 70 samples: 3 steps × 2 epochs, all skipped
    assert trainer.failure == ("run failed: 6 of 6 steps were skipped for non-finite losses "
                               "or gradients; lower the learning rate, clip gradients or check "
                               "the data")


def test_run_failure_rules():
    assert run_failure([{"train_loss": 0.5}], skipped=5, steps=10) is None  # half is not most
    assert run_failure([{"train_loss": 0.5}], skipped=6, steps=10).startswith("run failed: 6 of 10")
    assert "the final loss (train_loss) is nan" in run_failure([{"train_loss": float("nan")}], 0, 10)
    # the validation loss, when logged, is the final loss: one bad training batch is not fatal
    assert run_failure([{"train_loss": float("nan"), "val_loss": 0.3}], 1, 10) is None


def test_bn_with_a_last_batch_of_one_sample_is_merged_with_one_warning():
    data = blobs(n=94)  # 65 training samples: batches of 32, 32 and 1
    model = bn_model()
    trainer = tw.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), epochs=2,
                         batch_size=32, progress=False, device="cpu")
    with pytest.warns(RuntimeWarning, match=r"merged into the batch before \(33 samples\)") as rec:
        trainer.fit(data)
    assert len(rec) == 1
    assert trainer.step == 4  # 2 steps per epoch


def test_accumulate_k_equals_one_k_times_bigger_batch():
    data = blobs(n=143)  # 100 training samples
    finals = []
    for batch, k in [(40, 1), (10, 4)]:  # groups of 40, 40, 20 samples either way
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(5, 32), nn.Tanh(), nn.Linear(32, 3))
        # SGD with momentum, not Adam: Adam's m/√v turns rounding-level differences of
        # near-zero gradients into full-size steps, which says nothing about accumulation.
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        trainer = tw.Trainer(model, opt, epochs=3, batch_size=batch, accumulate=k, progress=False, device="cpu",
                             penalty=tw.optim.penalties.Penalty(l2=1e-3))
        history = trainer.fit(data)
        assert trainer.step == 9
        finals.append(([p.detach().clone() for p in model.parameters()], history[-1]))
    for a, b in zip(finals[0][0], finals[1][0]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)  # float32 rounding of sum orders
    assert finals[0][1]["train_loss"] == pytest.approx(finals[1][1]["train_loss"], rel=1e-5)
    assert finals[0][1]["train_penalty"] == pytest.approx(finals[1][1]["train_penalty"], rel=1e-5)


def test_compile_falls_back_with_one_warning(monkeypatch):
    class Broken(nn.Module):  # what a lazily failing compile looks like: the first call raises
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            raise RuntimeError("no C++ compiler\nsecond line")

    monkeypatch.setattr(torch, "compile", lambda model: Broken(model))
    data = blobs()
    ref_model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    model.load_state_dict(ref_model.state_dict())
    runs = []
    for m, compile_ in [(ref_model, False), (model, True)]:
        trainer = tw.Trainer(m, torch.optim.SGD(m.parameters(), lr=0.1), epochs=2, batch_size=10,
                             compile=compile_, progress=False, device="cpu")
        if compile_:
            with pytest.warns(RuntimeWarning, match=r"compile: torch.compile is unavailable "
                              r"here \(RuntimeError: no C\+\+ compiler\)") as rec:
                runs.append(trainer.fit(data))
            assert len(rec) == 1
        else:
            runs.append(trainer.fit(data))
    for a, b in zip(ref_model.parameters(), model.parameters()):
        assert torch.equal(a, b)

    def unavailable(model):
        raise RuntimeError("Python 3.14 is not supported")

    monkeypatch.setattr(torch, "compile", unavailable)
    with pytest.warns(RuntimeWarning, match="Python 3.14 is not supported"):
        tw.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), epochs=1, batch_size=10,
                   compile=True, progress=False, device="cpu")


def test_host_mode_checks_with_one_pass_and_names_the_culprit(monkeypatch):
    # On the CPU the flag is GradScaler's check (no norms) on healthy steps; a skipped step
    # still names its parameter, and a huge but finite gradient is not skipped there.
    norms = []
    real = torch._foreach_norm
    monkeypatch.setattr(torch, "_foreach_norm", lambda *a, **k: norms.append(1) or real(*a, **k))
    model = bn_model()
    poison, huge = PoisonAt(3), PoisonAt(5, value=1e30)
    trainer = tw.Trainer(model, torch.optim.SGD(model.parameters(), lr=1e-3), epochs=1,
                         batch_size=10, progress=False, device="cpu", callbacks=[poison, huge])
    assert trainer._guard.mode == "host"
    with pytest.warns(RuntimeWarning, match=r"^step 3: the gradient of 3\.weight is not finite"):
        history = trainer.fit(blobs())
    assert history[-1]["skipped_steps"] == 1  # step 3 only: 1e30 is finite
    assert len(norms) == 1  # computed once, for the skipped step's message
    assert not torch.equal(huge.before["model/3.weight"], huge.after["model/3.weight"])
    for key, value in poison.before.items():
        assert torch.equal(value, poison.after[key]), key
