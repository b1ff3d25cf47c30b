"""CSV and TensorBoard loggers: exact file contents, resume without duplicates."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from _tiny_run import Recorder, blobs, trainer
from trainwell.errors import UserError
from trainwell.train import CSVLogger, TensorBoardLogger, loggers
from trainwell.train.loggers import scalar_metrics

EPOCH_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                 "skipped_steps", "epoch_time_s", "samples_per_s"]


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_metrics_csv_has_the_header_and_every_epochs_exact_values(tmp_path):
    t = trainer(tmp_path, [CSVLogger()])
    history = t.fit(blobs())
    header, *rows = read_csv(tmp_path / "metrics.csv")
    assert header == EPOCH_COLUMNS
    assert len(rows) == 3
    for row, h in zip(rows, history):
        for key, cell in zip(header, row):
            assert float(cell) == h[key]  # repr round-trips floats bit for bit
    assert [int(r[0]) for r in rows] == [1, 2, 3]


def test_steps_csv_has_every_step_loss(tmp_path):
    rec = Recorder()
    trainer(tmp_path, [rec, CSVLogger(steps=True)]).fit(blobs())
    header, *rows = read_csv(tmp_path / "steps.csv")
    assert header == ["epoch", "step", "loss"]
    # 80 training samples, batch 32 → 3 steps an epoch, 9 in all
    assert [(int(e), int(s)) for e, s, _ in rows] == [(e, s) for s in range(9)
                                                       for e in [s // 3 + 1]]
    assert [float(v) for _, _, v in rows] == [loss for _, loss in rec.losses]


def test_keys_added_by_a_later_callback_appear(tmp_path):
    class AddKey(Recorder):
        def on_epoch_end(self, trainer, epoch, metrics):
            metrics["extra"] = 10 * (epoch + 1)
            metrics["note_list"] = [1, 2]  # not a scalar: never a column

    trainer(tmp_path, [CSVLogger(), AddKey()]).fit(blobs())
    header, *rows = read_csv(tmp_path / "metrics.csv")
    assert header == [*EPOCH_COLUMNS, "extra"]
    assert [r[-1] for r in rows] == ["10", "20", "30"]


def test_resume_continues_both_files_without_duplicates(tmp_path):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref = Recorder()
    trainer(ref_dir, [ref, CSVLogger(steps=True)]).fit(blobs())
    trainer(run_dir, [CSVLogger(steps=True)], epochs=2).fit(blobs())
    # What a kill inside epoch 3 leaves: its steps appended (and a torn line), no checkpoint.
    with open(run_dir / "steps.csv", "a", encoding="utf-8") as f:
        f.write("3,6,0.5\n3,7,0.4\n3,8")
    trainer(run_dir, [CSVLogger(steps=True)], epochs=3).fit(blobs(), resume=True)
    ref_steps, run_steps = read_csv(ref_dir / "steps.csv"), read_csv(run_dir / "steps.csv")
    assert run_steps == ref_steps  # exact resume: the same losses, each step once
    assert len(run_steps) == 1 + 9
    timeless = [c for c in EPOCH_COLUMNS if not c.endswith("_s")]
    ref_rows, run_rows = read_csv(ref_dir / "metrics.csv"), read_csv(run_dir / "metrics.csv")
    assert run_rows[0] == ref_rows[0]
    pick = [EPOCH_COLUMNS.index(c) for c in timeless]
    assert [[r[i] for i in pick] for r in run_rows[1:]] == [[r[i] for i in pick]
                                                             for r in ref_rows[1:]]


def test_no_run_dir_writes_nothing_and_an_explicit_folder_works(tmp_path):
    trainer(None, [CSVLogger(steps=True)]).fit(blobs())
    assert list(tmp_path.iterdir()) == []
    trainer(None, [CSVLogger(tmp_path / "logs", filename="m.csv")]).fit(blobs())
    assert len(read_csv(tmp_path / "logs" / "m.csv")) == 4


def test_scalar_metrics_keeps_numbers_only():
    m = {"epoch": 2, "loss": 0.25, "flag": True, "grad_norms": [1.0], "name": "x"}
    assert scalar_metrics(m) == {"epoch": 2, "loss": 0.25}
    assert json.dumps(scalar_metrics(m)) == '{"epoch": 2, "loss": 0.25}'


class FakeDoctor:
    """Stands in for DoctorCallback: only ``health.probes`` is read."""

    class health:  # noqa: N801 - mirrors the attribute name
        probes = [{"step": 0, "layers": {"0": {"grad_norm": 1e-32}, "2": {"grad_norm": 0.5}}},
                  {"step": 4, "layers": {"0": {"grad_norm": 0.0}, "2": {"grad_norm": 2.0}}}]


# tensorboard and its protobuf may warn on import; the warnings are not ours
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tensorboard_scalars_and_doctor_histograms(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rec = Recorder()
    t = trainer(tmp_path, [rec, TensorBoardLogger(steps=True, doctor=FakeDoctor())])
    history = t.fit(blobs())
    acc = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0,
                                                                         "histograms": 0})
    acc.Reload()
    steps = acc.Scalars("step/loss")
    assert [e.step for e in steps] == list(range(1, 10))
    assert [e.value for e in steps] == [torch.tensor(v).float().item() for _, v in rec.losses]
    val = acc.Scalars("epoch/val_loss")
    assert [e.step for e in val] == [3, 6, 9]
    assert [e.value for e in val] == [torch.tensor(h["val_loss"]).float().item() for h in history]
    assert [e.value for e in acc.Scalars("doctor/grad_norm/2")] == [0.5, 2.0]
    assert [e.step for e in acc.Histograms("doctor/log10_grad_norm")] == [1, 5]
    first = acc.Histograms("doctor/log10_grad_norm")[0].histogram_value
    assert (first.min, first.max) == (-32.0, pytest.approx(-0.30103, abs=1e-5))


def test_tensorboard_missing_package_fails_at_construction(monkeypatch):
    monkeypatch.setattr(loggers, "_tensorboard_installed", lambda: False)
    with pytest.raises(UserError, match=r"^TensorBoardLogger: .*trainwell\[tensorboard\]"):
        TensorBoardLogger()


def test_tensorboard_unimportable_says_what_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setattr(loggers, "_tensorboard_installed", lambda: True)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(ModuleNotFoundError, match=r"trainwell\[tensorboard\]"):
        trainer(tmp_path, [TensorBoardLogger()]).fit(blobs())


class FakeWriter:
    """Records what TensorBoardLogger asks of torch's SummaryWriter (tensorboard not needed)."""

    made: list[FakeWriter] = []

    def __init__(self, log_dir, purge_step=None):
        self.log_dir, self.purge_step = log_dir, purge_step
        self.scalars: dict[str, list[tuple[int, float]]] = {}
        self.histograms: dict[str, list[tuple[int, list[float]]]] = {}
        self.closed = False
        FakeWriter.made.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.setdefault(tag, []).append((step, value))

    def add_histogram(self, tag, values, step):
        self.histograms.setdefault(tag, []).append((step, values.tolist()))

    def flush(self):
        pass

    def close(self):
        self.closed = True


