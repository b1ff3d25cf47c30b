"""The doctor across a mid-epoch resume: ``health.jsonl`` as if the run was never stopped.

The callback writes ``health.jsonl`` at epochs' ends; a mid-epoch checkpoint must carry the
interrupted epoch's step losses and probe records in the callback's state, and a resumed
process must not record the start-only statistics (unit spread, mean bias) again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import trainwell as tw
from trainwell.doctor import DoctorCallback
from trainwell.train.checkpoint import latest_checkpoint, load_checkpoint

SAMPLES, BATCH, EPOCHS, EVERY, PROBE_EVERY = 120, 8, 3, 4, 3  # 15 steps an epoch


class _Stop(Exception):
    """Stands in for a kill in the middle of a step."""


class _StopAt(tw.train.Callback):
    def __init__(self, step: int | None) -> None:
        self.at = step

    def on_step_end(self, trainer, step, loss):
        if step == self.at:
            raise _Stop


def _data() -> tw.data.Dataset:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (SAMPLES + 30,), generator=g)
    x = torch.randn(3, 6, generator=g)[y] * 2 + torch.randn(SAMPLES + 30, 6, generator=g)
    split = tw.data.Split
    return tw.data.Dataset(split(x[:SAMPLES], y[:SAMPLES]), split(x[SAMPLES:], y[SAMPLES:]),
                           None, "classification", 3, "blobs")


def _fit(run_dir: Path, stop: int | None, resume: bool = False) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
    trainer = tw.Trainer(model, torch.optim.Adam(model.parameters(), lr=1e-2), epochs=EPOCHS,
                         batch_size=BATCH, seed=3, progress=False, device="cpu", run_dir=run_dir,
                         checkpoint_every_steps=EVERY,
                         callbacks=[DoctorCallback(every=PROBE_EVERY, num_classes=3),
                                    _StopAt(stop)])
    trainer.fit(_data(), resume=resume)


def _rows(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:  # wall-clock times differ between any two runs
        r.pop("epoch_time_s", None)
    return rows


@pytest.mark.parametrize("stop", [10, 22])  # inside epoch 1 and epoch 2 (checkpoints at 8, 20)
def test_interrupted_and_resumed_run_writes_the_health_of_an_uninterrupted_one(tmp_path, stop):
    _fit(tmp_path / "ref", None)
    with pytest.raises(_Stop):
        _fit(tmp_path / "cut", stop)
    saved = latest_checkpoint(tmp_path / "cut")
    _, meta = load_checkpoint(saved)
    done = stop // EVERY * EVERY
    state = meta["trainer"]["callbacks"][0]
    epoch_start = done // 15 * 15
    assert len(state["losses"]) == done - epoch_start  # the interrupted epoch's steps so far
    assert [p["step"] for p in state["probes"]] == list(range(epoch_start, done, PROBE_EVERY))

    _fit(tmp_path / "cut", None, resume=True)
    ref, cut = _rows(tmp_path / "ref" / "health.jsonl"), _rows(tmp_path / "cut" / "health.jsonl")
    epochs = [r for r in cut if r["type"] == "epoch"]
    assert [len(r["step_losses"]) for r in epochs] == [15, 15, 15]
    assert [r["step"] for r in cut if r["type"] == "probe"] == list(range(0, 45, PROBE_EVERY))
    # Start-only statistics only at the run's first probe, also after the resume.
    assert [("unit_spread" in r["layers"]["0"]) for r in cut if r["type"] == "probe"] == [
        True] + [False] * 14
    assert cut == ref
