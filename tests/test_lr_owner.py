"""One owner of the learning rate: schedules.apply composes schedule, plateau, lr_scale.

The main test runs min_lr, discriminative rates, gradual unfreezing, a fine-tuning switch
and a plateau controller over a 1cycle schedule in one Trainer run and checks the lr of
every group at every step against a float64 recomputation of the formulas.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import trainwell as tw
from trainwell import transfer
from trainwell.cli.runner import build_run
from trainwell.config import load_config
from trainwell.data import Dataset, Split
from trainwell.errors import UserError
from trainwell.optim import schedules as S
from trainwell.train import Callback

BASE = 0.02  # the optimizer's lr: one_cycle's peak, filled from the groups' base_lr
MIN_LR = 0.2 * BASE  # above one_cycle's start (BASE / 10): the floor binds from step 0
FACTORS = [0.25, 0.5, 0.75, 1.0]  # blocks.0, blocks.1, blocks.2, head
LR_FACTOR = 0.5  # FreezeThenFineTune's switch, at the start of epoch FREEZE_EPOCHS
FREEZE_EPOCHS = 3
EPOCHS = 6


def blobs(n=100, seed=0, d=12, k=3):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 2
    y = torch.randint(0, k, (n,), generator=g)
    x = centers[y] + torch.randn(n, d, generator=g)
    a, b = int(0.7 * n), int(0.85 * n)
    return Dataset(Split(x[:a], y[:a]), Split(x[a:b], y[a:b]), Split(x[b:], y[b:]),
                   "classification", k, "blobs")


class LrLog(Callback):
    """The lr and momentum of every group, as used by each step (apply runs before step)."""

    def __init__(self):
        self.lrs, self.moms = [], []

    def on_step_end(self, trainer, step, loss):
        self.lrs.append([g["lr"] for g in trainer.optimizer.param_groups])
        self.moms.append([g["momentum"] for g in trainer.optimizer.param_groups])


class StopAfter(Callback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_epoch_end(self, trainer, epoch, metrics):
        trainer.stop_training = epoch + 1 >= self.epochs


def composed_trainer(callbacks=(), run_dir=None):
    model = tw.nn.MLP(12, [16, 16, 8], 3, generator=torch.Generator().manual_seed(0))
    groups = transfer.param_groups(model, FACTORS, lr=BASE)
    opt = torch.optim.SGD(groups, lr=999.0, momentum=0.9)  # the groups' own lrs win
    # threshold=10: no epoch after the first can improve by 10×|best|, so with patience 1
    # the controller halves its scale after epochs 3 and 5; the reference below re-derives
    # this from the logged validation losses, not from this comment.
    plateau = S.Performance(factor=0.5, patience=1, min_lr=MIN_LR, threshold=10.0)
    cbs = [transfer.FreezeThenFineTune(1, freeze_epochs=FREEZE_EPOCHS, lr_factor=LR_FACTOR),
           transfer.GradualUnfreezing({2: ["blocks.1"], 4: ["blocks.2"]}), *callbacks]
    return tw.Trainer(model, opt, epochs=EPOCHS, batch_size=16, seed=0, progress=False,
                      device="cpu", schedule=S.one_cycle(), plateau=plateau, callbacks=cbs,
                      run_dir=run_dir)


def reference_scales(val_losses, factor, patience, threshold):
    """Plateau scale in force during each epoch, by torch's ReduceLROnPlateau rule (mode min)."""
    scales, scale, best, bad = [], 1.0, math.inf, 0
    for v in val_losses:
        scales.append(scale)
        if v < best - threshold * abs(best) if math.isfinite(best) else True:
            best, bad = v, 0
        else:
            bad += 1
        if bad > patience:
            scale, bad = scale * factor, 0
    return scales


