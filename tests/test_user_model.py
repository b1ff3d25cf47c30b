"""A user's own nn.Module and torch Dataset, named in a TOML config: train, kill, resume, doctor.

The model writes its activations as ``F.relu``/``torch.sigmoid`` calls in ``forward`` and
lives in a module beside the config file (no install); the data come as torch
``TensorDataset``s from a function. Everything goes through the real CLI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from trainwell.cli import main

USER_MODULE = '''
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset


class Net(nn.Module):
    """A user's MLP: activations are function calls, init is the user's own."""

    def __init__(self, n_in=20, n_out=4, width=64, depth=3, act="relu", init_std=None):
        super().__init__()
        sizes = [n_in] + [width] * depth
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(width, n_out)
        self.act = {"relu": F.relu, "sigmoid": torch.sigmoid}[act]
        if init_std is not None:  # the classic mistake: N(0, σ²) weights, σ ≫ 1/√n
            for layer in self.layers:
                nn.init.normal_(layer.weight, std=init_std)

    def forward(self, x):
        for layer in self.layers:
            x = self.act(layer(x))
        return self.out(x)


def make_data(n=3000, n_in=20, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, n_in, generator=g) * 1.5
    y = torch.arange(n) % classes
    x = centers[y] + torch.randn(n, n_in, generator=g)
    cut1, cut2 = int(0.7 * n), int(0.85 * n)
    return (TensorDataset(x[:cut1], y[:cut1]), TensorDataset(x[cut1:cut2], y[cut1:cut2]),
            TensorDataset(x[cut2:], y[cut2:]))
'''


@pytest.fixture(autouse=True)
def _fresh_user_module():
    # Each test writes its own user_models.py; in-process runs must not reuse an earlier one.
    sys.modules.pop("user_models", None)
    yield
    sys.modules.pop("user_models", None)


def _config(folder: Path, *, epochs: int = 4, broken: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "user_models.py").write_text(textwrap.dedent(USER_MODULE))
    kwargs = '{ act = "sigmoid", init_std = 4.0, depth = 8 }' if broken else "{}"
    optim = 'name = "sgd"\nlr = 0.1' if broken else 'name = "adam"\nlr = 3e-3'
    path = folder / ("broken.toml" if broken else "user.toml")
    path.write_text(textwrap.dedent(f"""\
        name = "user"
        seed = 0
        device = "cpu"

        [model]
        target = "user_models:Net"
        kwargs = {kwargs}

        [data]
        target = "user_models:make_data"

        [optim]
        {optim}

        [schedule]
        name = "constant"

        [train]
        epochs = {epochs}
        batch_size = 16
        threads = 1
        """))
    return path


def _train(config: Path | None, out: Path, *, resume: bool = False) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = ["--resume", str(out)] if resume else [str(config), "--out", str(out)]
    log = out.parent / f"{out.name}-{'resume' if resume else 'first'}.log"
    with open(log, "wb") as err:
        return subprocess.Popen([sys.executable, "-m", "trainwell.cli", "train", *argv, "--quiet"],
                                env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=out.parent)


def _final(run: Path):
    last = sorted((run / "checkpoints").glob("epoch-*.safetensors"))[-1]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return last.name, load_file(str(last)), [
        {k: v for k, v in m.items() if not k.endswith("_s")} for m in metrics]


@pytest.mark.slow
def test_user_model_on_torch_data_is_killed_and_resumes_bit_identically(tmp_path):
    config = _config(tmp_path / "project")
    ref = tmp_path / "ref"
    p = _train(config, ref)
    assert p.wait(timeout=600) == 0, (tmp_path / "ref-first.log").read_text()[-2000:]
    ref_name, ref_tensors, ref_metrics = _final(ref)
    assert ref_metrics[-1]["val_accuracy"] > 0.8  # the user's model really learned

    killed = tmp_path / "killed"
    p = _train(config, killed)
    deadline = time.monotonic() + 600
    while not list(killed.glob("checkpoints/epoch-*.json")):  # kill after the first checkpoint
        assert p.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    done = len((killed / "metrics.jsonl").read_text().splitlines())
    assert done < 4, "the run finished before it was killed"
    r = _train(None, killed, resume=True)
    assert r.wait(timeout=600) == 0, (tmp_path / "killed-resume.log").read_text()[-2000:]
    name, tensors, metrics = _final(killed)
    assert name == ref_name
    assert tensors.keys() == ref_tensors.keys()
    assert all((tensors[k] == ref_tensors[k]).all() for k in tensors)  # bit-identical
    assert metrics == ref_metrics


def test_a_bad_target_is_one_line_naming_it(tmp_path, capsys):
    config = _config(tmp_path / "p")
    text = config.read_text().replace("user_models:Net", "user_models:Nett")
    config.write_text(text)
    code = main(["train", str(config), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0] == ("error: model.target: 'user_models' has no 'Nett' (target "
                      "'user_models:Nett'); check the name after the colon")
    assert not (tmp_path / "run").exists()


def test_a_target_returning_the_wrong_type_is_one_line(tmp_path, capsys):
    config = _config(tmp_path / "p")
    (tmp_path / "p" / "user_models.py").write_text(
        (tmp_path / "p" / "user_models.py").read_text() + "\n\ndef make_data(**kw):\n    return 42\n")
    code = main(["train", str(config), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: data.target: user_models:make_data returned a int; return a "
                             "trainwell Dataset")


def test_the_doctor_diagnoses_a_broken_user_model(tmp_path, capsys):
    config = _config(tmp_path / "p", broken=True, epochs=8)
    code = main(["doctor", str(config), "--diagnose-only", "--json", "--out", str(tmp_path / "d")])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    kinds = out["kinds"]
    # an 8-layer sigmoid net with N(0, 4²) weights, written with torch.sigmoid in forward: its
    # units saturate and its gradients vanish — the doctor must see it without nn modules
    assert kinds and kinds[0] in ("saturation", "vanishing_gradients"), kinds
