"""Mid-epoch checkpoints (``checkpoint_every_steps``): a resume continues at the right batch.

An interrupted run (stopped by an exception after a mid-epoch checkpoint, as a kill would
stop it) and a fresh trainer resuming it must end bit-identical to one uninterrupted run:
weights, optimizer state and every epoch metric but wall-clock times. Covered: in-memory
data, a map-style torch Dataset that trainwell batches (with dropout, so the RNG state must
come back), a user's shuffling DataLoader, accumulation and augmentation. The SIGKILL of a
real ``trainwell train`` is ``test_a_sigkilled_run_resumes_mid_epoch_bit_identical``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import trainwell as tw
from trainwell.cli import main
from trainwell.data.loaders import as_source
from trainwell.errors import UserError
from trainwell.train import trainer as trainer_module
from trainwell.train.checkpoint import latest_checkpoint, load_checkpoint

sys.path.insert(0, str(Path(__file__).parent / "faults"))
from killing import TIMEOUT_S, final_state, finish  # noqa: E402
from killing import start as start_run  # noqa: E402

CPU = torch.device("cpu")
SAMPLES, BATCH, EPOCHS, EVERY = 120, 8, 3, 4  # 15 batches an epoch, 45 steps in all


class _Stop(Exception):
    """Stands in for a kill: raised by a callback in the middle of a step."""


class _StopAt(tw.train.Callback):
    def __init__(self, step: int | None) -> None:
        self.at, self.steps = step, []

    def on_step_end(self, trainer, step, loss):
        self.steps.append(step)
        if step == self.at:
            raise _Stop


class _Counting(torch.utils.data.Dataset):
    """A map-style dataset that records which samples were loaded."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y, self.loaded = x, y, []

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        self.loaded.append(int(i))
        return self.x[i], self.y[i]


def _blobs(n: int = SAMPLES, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    return torch.randn(3, 6, generator=g)[y] * 2 + torch.randn(n, 6, generator=g), y


def _data(kind: str):
    x, y = _blobs()
    if kind == "memory":
        vx, vy = _blobs(30, seed=1)
        split = tw.data.Split
        return tw.data.Dataset(split(x, y), split(vx, vy), split(vx, vy), "classification", 3,
                               "blobs")
    if kind == "torch":
        return _Counting(x, y)
    return DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True)


def _shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return x + 0.1 * torch.randn(x.shape, generator=gen, device=x.device)


def _trainer(run_dir: Path, stop: _StopAt, accumulate: int = 1, augment=None) -> tw.Trainer:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
    return tw.Trainer(model, torch.optim.Adam(model.parameters(), lr=1e-2), epochs=EPOCHS,
                      batch_size=BATCH, seed=3, progress=False, device="cpu", run_dir=run_dir,
                      checkpoint_every_steps=EVERY, accumulate=accumulate, augment=augment,
                      callbacks=[stop, tw.train.CSVLogger(steps=True)])


def _timeless(history):
    return [{k: v for k, v in h.items() if not k.endswith("_s")} for h in history]


@pytest.mark.parametrize("kind,accumulate,augment", [
    ("memory", 1, False), ("memory", 2, True), ("torch", 1, False), ("loader", 1, False)])