def expected_lrs(history, steps_per_epoch):
    total = EPOCHS * steps_per_epoch
    up = min(math.floor(0.45 * total), (total - 1) // 2)
    t = np.arange(total, dtype=np.float64)
    start = BASE / 10
    cycle = np.interp(t, [0, up, 2 * up, total - 1], [start, BASE, start, start / 1e3])
    mom = np.interp(t, [0, up, 2 * up, total - 1], [0.95, 0.85, 0.95, 0.95])
    scales = reference_scales([h["val_loss"] for h in history], 0.5, 1, 10.0)
    epoch = (t // steps_per_epoch).astype(int)
    scale = np.asarray(scales, dtype=np.float64)[epoch]
    switch = np.where(epoch >= FREEZE_EPOCHS, LR_FACTOR, 1.0)
    floored = np.maximum(cycle * scale, MIN_LR)
    lrs = floored[:, None] * switch[:, None] * np.asarray(FACTORS, dtype=np.float64)[None, :]
    return lrs, mom, cycle * scale < MIN_LR, scales


def test_min_lr_discriminative_unfreezing_and_plateau_on_one_cycle_hold_at_once():
    log = LrLog()
    trainer = composed_trainer([log])
    history = trainer.fit(blobs())
    spe = 5  # ceil(70 / 16)
    assert trainer.step == EPOCHS * spe
    assert trainer.schedule.total_steps == EPOCHS * spe  # filled from the run's length
    lrs, mom, floored, scales = expected_lrs(history, spe)
    np.testing.assert_allclose(np.asarray(log.lrs), lrs, rtol=1e-12, atol=0)
    np.testing.assert_allclose(np.asarray(log.moms), mom[:, None].repeat(4, 1), rtol=1e-12)
    # every part acted: the floor bound, the plateau reduced twice, the switch happened
    assert floored[0] and floored[-1] and not floored.all()
    assert scales == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25]
    assert [h["lr"] for h in history] == pytest.approx(lrs[spe - 1::spe, 0], rel=1e-12)  # last step
    assert [h["frozen_layers"] for h in history] == [3, 3, 2, 1, 0, 0]


def test_the_composed_run_resumes_to_the_same_lrs_and_weights(tmp_path):
    log_a = LrLog()
    full = composed_trainer([log_a])
    full.fit(blobs())
    log_b = LrLog()
    composed_trainer([log_b, StopAfter(3)], run_dir=tmp_path).fit(blobs())
    log_c = LrLog()
    resumed = composed_trainer([log_c], run_dir=tmp_path)
    resumed.fit(blobs(), resume=True)
    assert log_b.lrs + log_c.lrs == log_a.lrs
    assert resumed.plateau.state_dict() == full.plateau.state_dict()
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


# -- min_lr with the Trainer (the bug: 0.1 → 0.01 → 0.001, min_lr never applied) ------------
@pytest.mark.parametrize("how", ["schedule", "plateau"])
def test_min_lr_floors_the_plateau_controller_in_the_trainer(how):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ctl = S.Performance(factor=0.1, patience=0, min_lr=0.05, threshold=10.0)
    trainer = tw.Trainer(model, opt, epochs=4, batch_size=32, progress=False, device="cpu",
                         **{how: ctl})
    history = trainer.fit(blobs())
    assert ctl.num_reductions == 3 and ctl.scale == pytest.approx(1e-3)
    assert [h["lr"] for h in history] == [0.1, 0.1, 0.05, 0.05]
    assert opt.param_groups[0]["lr"] == 0.05


# -- a schedule's length and base lr filled from the run -------------------------------------
def _sgd_trainer(**kw):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(12, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    return model, tw.Trainer(model, opt, batch_size=32, progress=False, device="cpu", **kw)


def test_one_cycle_without_total_steps_gets_the_runs_length():
    log = LrLog()
    _, trainer = _sgd_trainer(epochs=3, schedule=S.one_cycle(max_lr=0.1), callbacks=[log])
    trainer.fit(blobs())  # 3 steps per epoch
    assert trainer.schedule.total_steps == 9
    ref = np.interp(np.arange(9.0), [0, 4, 8], [0.01, 0.1, 0.01])  # n = min(4, 4); end at 8
    ref[-1] = 0.01 / 1e3
    np.testing.assert_allclose([r[0] for r in log.lrs], ref, rtol=1e-12)


def test_cosine_per_epoch_without_total_steps_gets_the_number_of_epochs():
    _, trainer = _sgd_trainer(epochs=4, schedule=S.cosine(), schedule_unit="epoch")
    history = trainer.fit(blobs())
    ref = [0.3 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]  # lr0 = optimizer's
    assert [h["lr"] for h in history] == pytest.approx(ref, rel=1e-12)


def test_an_explicit_length_that_does_not_fit_is_refused_before_training():
    model, trainer = _sgd_trainer(epochs=4, schedule=S.cosine(0.1, 10), schedule_unit="epoch")
    before = [p.clone() for p in model.parameters()]
    msg = (r"^schedule.total_steps: cosine was built for 10 epochs but the run has 4 "
           r"\(4 epochs\); set total_steps=4 or leave it unset$")
    with pytest.raises(UserError, match=msg):
        trainer.fit(blobs())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    _, short = _sgd_trainer(epochs=1, schedule=S.one_cycle())
    with pytest.raises(UserError, match=r"^schedule.total_steps: the run has only 2 steps "
                                        r"\(one_cycle: total_steps must be an integer >= 3"):
        short.fit(blobs(n=60))  # 42 training samples: 2 steps


# -- with_base_lr, apply -----------------------------------------------------------------------
def test_with_base_lr_fills_through_wrappers_and_leaves_lrs_given():
    assert S.power(None, 10).lr0 is None and S.needs_base_lr(S.one_cycle())
    with pytest.raises(ValueError, match=r"^exponential: lr0 is unset; fill it with with_base_lr"):
        S.exponential(None, 5)(0)
    w = S.with_base_lr(S.warmup(S.cosine(total_steps=10, final_lr=0.01), 2, start_lr=0.001), 0.5)
    assert w.schedule.lr0 == 0.5 and w.schedule.final_lr == 0.01 and w.start_lr == 0.001
    j = S.with_base_lr(S.join([S.constant(), S.piecewise([1], [0.3, 0.2])], [4]), 0.7)
    assert [j(k) for k in (0, 4, 5)] == [0.7, 0.3, 0.2]
    given = S.one_cycle(0.1, 50)
    assert S.with_base_lr(given, 9.0) is given and not S.needs_base_lr(given)
    p = S.with_base_lr(S.Performance(schedule=S.exponential(None, 10)), 2.0)
    assert p.schedule.lr0 == 2.0
    with pytest.raises(ValueError, match=r"with_base_lr: lr must be >= 0"):
        S.with_base_lr(S.constant(), -1.0)


def test_apply_fills_each_groups_base_lr_and_multiplies_lr_scale():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr": 0.2},
                           {"params": [b], "lr": 0.05, "lr_scale": 0.5}], lr=1.0)
    sched = S.exponential(None, 10)
    for step in (0, 3, 20):
        first = S.apply(opt, sched, step)
        assert first == pytest.approx(0.2 * 0.1 ** (step / 10), rel=1e-15)
        assert opt.param_groups[1]["lr"] == pytest.approx(0.5 * 0.05 * 0.1 ** (step / 10),
                                                          rel=1e-15)
    assert [g["base_lr"] for g in opt.param_groups] == [0.2, 0.05]  # recorded once
    ctl = S.Performance(min_lr=0.01)
    ctl.scale = 0.01
    S.apply(opt, None, 0, plateau=ctl)  # no schedule: base lr, scaled, floored, × lr_scale
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.005]
    with pytest.raises(ValueError, match="two plateau controllers"):
        S.apply(opt, ctl, 0, plateau=S.Performance())


