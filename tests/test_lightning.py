"""DoctorCallback under a real ``lightning.pytorch.Trainer`` (CPU, one thread, tiny data)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

# The adapter is optional (`trainwell[lightning]`); CI installs it through the `test` extra.
L = pytest.importorskip("lightning.pytorch")

from trainwell.integrations import lightning as tw_lightning  # noqa: E402
from trainwell.integrations.lightning import DoctorCallback  # noqa: E402

pytestmark = [
    # Lightning's advice for real runs, not faults of these tiny CPU fits: a DataLoader
    # without worker processes, and fewer batches per epoch than its logging interval.
    pytest.mark.filterwarnings("ignore:The '\\w+_dataloader' does not have many workers"),
    pytest.mark.filterwarnings("ignore:The number of training batches .* is smaller than"),
    # lightning 2.6.6 still builds torch's pytree LeafSpec, which torch 2.13 deprecates
    pytest.mark.filterwarnings(
        "ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning"
    ),
]

N_TRAIN, BATCH = 256, 32  # 8 optimizer steps per epoch
DIM = 16


def _data(seed: int, n: int) -> TensorDataset:
    """Two Gaussian blobs 1.0 apart per coordinate (distance 4): linearly separable enough."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, DIM, generator=g) + (y.float() - 0.5)[:, None]
    return TensorDataset(x, y)


def _loaders(seed: int = 0) -> tuple[DataLoader, DataLoader]:
    shuffle = torch.Generator().manual_seed(seed)
    train = DataLoader(_data(seed, N_TRAIN), batch_size=BATCH, shuffle=True, generator=shuffle)
    return train, DataLoader(_data(seed + 1, 256), batch_size=256)


class Classifier(L.LightningModule):
    """A plain user's module: a net, cross-entropy, `val_loss`/`val_acc` logged as users do."""

    def __init__(self, net: nn.Module, make_optimizer) -> None:
        super().__init__()
        self.net = net
        self.make_optimizer = make_optimizer
        self.batch_losses: list[float] = []  # what training_step returned, for exact checks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.batch_losses.append(float(loss.detach()))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        out = self(x)
        self.log("val_loss", F.cross_entropy(out, y))
        self.log("val_acc", (out.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return self.make_optimizer(self.parameters())


def _relu_mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(DIM, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2)
    )


def _deep_sigmoid_mlp(depth: int = 20, width: int = 64) -> nn.Module:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(DIM if i == 0 else width, width), nn.Sigmoid()]
    net = nn.Sequential(*layers, nn.Linear(width, 2))
    for m in net.modules():
        if isinstance(m, nn.Linear):  # the textbook fault: N(0, 1) weights and biases
            nn.init.normal_(m.weight, 0.0, 1.0)
            nn.init.normal_(m.bias, 0.0, 1.0)
    return net


def _trainer(root: Path, epochs: int, callbacks: list, **kw) -> L.Trainer:
    args = dict(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=callbacks,
    )
    return L.Trainer(**(args | kw))


def _fit(net: nn.Module, make_opt, root: Path, epochs: int, doctor: DoctorCallback, **kw):
    torch.manual_seed(0)
    module = Classifier(net, make_opt)
    trainer = _trainer(root, epochs, [doctor], **kw)
    trainer.fit(module, *_loaders())
    return module, trainer


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # 2 shared cores: more threads only spin (conftest restores)