@pytest.fixture
def fake_tensorboard(monkeypatch):
    import sys
    import types

    module = types.ModuleType("torch.utils.tensorboard")
    module.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", module)
    monkeypatch.setattr(loggers, "_tensorboard_installed", lambda: True)
    FakeWriter.made = []
    return FakeWriter.made


def test_tensorboard_logger_calls_with_a_fake_writer(tmp_path, fake_tensorboard):
    rec = Recorder()
    history = trainer(tmp_path, [rec, TensorBoardLogger(doctor=FakeDoctor())]).fit(blobs())
    (w,) = fake_tensorboard
    assert (w.log_dir, w.purge_step, w.closed) == (str(tmp_path / "tensorboard"), None, True)
    assert w.scalars["step/loss"] == [(s + 1, v) for s, v in rec.losses]
    assert w.scalars["epoch/val_accuracy"] == [(3 * (i + 1), h["val_accuracy"])
                                               for i, h in enumerate(history)]
    assert "epoch/grad_norms" not in w.scalars
    assert w.scalars["doctor/grad_norm/0"] == [(1, 1e-32), (5, 0.0)]
    assert w.histograms["doctor/grad_norm"] == [(1, [1e-32, 0.5]), (5, [0.0, 2.0])]
    logs = w.histograms["doctor/log10_grad_norm"]
    assert [s for s, _ in logs] == [1, 5]
    assert logs[0][1] == pytest.approx([-32.0, -0.3010299956639812], abs=1e-12)
    assert logs[1][1][0] == pytest.approx(-307.6526555685888)  # 0 floored at float64's tiny
    assert logs[1][1][1] == pytest.approx(0.3010299956639812)


def test_tensorboard_resume_purges_past_the_checkpoint(tmp_path, fake_tensorboard):
    trainer(tmp_path, [TensorBoardLogger(doctor=FakeDoctor())], epochs=2).fit(blobs())
    trainer(tmp_path, [TensorBoardLogger(doctor=FakeDoctor())], epochs=3).fit(blobs(),
                                                                             resume=True)
    first, second = fake_tensorboard
    assert first.purge_step is None and second.purge_step == 7  # 6 steps were checkpointed
    assert [s for s, _ in second.scalars["step/loss"]] == [7, 8, 9]
    assert [s for s, _ in second.scalars["epoch/train_loss"]] == [9]
    assert "doctor/grad_norm/0" not in second.scalars  # probes at steps 0, 4 were logged before


def test_tensorboard_reads_the_real_doctors_probe_records(tmp_path, fake_tensorboard):
    from trainwell.doctor import DoctorCallback

    doctor = DoctorCallback(every=4)
    trainer(tmp_path, [doctor, TensorBoardLogger(steps=False, doctor=doctor)]).fit(blobs())
    (w,) = fake_tensorboard
    probes = doctor.health.probes
    assert probes and "step/loss" not in w.scalars
    assert [s for s, _ in w.histograms["doctor/grad_norm"]] == [p["step"] + 1 for p in probes]
    for name in doctor.health.layer_names:
        assert w.scalars[f"doctor/grad_norm/{name}"] == [
            (p["step"] + 1, p["layers"][name]["grad_norm"]) for p in probes]