def test_a_run_stopped_mid_epoch_resumes_at_the_next_batch_bit_identical(
        tmp_path, kind, accumulate, augment):
    steps = EPOCHS * -(-(SAMPLES // BATCH) // accumulate)
    fn = _shift if augment else None
    ref = _trainer(tmp_path / "ref", _StopAt(None), accumulate, fn)
    ref.fit(_data(kind))
    assert ref.step == steps

    stop_at = steps // 2 + 1  # in the second epoch, after the checkpoint of step EVERY·k
    first = _trainer(tmp_path / "cut", _StopAt(stop_at), accumulate, fn)
    with pytest.raises(_Stop):
        first.fit(_data(kind))
    saved = latest_checkpoint(tmp_path / "cut")
    done = stop_at // EVERY * EVERY  # steps the newest checkpoint holds
    per_epoch = steps // EPOCHS
    assert saved is not None and saved.name == f"epoch-0001_step-{done:08d}.json"
    _, meta = load_checkpoint(saved)
    position = meta["trainer"]["position"]
    assert position["batch"] == (done - per_epoch) * accumulate  # batches of epoch 2 done
    assert position["world_size"] == 1 and len(position["logs"][0]["losses"]) == position["batch"]

    resumed_stop = _StopAt(None)
    data = _data(kind)
    resumed = _trainer(tmp_path / "cut", resumed_stop, accumulate, fn)
    resumed.fit(data, resume=True)
    assert resumed_stop.steps == list(range(done, steps))  # nothing retrained, nothing skipped
    if kind == "torch":  # the batches before the checkpoint were skipped without loading them
        assert len(data.loaded) == 2 * SAMPLES - position["batch"] * BATCH  # epochs 2 and 3
    for a, b in zip(ref.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    for sa, sb in zip(ref.optimizer.state.values(), resumed.optimizer.state.values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert _timeless(resumed.history) == _timeless(ref.history)
    assert "train_accuracy" in resumed.history[1]
    # The CSV logger carried epoch 2's first steps in its state: every step, once, in order.
    steps_csv = (tmp_path / "cut" / "steps.csv").read_text()
    assert steps_csv == (tmp_path / "ref" / "steps.csv").read_text()
    assert len(steps_csv.splitlines()) == 1 + steps


def _batches(src, epoch: int, start: int = 0, restore=None) -> list[list[int]]:
    return [b[1].tolist() for b in src.epoch(epoch, CPU, start=start, restore=restore)]


def test_the_resume_position_gives_the_rest_of_the_epoch_and_restores_before_loading():
    x = torch.arange(23.0)[:, None]
    y = torch.arange(23)
    full = _batches(as_source((x, y), batch_size=5, seed=4, device=CPU), 2)
    assert len(full) == 5
    for start in (1, 3, 4):
        assert _batches(as_source((x, y), batch_size=5, seed=4, device=CPU), 2, start) == \
            full[start:]
        shards = [_batches(as_source((x, y), batch_size=5, seed=4, device=CPU, rank=r,
                                     world_size=2), 2, start) for r in range(2)]
        assert [a + b for a, b in zip(*shards)] == full[start:]
        data = _Counting(x, y)
        calls: list[int] = []
        got = _batches(as_source(data, batch_size=5, seed=4, device=CPU), 2, start,
                       restore=lambda c=calls, d=data: c.append(len(d.loaded)))
        assert got == full[start:]
        assert calls == [0]  # restored once, before the first sample was loaded
        assert sorted(data.loaded) == sorted(sum(full[start:], []))  # skipped ones not loaded
        sharded = _Counting(x, y)
        got = _batches(as_source(sharded, batch_size=5, seed=4, device=CPU, rank=1,
                                 world_size=2), 2, start)
        assert got == [b[3:] if len(b) == 5 else b[len(b) - len(b) // 2:] for b in full[start:]]
        assert len(sharded.loaded) == sum(len(b) for b in got)
    # A user's DataLoader: its own order, reproduced by iterating it from the epoch's seed.
    loader = DataLoader(TensorDataset(x, y), batch_size=5, shuffle=True)
    torch.manual_seed(11)
    whole = _batches(as_source(loader, batch_size=5, seed=0, device=CPU), 0)
    torch.manual_seed(11)
    assert _batches(as_source(loader, batch_size=5, seed=0, device=CPU), 0, 2) == whole[2:]


class _Stream(IterableDataset):
    def __iter__(self):
        x, y = _blobs(40)
        return iter(zip(x, y))


def test_an_iterable_dataset_says_it_restarts_its_epoch_and_gets_no_mid_epoch_checkpoint(tmp_path):
    trainer = _trainer(tmp_path / "run", _StopAt(None))
    with pytest.warns(RuntimeWarning, match="checkpoint_every_steps: an IterableDataset cannot "
                      "be rewound to a batch, so checkpoints stay at epoch ends"):
        trainer.fit(_Stream())
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.json"))
    assert names == ["epoch-0002.json", "epoch-0003.json"]
    with pytest.raises(ValueError, match="start: an IterableDataset cannot be rewound"):
        next(as_source(_Stream(), batch_size=4, seed=0, device=CPU).epoch(0, CPU, start=1))


def test_a_mid_epoch_checkpoint_of_another_world_size_or_edited_is_one_clear_line(tmp_path):
    first = _trainer(tmp_path / "cut", _StopAt(6))
    with pytest.raises(_Stop):
        first.fit(_data("memory"))
    path = latest_checkpoint(tmp_path / "cut")
    assert path is not None and path.name == "epoch-0000_step-00000004.json"
    meta = json.loads(path.read_text())
    position = meta["trainer"]["position"]
    position["world_size"], position["logs"] = 2, position["logs"] * 2
    path.write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"taken mid-epoch by 2 process\(es\), resumed by 1"):
        _trainer(tmp_path / "cut", _StopAt(None)).restore()
    position["logs"][0]["sizes"] = ["8"]
    path.write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"'trainer.position.logs\[\].sizes' is not a list of "
                       "whole numbers"):
        _trainer(tmp_path / "cut", _StopAt(None)).restore()


def test_checkpoint_every_steps_is_checked_by_the_trainer_and_the_config(tmp_path, capsys):
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="checkpoint_every_steps: must be >= 1 or None, got 0"):
        tw.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), epochs=1, batch_size=2,
                   checkpoint_every_steps=0, device="cpu")
    assert main(["train", "--set", "train.checkpoint_every_steps=0", "--out",
                 str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.checkpoint_every_steps" in err[0]
    assert "greater than 0" in err[0]


def test_accumulation_under_ddp_syncs_only_each_steps_last_micro_batch(tmp_path, monkeypatch):
    # 7 batches, accumulate 3: steps of (0, 1, 2), (3, 4, 5) and the short (6,): the last
    # micro-batch of each, the epoch's last included, all-reduces; the others run in no_sync.
    flags: list[bool] = []
    real = trainer_module.grad_sync

    def record(ddp, sync):
        flags.append(sync)
        return real(ddp, sync)

    monkeypatch.setattr(trainer_module, "grad_sync", record)
    model = nn.Linear(6, 3)
    x, y = _blobs(56)
    tw.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), epochs=1, batch_size=8,
               accumulate=3, progress=False, device="cpu").fit((x, y))
    assert flags == [False, False, True, False, False, True, True]


def test_grad_sync_is_ddps_no_sync_for_a_ddp_model(tmp_path):
    from torch.nn.parallel import DistributedDataParallel

    from trainwell.train.distributed import grad_sync

    store = torch.distributed.FileStore(str(tmp_path / "store"), 1)
    torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(nn.Linear(2, 2))
        with grad_sync(ddp, False):
            assert ddp.require_backward_grad_sync is False
        assert ddp.require_backward_grad_sync is True
        with grad_sync(ddp, True):
            assert ddp.require_backward_grad_sync is True
        with grad_sync(nn.Linear(2, 2), False):  # one process: nothing to hold back
            pass
    finally:
        torch.distributed.destroy_process_group()


# -- SIGKILL of a real run (tests/faults/killing.py) ----------------------------------------
@pytest.mark.slow
def test_a_sigkilled_run_resumes_mid_epoch_bit_identical(tmp_path):
    import os
    import signal
    import time

    every = ["--set", "train.checkpoint_every_steps=40"]
    ref = tmp_path / "ref"
    finish(start_run(ref, extra=every))
    want = final_state(ref)

    out = tmp_path / "killed"
    proc = start_run(out, extra=every)
    deadline = time.monotonic() + TIMEOUT_S
    folder = out / "checkpoints"
    # The second epoch's first mid-epoch checkpoint: kill right after it appears.
    while not (folder.is_dir() and any(folder.glob("epoch-0001_step-*.json"))):
        assert proc.poll() is None, "the run ended before its mid-epoch checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    newest = latest_checkpoint(out)
    assert newest is not None and "_step-" in newest.name, newest  # killed mid-epoch
    finish(start_run(out, resume=True))
    got = final_state(out)
    assert got["checkpoint"] == want["checkpoint"]
    assert got["tensors"] == want["tensors"]  # weights and optimizer state, bit for bit
    assert got["metrics"] == want["metrics"] and got["steps"] == want["steps"]
    assert got["final"] == want["final"]
    assert sorted(p.name for p in out.rglob("*.tmp")) == []


def test_checkpoints_are_ordered_by_epoch_then_step_and_leftovers_of_mid_epoch_ones_cleaned(
        tmp_path):
    from trainwell.train.checkpoint import clean_leftovers

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in ("epoch-0002.json", "epoch-0001_step-00000090.json", "epoch-0002_step-00000100.json",
                 "epoch-0001.json"):
        (folder / name).write_text("{}")
    assert latest_checkpoint(tmp_path) == folder / "epoch-0002_step-00000100.json"
    (folder / "epoch-0003.json").write_text("{}")
    assert latest_checkpoint(tmp_path) == folder / "epoch-0003.json"
    orphan = folder / "epoch-0003_step-00000150.safetensors"  # killed before its JSON
    partial = folder / ".epoch-0003_step-00000150.json.abc123.tmp"
    kept = folder / "epoch-0002_step-00000100.safetensors"  # its JSON exists
    for path in (orphan, partial, kept):
        path.write_bytes(b"x")
    assert clean_leftovers(tmp_path) == sorted([orphan, partial])
    assert kept.exists()