# ---- end to end ---------------------------------------------------------------------
@pytest.mark.slow
def test_healthy_mlp_gets_no_finding_and_files_in_default_root(tmp_path, capsys):
    doctor = DoctorCallback(every=4, num_classes=2)  # no dirpath: trainer.default_root_dir
    module, trainer = _fit(_relu_mlp(), lambda p: torch.optim.Adam(p, lr=1e-2), tmp_path, 3, doctor)
    assert float(trainer.callback_metrics["val_acc"]) > 0.9  # it did learn
    assert doctor.findings() == []
    assert doctor.out_dir == tmp_path
    recs = _records(tmp_path / "health.jsonl")
    steps = 3 * N_TRAIN // BATCH  # 24 optimizer steps
    probes = [r for r in recs if r["type"] == "probe"]
    assert [p["step"] for p in probes] == list(range(0, steps, 4))  # 6 probes
    assert set(probes[0]["layers"]) == {"net.0", "net.2", "net.4"}
    assert all(p["layers"]["net.0"]["grad_norm"] > 0 for p in probes)
    epochs = [r for r in recs if r["type"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    # val_acc is what the module logs; the doctor's rules read val_accuracy
    assert epochs[-1]["val_accuracy"] == pytest.approx(float(trainer.callback_metrics["val_acc"]))
    assert epochs[-1]["val_loss"] == pytest.approx(float(trainer.callback_metrics["val_loss"]))
    losses = [v for r in recs for v in r.get("step_losses", [])]
    assert losses == pytest.approx(module.batch_losses, rel=1e-6)
    report = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "id='healthy'" in report and "<svg class='plot'" in report
    out = capsys.readouterr().out
    assert f"trainwell doctor: no finding, the run looks healthy [report: {tmp_path}" in out
    # hooks are gone: the user's model is left as it was given
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())


@pytest.mark.slow
def test_learning_rate_far_too_high_is_the_primary_finding(tmp_path, capsys):
    doctor = DoctorCallback(every=4, num_classes=2, dirpath=tmp_path / "run")
    _fit(_relu_mlp(), lambda p: torch.optim.SGD(p, lr=5.0), tmp_path, 3, doctor)
    findings = doctor.findings()
    assert findings and findings[0].kind == "lr_too_high"
    assert findings[0].evidence["update_ratio_peak"] > 1.0  # steps larger than the weights
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out.startswith("trainwell doctor: lr_too_high")
    assert out.endswith(f"[report: {tmp_path / 'run' / 'report.html'}]")
    report = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "<td>lr_too_high (primary, confidence " in report  # the primary cause first
    probes = [r for r in _records(tmp_path / "run" / "health.jsonl") if r["type"] == "probe"]
    assert len(probes) == math.ceil(3 * N_TRAIN // BATCH / 4)


@pytest.mark.slow
def test_deep_sigmoid_with_normal_init_is_saturated(tmp_path):
    doctor = DoctorCallback(every=4, num_classes=2, dirpath=tmp_path, verbose=False)
    _fit(_deep_sigmoid_mlp(), lambda p: torch.optim.SGD(p, lr=1.0), tmp_path, 3, doctor)
    kinds = [f.kind for f in doctor.findings()]
    assert "saturation" in kinds
    saturated = next(f for f in doctor.findings() if f.kind == "saturation")
    assert saturated.layers and all(name.startswith("net.") for name in saturated.layers)
    probes = [r for r in _records(tmp_path / "health.jsonl") if r["type"] == "probe"]
    assert len(probes) == 6 and len(probes[0]["layers"]) == 21  # 20 hidden layers + head


@pytest.mark.slow
def test_accumulation_logger_folder_and_mean_window_loss(tmp_path):
    """One record per optimizer step; the files go to the logger's versioned folder."""
    doctor = DoctorCallback(every=2, num_classes=2)
    logger = L.loggers.CSVLogger(tmp_path)
    module, trainer = _fit(
        _relu_mlp(),
        lambda p: torch.optim.Adam(p, lr=1e-2),
        tmp_path,
        1,
        doctor,
        logger=logger,
        accumulate_grad_batches=2,
    )
    folder = tmp_path / "lightning_logs" / "version_0"
    assert doctor.out_dir == folder and (folder / "report.html").is_file()
    recs = _records(folder / "health.jsonl")
    losses = [v for r in recs for v in r.get("step_losses", [])]
    b = module.batch_losses  # 8 batches → 4 optimizer steps, each the mean of its 2 batches
    assert losses == pytest.approx([(b[i] + b[i + 1]) / 2 for i in range(0, 8, 2)], rel=1e-6)
    assert [r["step"] for r in recs if r["type"] == "probe"] == [0, 2]


@pytest.mark.slow
def test_only_global_rank_zero_writes(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(L.Trainer, "is_global_zero", property(lambda self: False))
    doctor = DoctorCallback(every=4, num_classes=2, dirpath=tmp_path / "run")
    _fit(_relu_mlp(), lambda p: torch.optim.Adam(p, lr=1e-2), tmp_path, 1, doctor)
    assert not (tmp_path / "run").exists()
    assert "trainwell doctor" not in capsys.readouterr().out
    assert len(doctor.watcher.health.probes) == 2  # it still watched: findings() works here


@pytest.mark.slow
def test_crash_in_training_step_removes_hooks_and_keeps_the_record(tmp_path):
    class Crashes(Classifier):
        def training_step(self, batch, batch_idx):
            if self.global_step == 5:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    torch.manual_seed(0)
    module = Crashes(_relu_mlp(), lambda p: torch.optim.Adam(p, lr=1e-2))
    doctor = DoctorCallback(every=4, num_classes=2, dirpath=tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        _trainer(tmp_path, 1, [doctor]).fit(module, *_loaders())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())
    assert len(module.batch_losses) == 5
    recs = _records(tmp_path / "health.jsonl")
    assert [r["step"] for r in recs if r["type"] == "probe"] == [0, 4]
    assert len([v for r in recs for v in r.get("step_losses", [])]) == 5


@pytest.mark.slow
def test_manual_optimization_records_each_step_loss(tmp_path):
    class Manual(Classifier):
        def __init__(self, *args) -> None:
            super().__init__(*args)
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            loss = super().training_step(batch, batch_idx)
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
            return {"loss": loss.detach(), "batch_size": len(batch[0])}  # a dict, not a tensor

    torch.manual_seed(0)
    module = Manual(_relu_mlp(), lambda p: torch.optim.Adam(p, lr=1e-2))
    doctor = DoctorCallback(every=3, num_classes=2, dirpath=tmp_path, verbose=False)
    _trainer(tmp_path, 1, [doctor]).fit(module, *_loaders())
    recs = _records(tmp_path / "health.jsonl")
    assert [v for r in recs for v in r.get("step_losses", [])] == pytest.approx(
        module.batch_losses, rel=1e-6
    )
    probes = [r for r in recs if r["type"] == "probe"]
    assert [p["step"] for p in probes] == [0, 3, 6]
    assert all(p["layers"]["net.4"]["update_ratio"] > 0 for p in probes)  # Adam moved the head


@pytest.mark.slow
def test_standalone_pytorch_lightning_trainer_drives_it(tmp_path):
    """`import pytorch_lightning as pl` users: its Trainer calls the same hooks by name."""
    pl = pytest.importorskip("pytorch_lightning")

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = _relu_mlp()

        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    torch.manual_seed(0)
    doctor = DoctorCallback(every=4, num_classes=2, dirpath=tmp_path, verbose=False)
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[doctor],
    )
    trainer.fit(Module(), _loaders()[0])
    probes = [r for r in _records(tmp_path / "health.jsonl") if r["type"] == "probe"]
    assert [p["step"] for p in probes] == [0, 4]
    assert (tmp_path / "report.html").is_file()


# ---- pieces -------------------------------------------------------------------------
def test_epoch_metrics_names_the_rules_read():
    doctor = DoctorCallback(metric_names={"val_loss": "valid/loss"})
    logged = {
        "valid/loss": torch.tensor(0.25),
        "val_acc": torch.tensor(0.75),
        "train_loss_epoch": torch.tensor(0.5),
        "epoch": torch.tensor(7.0),  # would overwrite the doctor's own epoch counter
        "per_class": torch.tensor([0.1, 0.9]),  # not a scalar: not a metric row value
        "lr": 0.01,
    }
    assert doctor._epoch_metrics(logged) == {
        "valid/loss": 0.25,
        "val_loss": 0.25,
        "val_acc": 0.75,
        "val_accuracy": 0.75,
        "train_loss_epoch": 0.5,
        "train_loss": 0.5,
        "lr": 0.01,
    }


def test_every_must_be_positive():
    with pytest.raises(ValueError, match="every: must be >= 1"):
        DoctorCallback(every=0)
    assert DoctorCallback().findings() == []  # before any fit


def test_missing_lightning_is_one_clear_import_error(monkeypatch):
    for name in ("lightning.pytorch", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: import fails
    path = Path(tw_lightning.__file__)
    spec = importlib.util.spec_from_file_location("trainwell.integrations.lightning", path)
    assert spec is not None and spec.loader is not None
    fresh = importlib.util.module_from_spec(spec)
    with pytest.raises(ImportError, match=r"pip install 'trainwell\[lightning\]'"):
        spec.loader.exec_module(fresh)


def test_public_names_carry_docstrings():
    assert tw_lightning.__all__ == ["DoctorCallback"]
    for name in ("__init__", "findings") + tuple(
        n for n in vars(DoctorCallback) if n.startswith("on_")
    ):
        doc = (
            getattr(DoctorCallback, name).__doc__ if name != "__init__" else DoctorCallback.__doc__
        )
        assert doc and len(doc.split()) >= 3, f"DoctorCallback.{name} needs a docstring"
