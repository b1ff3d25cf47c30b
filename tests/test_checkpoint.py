"""Checkpoints: exact round trip, corruption, and checkpoints of another model."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch
from torch import nn

from trainwell import UserError
from trainwell.train.checkpoint import (
    apply_model_state,
    apply_optimizer_state,
    atomic_write_text,
    clean_leftovers,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)


def model_and_optimizer(width=8):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, 2))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2, betas=(0.8, 0.9))
    m(torch.randn(4, 3)).sum().backward()
    opt.step()
    return m, opt


def trainer_state(epoch):
    return {"epoch": epoch, "step": 3 * epoch, "skipped_steps": 0, "history": []}


def test_round_trip_is_exact_and_keeps_only_the_newest(tmp_path):
    m, opt = model_and_optimizer()
    for epoch in (1, 2, 3):
        save_checkpoint(tmp_path, epoch, m, opt, trainer_state(epoch))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "epoch-0002.json", "epoch-0002.safetensors", "epoch-0003.json", "epoch-0003.safetensors"]
    path = latest_checkpoint(tmp_path)
    tensors, meta = load_checkpoint(path)
    m2, opt2 = model_and_optimizer()
    with torch.no_grad():
        for p in m2.parameters():
            p.add_(1.0)
    apply_model_state(m2, tensors, str(path))
    apply_optimizer_state(opt2, tensors, meta, str(path))
    for a, b in zip(m.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    for idx in s1["state"]:
        for k in s1["state"][idx]:
            assert torch.equal(torch.as_tensor(s1["state"][idx][k]), torch.as_tensor(s2["state"][idx][k]))
    assert s2["param_groups"][0]["betas"] == (0.8, 0.9)
    assert meta["trainer"] == trainer_state(3)


def test_a_corrupt_tensor_file_is_refused_with_its_name(tmp_path):
    m, opt = model_and_optimizer()
    path = save_checkpoint(tmp_path, 1, m, opt, {})
    f = path.with_suffix(".safetensors")
    data = bytearray(f.read_bytes())
    data[-5] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"epoch-0001.safetensors: corrupt \(SHA-256 does not match"):
        load_checkpoint(path)


def test_a_truncated_json_is_refused(tmp_path):
    m, opt = model_and_optimizer()
    path = save_checkpoint(tmp_path, 1, m, opt, {})
    path.write_text(path.read_text()[:20])
    with pytest.raises(UserError, match=r"epoch-0001.json: unreadable"):
        load_checkpoint(path)


def test_a_checkpoint_of_another_model_names_the_parameter(tmp_path):
    m, opt = model_and_optimizer(width=8)
    path = save_checkpoint(tmp_path, 1, m, opt, {})
    tensors, _ = load_checkpoint(path)
    other, _ = model_and_optimizer(width=16)
    with pytest.raises(UserError, match=r"parameter '0.weight' has shape \(8, 3\) but the model has \(16, 3\)"):
        apply_model_state(other, tensors, str(path))
    deeper = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2), nn.Linear(2, 2))
    with pytest.raises(UserError, match=r"from another model \(missing \['3.bias'"):
        apply_model_state(deeper, tensors, str(path))


def test_interrupted_writes_leave_no_checkpoint(tmp_path, monkeypatch):
    m, opt = model_and_optimizer()
    import trainwell.train.checkpoint as ck

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ck, "atomic_write_text", boom)
    with pytest.raises(OSError):
        ck.save_checkpoint(tmp_path, 1, m, opt, {})
    assert latest_checkpoint(tmp_path) is None
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.endswith(".tmp")]


def test_run_files_take_the_users_umask(tmp_path):
    m, opt = model_and_optimizer()
    old = os.umask(0o027)
    try:
        path = save_checkpoint(tmp_path, 1, m, opt, trainer_state(1))
        atomic_write_text(tmp_path / "config.toml", "x = 1\n")
    finally:
        os.umask(old)
    for f in (path, path.with_suffix(".safetensors"), tmp_path / "config.toml"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o640, f


@pytest.mark.parametrize("edit, expected", [
    (lambda m: m.pop("optimizer"), "field 'optimizer.param_groups' is missing or not a list"),
    (lambda m: m["trainer"].pop("step"), "field 'trainer.step' is missing or not a int"),
    (lambda m: m["trainer"].update(epoch="abc"), "field 'trainer.epoch' is missing or not a int"),
    (lambda m: m.update(tensors="../../etc/passwd"), "field 'tensors' is not the name of an"),
    (lambda m: m["optimizer"].update(scalars={"abc": {}}),
     "field 'optimizer.scalars' is not a table of parameter indices"),
    (lambda m: m["optimizer"]["param_groups"][0].update(params="x"),
     "field 'optimizer.param_groups' holds a group without a list of param indices"),
    (lambda m: m.update(epoch=True), "field 'epoch' is missing or not a whole number"),
])
def test_an_edited_json_is_one_line_naming_the_field(tmp_path, edit, expected):
    m, opt = model_and_optimizer()
    path = save_checkpoint(tmp_path, 1, m, opt, trainer_state(1))
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))
    with pytest.raises(UserError) as err:
        load_checkpoint(path)
    assert str(err.value) == (f"checkpoint {path}: {expected}"
                              + str(err.value).split(expected, 1)[1])
    assert str(err.value).endswith("delete it to resume from the previous one")


def test_deeply_nested_json_is_one_line(tmp_path):
    path = tmp_path / "checkpoints" / "epoch-0001.json"
    path.parent.mkdir()
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(UserError, match=r"epoch-0001.json: unreadable \(RecursionError\); delete it"):
        load_checkpoint(path)


def test_leftovers_of_killed_writes_are_cleaned_and_nothing_else(tmp_path):
    m, opt = model_and_optimizer()
    save_checkpoint(tmp_path, 1, m, opt, trainer_state(1))
    folder = tmp_path / "checkpoints"
    leftovers = [folder / ".epoch-0002.safetensors.k2j_x9.tmp", folder / "epoch-0002.safetensors",
                 tmp_path / ".metrics.jsonl.abc123.tmp"]
    foreign = [folder / "model.pt", folder / "notes.tmp", tmp_path / ".cache.tmp"]
    for f in leftovers + foreign:
        f.write_bytes(b"x" * 10)
    assert clean_leftovers(tmp_path) == sorted(leftovers)
    assert all(f.exists() for f in foreign)
    assert sorted(p.name for p in folder.glob("epoch-*")) == ["epoch-0001.json",
                                                               "epoch-0001.safetensors"]


def test_saving_a_checkpoint_cleans_earlier_leftovers(tmp_path):
    m, opt = model_and_optimizer()
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / ".epoch-0001.json.zz_1.tmp").write_text("{")
    save_checkpoint(tmp_path, 1, m, opt, trainer_state(1))
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-0001.json", "epoch-0001.safetensors"]