def test_param_groups_record_the_base_lr_and_refuse_a_bool():
    model = tw.nn.MLP(12, [4], 3, generator=torch.Generator().manual_seed(0))
    groups = transfer.param_groups(model, [0.5, 1.0], lr=0.2)
    assert [(g["base_lr"], g["lr"], g["lr_scale"]) for g in groups] == [(0.2, 0.1, 0.5),
                                                                        (0.2, 0.2, 1.0)]
    opt = torch.optim.SGD(groups, lr=9.0)
    S.apply(opt, S.constant(), 0)  # base 0.2, not the scaled 0.1, times lr_scale
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.2]
    with pytest.raises(UserError, match=r"^factors: expected a float, a sequence or a mapping, "
                                        r"got True$"):
        transfer.param_groups(model, True)


def test_build_leaves_the_base_lr_to_the_optimizer_when_asked():
    s = S.build("one_cycle", lr_from_optimizer=True, total_steps=100)
    assert s.max_lr is None and S.with_base_lr(s, 0.4)(45) == pytest.approx(0.4)
    p = S.build("performance", lr_from_optimizer=True, patience=2)
    assert isinstance(p, S.Performance) and p.schedule is None
    assert S.build("piecewise", lr_from_optimizer=True, boundaries=[1], values=[1, 2])(1) == 2
    with pytest.raises(UserError, match=r"^schedule.max_lr: required by one_cycle; set it$"):
        S.build("one_cycle")


