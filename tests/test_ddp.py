"""Data parallel under torchrun: 2 CPU processes (gloo, loopback) train the one-process run.

The end-to-end tests launch ``torchrun --nproc_per_node=2 -m trainwell train`` on a tiny
config and compare final weights (the newest checkpoint's tensors) with a one-process run of
the same global batch: equal within rtol 1e-5 / atol 1e-6 (the ranks' float32 gradients are
summed in another order; observed differences are ~1e-7). A 2-process run killed with
SIGKILL and resumed under torchrun must end bit-identical to the uninterrupted 2-process
run. The unit tests check the sharded batching and the reduction of epoch metrics without
any process group.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import trainwell as tw
from trainwell.cli import main
from trainwell.data.loaders import ShardedBatchSampler, as_source, shard
from trainwell.doctor.findings import Health
from trainwell.doctor.rules import diagnose_health
from trainwell.train import epoch_log
from trainwell.train.distributed import Distributed
from trainwell.train.epoch_log import EpochLog

TORCHRUN = Path(sys.executable).with_name("torchrun")
EPOCHS = 12
# 400 synthetic samples → 288 train; batch 40: 7 global batches of 40 and a last one of 8,
# so the short batch's weighting is exercised too.
CONFIG = f"""
name = "tiny-ddp"
seed = 0
device = "cpu"

[data]
source = "synthetic"
num_samples = 400

[model]
kind = "mlp"
depth = 2
width = 16

[optim]
name = "adam"
lr = 0.01

[train]
epochs = {EPOCHS}
batch_size = 40
threads = 1
"""

pytestmark = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _torchrun(*args: str) -> subprocess.Popen:
    """Start 2 ranks on the loopback interface, in a process group of their own."""
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo",
           "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(tw.__file__).parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    cmd = [str(TORCHRUN), "--nnodes", "1", "--nproc_per_node", "2", "--master_addr",
           "127.0.0.1", "--master_port", str(_free_port()), "-m", "trainwell", "train", *args,
           "--quiet"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process has gone
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL torchrun and both ranks, as a node failure would.

    torchrun starts each rank in a session of its own, so the ranks' process groups are
    killed one by one, then torchrun's.
    """
    for pid in [*_children(proc.pid), proc.pid]:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.communicate(timeout=30)  # reaps it and closes the output pipe


def _finish(proc: subprocess.Popen, timeout: float = 180) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise
    assert proc.returncode == 0, out
    return out


