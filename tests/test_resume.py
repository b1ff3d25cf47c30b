"""Exact resume: a run killed with SIGKILL mid-epoch and resumed ends bit-identical."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainwell as tw

# Big enough that one epoch takes a noticeable time (so the kill lands inside an epoch),
# small enough for CI: synthetic gaussian classes, 4×128 MLP, dropout on (its RNG must resume).
ARGS = ["--set", "data.source=synthetic", "--set", "data.num_samples=12000",
        "--set", "model.depth=4", "--set", "model.width=128", "--set", "model.dropout=0.1",
        "--set", "train.epochs=4", "--set", "train.batch_size=16", "--set", "train.threads=1",
        "--set", "schedule.name=one_cycle", "--set", "name=resume", "--quiet"]


def train(out: Path, *, resume: bool = False) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = ["--resume", str(out), "--quiet"] if resume else [*ARGS, "--out", str(out)]
    log = out.parent / f"{out.name}-{'resume' if resume else 'first'}.log"
    with open(log, "wb") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "trainwell.cli", "train", *argv],
                                env=env, stdout=subprocess.DEVNULL, stderr=err)


def log_of(out: Path, resume: bool = False) -> str:
    return (out.parent / f"{out.name}-{'resume' if resume else 'first'}.log").read_text()[-2000:]


def final_state(run: Path):
    last = sorted((run / "checkpoints").glob("epoch-*.safetensors"))[-1]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    timeless = [{k: v for k, v in m.items() if not k.endswith("_s")} for m in metrics]
    return last.name, load_file(str(last)), timeless


def wait_for_lines(path: Path, n: int, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and len(path.read_text().splitlines()) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended early with code {proc.returncode}")
        time.sleep(0.02)
    raise AssertionError("timed out waiting for the run")


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path):
    ref = tmp_path / "ref"
    p = train(ref)
    assert p.wait(timeout=600) == 0, log_of(ref)
    ref_name, ref_tensors, ref_metrics = final_state(ref)

    killed = tmp_path / "killed"
    p = train(killed)
    wait_for_lines(killed / "metrics.jsonl", 1, p)  # epoch 1 logged; epoch 2 under way
    t_epoch = json.loads((killed / "metrics.jsonl").read_text().splitlines()[0])["epoch_time_s"]
    time.sleep(t_epoch * 0.4)  # well inside epoch 2
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    logged_at_kill = (killed / "metrics.jsonl").read_text().splitlines()
    assert len(logged_at_kill) < 4, "the run finished before it was killed"
    checkpoints_at_kill = sorted(p.name for p in (killed / "checkpoints").glob("epoch-*.json"))
    assert checkpoints_at_kill, "no checkpoint to resume from"

    r = train(killed, resume=True)
    assert r.wait(timeout=600) == 0, log_of(killed, resume=True)
    # The resumed run really continued from the checkpoint: the epochs before it were not
    # trained again (their wall-clock times, which a rerun could not reproduce, are kept).
    resumed_log = (killed / "metrics.jsonl").read_text().splitlines()
    done = int(checkpoints_at_kill[-1][len("epoch-"):-len(".json")])
    assert resumed_log[:done] == logged_at_kill[:done]
    name, tensors, metrics = final_state(killed)
    assert name == ref_name
    assert tensors.keys() == ref_tensors.keys()
    for key in ref_tensors:  # model weights and every optimizer state tensor
        assert (tensors[key] == ref_tensors[key]).all(), key
    assert metrics == ref_metrics


def test_fp16_run_on_a_dataloader_resumes_bit_identically_with_its_loss_scale(tmp_path):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (150,), generator=g)
    x = torch.randn(3, 6, generator=g)[y] * 2 + torch.randn(150, 6, generator=g)
    calls = []

    def loss_fn(out, batch):  # overflows fp16 once (step 2): the scale must halve and persist
        calls.append(1)
        loss = nn.functional.cross_entropy(out.float(), batch[1])
        return loss * 1e30 if len(calls) == 3 else loss

    def run(epochs, run_dir, resume=False):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
        trainer = tw.Trainer(model, torch.optim.Adam(model.parameters(), lr=1e-2), epochs=epochs,
                             batch_size=16, precision="fp16", loss_fn=loss_fn, progress=False,
                             device="cpu", run_dir=run_dir)
        loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
        trainer.fit(loader, resume=resume)
        return model, trainer

    ref, ref_trainer = run(3, tmp_path / "ref")
    calls.clear()
    run(2, tmp_path / "killed")  # as if killed after epoch 2's checkpoint
    model, trainer = run(3, tmp_path / "killed", resume=True)
    assert ref_trainer.skipped_steps == trainer.skipped_steps >= 1  # counted across the resume
    assert trainer.scaler.get_scale() == ref_trainer.scaler.get_scale() < 2.0**16  # halved
    for a, b in zip(ref.parameters(), model.parameters()):
        assert torch.equal(a, b)
    for sa, sb in zip(ref_trainer.optimizer.state.values(), trainer.optimizer.state.values()):
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key