def test_config_peak_comes_from_optim_lr_without_naming_it():
    built = build_run(load_config(None, [
        "data.source=synthetic", "data.num_samples=200", "model.depth=1", "model.width=8",
        "train.epochs=1", "train.batch_size=32", "optim.name=sgd", "optim.lr=0.04",
        "schedule.name=power", "schedule.params={s = 2.0}", "device=cpu"]), progress=False)
    assert built.trainer.schedule.lr0 is None  # not injected: apply takes it from the group
    built.trainer.fit(built.data)
    steps = built.trainer.step
    assert steps == 5
    assert built.optimizer.param_groups[0]["lr"] == pytest.approx(0.04 / (1 + 4 / 2), rel=1e-15)
    with pytest.raises(UserError, match=r"^schedule.plateau: schedule.name = \"performance\" "
                                        r"is already the plateau controller"):
        build_run(load_config(None, ["data.source=synthetic", "data.num_samples=200",
                                     "schedule.name=performance", "schedule.plateau={}"]))


# -- the schedule modules import in one direction ----------------------------------------------
def test_schedule_modules_have_no_import_cycle_and_no_late_imports():
    optim = Path(tw.optim.__file__).parent
    names = ["_checks", "plateau", "schedule_basic", "schedule_compose", "schedule_registry",
             "schedules"]
    edges = {}
    for name in names:
        tree = ast.parse((optim / f"{name}.py").read_text(encoding="utf-8"))
        body = [n for n in tree.body if not isinstance(n, ast.Expr)]  # skip the docstring
        seen_code = False
        for node in body:
            is_import = isinstance(node, ast.Import | ast.ImportFrom)
            assert not (is_import and seen_code), f"{name}: import after code, line {node.lineno}"
            seen_code = seen_code or not is_import
        edges[name] = {n.module for n in ast.walk(tree)
                       if isinstance(n, ast.ImportFrom) and n.level == 1 and n.module in names}
    order = []
    while len(order) < len(names):
        ready = [n for n in names if n not in order and edges[n] <= set(order)]
        assert ready, f"import cycle among {sorted(set(names) - set(order))}"
        order += ready
    assert order.index("schedules") == len(names) - 1


def test_a_controller_given_as_the_schedule_wraps_its_schedule_in_apply():
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=0.4, momentum=0.9)
    ctl = S.Performance(min_lr=0.03, schedule=S.one_cycle(total_steps=100))  # n = 45
    assert S.apply(opt, ctl, 45) == pytest.approx(0.4, rel=1e-15)  # the peak: the group's lr
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.85, rel=1e-15)
    ctl.scale = 0.5
    assert S.apply(opt, ctl, 45) == pytest.approx(0.2, rel=1e-15)
    assert S.apply(opt, ctl, 0) == 0.03  # 0.04 · 0.5 = 0.02, floored at min_lr
    assert S.split_plateau(ctl) == (ctl.schedule, ctl)