def _weights(run: Path) -> dict[str, torch.Tensor]:
    newest = sorted((run / "checkpoints").glob("epoch-*.safetensors"))[-1]
    assert newest.name == f"epoch-{EPOCHS:04d}.safetensors"
    return {k: v for k, v in load_file(newest).items() if k.startswith("model/")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A one-process run and an uninterrupted 2-process run of the same config."""
    root = tmp_path_factory.mktemp("ddp")
    cfg = root / "tiny.toml"
    cfg.write_text(CONFIG)
    assert main(["train", str(cfg), "--out", str(root / "one"), "--quiet"]) == 0
    two = root / "runs"
    two.mkdir()
    out = _finish(_torchrun(str(cfg), "--out", str(two / "two")))
    return {"root": root, "cfg": cfg, "one": root / "one", "two": two / "two", "log": out}


def test_two_processes_give_the_one_process_weights_and_one_run_folder(runs):
    one, two = _weights(runs["one"]), _weights(runs["two"])
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-6)
    assert [p.name for p in runs["two"].parent.iterdir()] == ["two"]  # one run folder
    assert list(runs["two"].rglob("metrics.jsonl")) == [runs["two"] / "metrics.jsonl"]
    rows = [json.loads(line) for line in (runs["two"] / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(line) for line in (runs["one"] / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1))
    for r, s in zip(rows, ref):  # summed over ranks: the one-process epoch metrics
        assert r["train_accuracy"] == s["train_accuracy"]
        assert r["train_loss"] == pytest.approx(s["train_loss"], rel=1e-5)
        assert r["val_loss"] == pytest.approx(s["val_loss"], rel=1e-5)
        assert r["skipped_steps"] == 0
    summary = json.loads((runs["two"] / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == EPOCHS * 8
    assert runs["log"].count("run folder:") == 1  # only rank 0 prints


def test_the_doctor_on_rank_zero_sees_the_one_process_losses_and_gradients(runs):
    # Rank 0 probes the unwrapped model after DDP's all-reduce: per-step losses (averaged
    # over ranks) and gradient norms are the global batch's; activation statistics are of
    # rank 0's shard, so only the former are compared.
    one, two = Health.read(runs["one"] / "health.jsonl"), Health.read(runs["two"] / "health.jsonl")
    assert len(two.losses) == EPOCHS * 8
    assert two.losses == pytest.approx(one.losses, rel=1e-5)
    assert [p["step"] for p in two.probes] == [p["step"] for p in one.probes] == [0]
    for p, q in zip(two.probes, one.probes):
        assert p["grad_norm"] == pytest.approx(q["grad_norm"], rel=1e-5)
        for name, layer in p["layers"].items():
            assert layer["grad_norm"] == pytest.approx(q["layers"][name]["grad_norm"], rel=1e-5)
    assert [f.kind for f in diagnose_health(two)] == [f.kind for f in diagnose_health(one)]


def test_a_killed_two_process_run_resumes_to_the_uninterrupted_weights(runs):
    out = runs["root"] / "killed"
    proc = _torchrun(str(runs["cfg"]), "--out", str(out))
    deadline = time.monotonic() + 120
    try:
        while not (out / "checkpoints" / "epoch-0002.json").exists():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.005)
    finally:
        _kill(proc)
    done = sorted((out / "checkpoints").glob("epoch-*.json"))
    assert int(done[-1].stem.split("-")[1]) < EPOCHS, "the run finished before the kill"
    _finish(_torchrun("--resume", str(out)))
    want, got = _weights(runs["two"]), _weights(out)
    assert all(torch.equal(got[k], want[k]) for k in want)
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == list(range(1, EPOCHS + 1))


# -- units: no process group ----------------------------------------------------------------
def test_shard_is_re_exported_by_the_distributed_module():
    from trainwell.train import distributed

    assert distributed.shard is shard


@pytest.mark.parametrize("n,batch,world", [(23, 5, 2), (20, 5, 3), (7, 4, 2)])
def test_in_memory_shards_make_up_the_one_process_batches(n, batch, world):
    x = torch.arange(n, dtype=torch.float32)[:, None]
    y = torch.arange(n)
    whole = as_source((x, y), batch_size=batch, seed=3, device=torch.device("cpu"))
    parts = [as_source((x, y), batch_size=batch, seed=3, device=torch.device("cpu"),
                       rank=r, world_size=world) for r in range(world)]
    ref = [b[1].tolist() for b in whole.epoch(1, torch.device("cpu"))]
    cut = [[b[1].tolist() for b in p.epoch(1, torch.device("cpu"))] for p in parts]
    for i, global_batch in enumerate(ref):
        assert sum((c[i] for c in cut), []) == global_batch
        assert parts[0].global_sizes is not None and parts[0].global_sizes[i] == len(global_batch)


def test_sharded_batch_sampler_loads_only_each_ranks_part_of_the_global_batches():
    data = torch.utils.data.TensorDataset(torch.arange(22.0)[:, None], torch.arange(22))
    whole = as_source(data, batch_size=6, seed=1, device=torch.device("cpu"))
    ref = [b[1].tolist() for b in whole.epoch(4, torch.device("cpu"))]
    parts = [as_source(data, batch_size=6, seed=1, device=torch.device("cpu"), rank=r,
                       world_size=2) for r in range(2)]
    cut = [[b[1].tolist() for b in p.epoch(4, torch.device("cpu"))] for p in parts]
    assert [a + b for a, b in zip(*cut)] == ref
    assert [len(b) for b in cut[1]] == [3, 3, 3, 2]
    assert parts[1].global_sizes == [6, 6, 6, 4]
    with pytest.raises(ValueError, match="last batch of 21 samples holds 1, fewer than the 2"):
        ShardedBatchSampler(21, 5, 0, 0, 2)


def test_epoch_metrics_summed_over_ranks_equal_the_one_process_metrics(monkeypatch):
    # Two ranks' logs of the same global batches: the all-reduce (simulated by adding the
    # other rank's sums) gives the one-process loss and accuracy.
    g = torch.Generator().manual_seed(0)
    losses = torch.rand(6, 4, generator=g, dtype=torch.float64)  # per-sample losses
    preds = torch.randint(0, 3, (6, 4), generator=g)
    truth = torch.randint(0, 3, (6, 4), generator=g)
    sizes = [4, 4, 4, 4, 4, 3]  # the last global batch is short: shards of 2 and 1

    def log_of(cols: slice | None) -> EpochLog:
        log = EpochLog()
        for b, n in enumerate(sizes):
            lo, hi = (0, n) if cols is None else shard(n, cols.start, 2)
            log.losses.append(losses[b, lo:hi].mean())
            log.sizes.append(hi - lo)
            log.predictions.append(preds[b, lo:hi])
            log.targets.append(truth[b, lo:hi])
            log.step_sizes.append(n)
        return log

    one = log_of(None).reduce(torch.device("cpu"))
    ranks = [log_of(slice(r, r + 1)) for r in range(2)]
    sums = [log.sums(torch.device("cpu")) for log in ranks]
    monkeypatch.setattr(epoch_log, "all_reduce_sum", lambda t, info: sums[0] + sums[1])
    info = Distributed(rank=0, world_size=2)
    both = ranks[0].reduce(torch.device("cpu"), info)
    expected_loss = sum(float(losses[b, :n].sum()) for b, n in enumerate(sizes)) / 23
    assert one["train_loss"] == pytest.approx(expected_loss, rel=1e-12)
    assert both["train_loss"] == pytest.approx(expected_loss, rel=1e-12)
    correct = sum(int((preds[b, :n] == truth[b, :n]).sum()) for b, n in enumerate(sizes))
    assert one["train_accuracy"] == both["train_accuracy"] == correct / 23
    assert float(sums[0][2]) == 12 and float(sums[1][2]) == 11  # samples per rank


def test_augment_runs_on_training_batches_only_seeded_per_epoch(tmp_path):
    # The augmentation sees each training batch with a generator seeded from the epoch, so
    # a resumed run (a fresh trainer restored from epoch 1) draws what one run drew.
    seen: list[tuple[int, float]] = []

    def shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        noise = torch.rand((), generator=gen, device=x.device)
        seen.append((len(x), float(noise)))
        return x + noise

    data = tw.data.Dataset(tw.data.Split(torch.randn(20, 3), torch.randint(0, 2, (20,))),
                           tw.data.Split(torch.randn(8, 3), torch.randint(0, 2, (8,))),
                           tw.data.Split(torch.randn(8, 3), torch.randint(0, 2, (8,))),
                           "classification", 2, "t")

    def make(run_dir: Path) -> tw.Trainer:
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        return tw.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), epochs=2,
                          batch_size=10, progress=False, device="cpu", run_dir=run_dir,
                          augment=shift)

    full = make(tmp_path / "a")
    full.fit(data)
    assert [n for n, _ in seen] == [10, 10, 10, 10]  # training only: no val batches of 8
    first = list(seen)
    seen.clear()
    part = make(tmp_path / "b")
    part.fit(data, until=1)
    resumed = make(tmp_path / "b")
    resumed.fit(data, resume=True)
    assert seen == first
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


class _Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        return iter([(torch.tensor([float(i)]), torch.tensor(i)) for i in range(7)])


def test_a_stream_is_sliced_per_rank_and_reports_each_global_batch_size():
    cut, whole = [], []
    for r in range(2):
        src = as_source(_Stream(), batch_size=4, seed=0, device=torch.device("cpu"), rank=r,
                        world_size=2)
        batches = []
        for b in src.epoch(0, torch.device("cpu")):
            batches.append(b[1].tolist())
            whole.append(src.current_global_size)
        cut.append(batches)
    assert cut == [[[0, 1], [4, 5]], [[2, 3], [6]]]
    assert whole == [4, 3, 4, 3]  # what weights rank 1's one sample by 1·2/3, not 1


def test_sync_batch_norm_on_the_cpu_is_one_clear_error():
    from trainwell.train.distributed import wrap

    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    with pytest.raises(ValueError, match="sync_batch_norm: SyncBatchNorm runs only on CUDA"):
        wrap(model, Distributed(rank=0, world_size=2), torch.device("cpu"), sync_batch_norm=True)
    assert wrap(model, Distributed(), torch.device("cpu"), sync_batch_norm=True) is model


# -- accumulation (no_sync) and mid-epoch checkpoints under torchrun -------------------------
ACC_EPOCHS = 4
# accumulate 2 of global batches of 40: 4 optimizer steps an epoch (the last one of 40 + 8
# samples); a checkpoint every 3 steps lands inside epochs, with every rank's log gathered.
ACC_ARGS = ["--set", f"train.epochs={ACC_EPOCHS}", "--set", "train.accumulate=2",
            "--set", "train.checkpoint_every_steps=3"]


def _final_tensors(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "checkpoints" / f"epoch-{ACC_EPOCHS:04d}.safetensors")


@pytest.fixture(scope="module")
def accumulated(runs) -> dict[str, Path]:
    """The accumulate = 2 config trained by one process and (uninterrupted) by two."""
    root = runs["root"]
    assert main(["train", str(runs["cfg"]), *ACC_ARGS, "--out", str(root / "acc-one"),
                 "--quiet"]) == 0
    _finish(_torchrun(str(runs["cfg"]), *ACC_ARGS, "--out", str(root / "acc-two")))
    return {"one": root / "acc-one", "two": root / "acc-two"}


def test_accumulation_under_ddp_gives_the_one_process_weights(accumulated):
    one, two = _final_tensors(accumulated["one"]), _final_tensors(accumulated["two"])
    assert one.keys() == two.keys()
    for key in one:
        if key.startswith("model/"):
            torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-6)
    summary = json.loads((accumulated["two"] / "summary.json").read_text())
    assert summary["steps"] == ACC_EPOCHS * 4 and summary["world_size"] == 2


def test_a_two_process_run_resumes_from_a_mid_epoch_checkpoint_bit_identical(accumulated):
    import shutil

    # The uninterrupted run keeps its last two checkpoints: the mid-epoch one after step 15
    # (batch 6 of epoch 4) and the final one. Without the final one, the copy is the folder
    # a kill right after step 15's checkpoint leaves.
    cut = accumulated["two"].parent / "acc-cut"
    shutil.copytree(accumulated["two"], cut)
    names = sorted(p.name for p in (cut / "checkpoints").glob("epoch-*.json"))
    assert names == ["epoch-0003_step-00000015.json", f"epoch-{ACC_EPOCHS:04d}.json"]
    for suffix in (".json", ".safetensors"):
        (cut / "checkpoints" / f"epoch-{ACC_EPOCHS:04d}{suffix}").unlink()
    meta = json.loads((cut / "checkpoints" / names[0]).read_text())
    position = meta["trainer"]["position"]
    assert position["batch"] == 6 and position["world_size"] == 2
    assert [sum(log["sizes"]) for log in position["logs"]] == [120, 120]  # 3 batches of 40
    _finish(_torchrun("--resume", str(cut)))
    want, got = _final_tensors(accumulated["two"]), _final_tensors(cut)
    assert want.keys() == got.keys() and all(torch.equal(got[k], want[k]) for k in want)
    rows = [json.loads(r) for r in (cut / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(r) for r in (accumulated["two"] / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in ref]  # bit for bit
    assert [r["train_accuracy"] for r in rows] == [r["train_accuracy"] for r in ref]


def test_sync_batch_norm_under_torchrun_on_the_cpu_exits_2_naming_the_field(tmp_path, capsys,
                                                                            monkeypatch):
    # Two processes as the Trainer sees them, without a process group: the check comes
    # before DDP would need one.
    from trainwell.train import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "from_env",
                        lambda device: Distributed(rank=0, world_size=2))
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(CONFIG)
    code = main(["train", str(cfg), "--set", "train.sync_batch_norm=true", "--out",
                 str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == ["error: train.sync_batch_norm: SyncBatchNorm runs only on CUDA; train on GPUs "
                   "or leave it off (each rank's batch norm then sees its shard)"]
    assert not (tmp_path / "run").exists()


def test_sync_batch_norm_in_one_process_is_a_no_op_with_one_note(tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(CONFIG.replace(f"epochs = {EPOCHS}", "epochs = 1"))
    assert main(["train", str(cfg), "--set", "train.sync_batch_norm=true", "--out",
                 str(tmp_path / "run"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("note: train.sync_batch_norm has no effect in one process") == 1


def test_the_loss_carrier_leaves_gradients_exact_and_carries_the_loss():
    """c·sg(ℓ) with c = 0: the weights' gradients are bitwise those of ℓ alone; ∂/∂c = ℓ."""
    from trainwell.train.distributed import LossCarrier

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    wrapped = LossCarrier(model, torch.device("cpu"))
    assert [n for n, _ in wrapped.named_parameters()] == \
        ["carrier"] + [f"model.{n}" for n, _ in model.named_parameters()]
    loss = torch.nn.functional.cross_entropy(wrapped(x), y)
    total = loss + wrapped.term(loss)
    assert float(total.detach()) == float(loss.detach())  # 0·ℓ adds nothing to the value
    total.backward()
    for p, g in zip(model.parameters(), plain):
        assert torch.equal(p.grad, g)
    assert float(wrapped.take()) == float(loss.detach())
    assert wrapped.carrier.grad is None and float(wrapped.carrier.detach()) == 0.0
    with pytest.raises(RuntimeError, match="no backward has run"):
        wrapped.take()


def _nan_on_one_rank_worker(rank: int, port: int, out_dir: str) -> None:
    """Rank 1's loss is +Inf on step 3 (its gradients stay finite): every rank must skip
    that step, and only it."""
    import torch.distributed as dist

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        calls = {"n": 0}

        def loss_fn(out, batch):
            loss = torch.nn.functional.cross_entropy(out, batch[1])
            calls["n"] += 1
            return loss + float("inf") if rank == 1 and calls["n"] == 4 else loss

        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(160, 6, generator=g), torch.randint(0, 3, (160,), generator=g)
        model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        opt = tw.optim.build("adam", model.parameters(), lr=0.01)
        trainer = tw.Trainer(model, opt, epochs=2, batch_size=32, seed=0, device="cpu",
                             progress=False, loss_fn=loss_fn)
        with pytest.warns(RuntimeWarning, match="step 3: the loss is not finite"):
            trainer.fit(torch.utils.data.TensorDataset(x, y))
        torch.save({"skipped": trainer.skipped_steps, "steps": trainer.step,
                    "weights": [p.detach() for p in model.parameters()]},
                   Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_a_non_finite_loss_on_one_rank_skips_that_step_on_every_rank(tmp_path):
    """The carried loss is +Inf on every rank, so both ranks skip step 3 and stay identical
    (the averaged gradients are finite: a guard on the local loss alone would let rank 0
    step and the replicas drift apart)."""
    import torch.multiprocessing as mp

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.start_processes(_nan_on_one_rank_worker, args=(_free_port(), str(tmp_path)), nprocs=2,
                       start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert [r["skipped"] for r in ranks] == [1, 1]
    assert [r["steps"] for r in ranks] == [10, 10]
    for a, b in zip(ranks[0]["weights"], ranks[1]["weights"]):
        assert torch.equal(a, b)
