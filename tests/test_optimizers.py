"""Contract tests shared by every trainwell optimizer (one table row per optimizer) + registry."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from trainwell.errors import UserError
from trainwell.optim.registry import OPTIMIZERS, OptimizerSpec, build, hyperparameters

CONVENTIONS = ("lecture", "torch", "keras")

# name, learning rate for the parabola, learning rate for Rosenbrock. A new optimizer is a
# new row; every contract test below runs on it.
ROWS = [
    ("sgd", 0.2, 2e-3),
    ("momentum", 0.05, 5e-4),
    ("nesterov", 0.05, 5e-4),
    ("adagrad", 0.5, 0.5),
    ("rmsprop", 0.02, 5e-3),
    ("adam", 0.05, 0.02),
    ("adamw", 0.05, 0.02),
    ("nadam", 0.05, 0.02),
    ("adamax", 0.05, 0.1),
]
NAMES = [r[0] for r in ROWS]


def _parabola(x: torch.Tensor) -> torch.Tensor:
    scale = torch.linspace(0.5, 2.0, x.numel(), dtype=x.dtype)
    return 0.5 * (scale * (x - 3.0) ** 2).sum()


def _rosenbrock(x: torch.Tensor) -> torch.Tensor:
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


def _run(opt, params, loss_fn, steps):
    for _ in range(steps):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()


def test_table_covers_registry():
    assert set(NAMES) == set(OPTIMIZERS)


@pytest.mark.parametrize(("name", "lr", "_"), ROWS)
def test_converges_on_parabola(name, lr, _):
    x = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    opt = build(name, [x], lr=lr, weight_decay=0.0)  # AdamW decays by default
    steps = 600 if name == "adagrad" else 400
    _run(opt, [x], lambda: _parabola(x), steps)
    assert torch.allclose(x.detach(), torch.full_like(x, 3.0), atol=1e-3)


@pytest.mark.parametrize(("name", "_", "lr"), ROWS)
def test_converges_on_rosenbrock(name, _, lr):
    x = torch.tensor([-1.0, 1.0], dtype=torch.float64, requires_grad=True)
    opt = build(name, [x], lr=lr, weight_decay=0.0)  # AdamW decays by default
    start = _rosenbrock(x).item()  # 4.0
    _run(opt, [x], lambda: _rosenbrock(x), 800)
    assert _rosenbrock(x).item() < 0.15 < start  # from 4.0, toward the minimum at (1, 1)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_keeps_dtype(name, dtype):
    x = torch.ones(4, dtype=dtype, requires_grad=True)
    opt = build(name, [x])
    _run(opt, [x], lambda: _parabola(x), 3)
    assert x.dtype == dtype
    for value in opt.state[x].values():
        if isinstance(value, torch.Tensor):
            assert value.dtype == dtype


def _grads(shapes, n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes] for _ in range(n)]


def _apply(opt, params, grads):
    for g_step in grads:
        for p, g in zip(params, g_step):
            p.grad = g.clone()
        opt.step()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_state_dict_round_trip(name, convention):
    shapes = [(3, 2), (4,)]
    grads = _grads(shapes, 8)
    a = [torch.ones(s, dtype=torch.float64, requires_grad=True) for s in shapes]
    opt_a = build(name, a, convention=convention, weight_decay=0.01)
    _apply(opt_a, a, grads[:5])
    saved = copy.deepcopy(opt_a.state_dict())
    b = [p.detach().clone().requires_grad_() for p in a]
    opt_b = build(name, b, convention=convention, weight_decay=0.01)
    opt_b.load_state_dict(saved)
    _apply(opt_a, a, grads[5:])
    _apply(opt_b, b, grads[5:])
    for pa, pb in zip(a, b):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("name", NAMES)
def test_lr_scheduler_equals_manual_lr(name):
    shapes = [(5,)]
    grads = _grads(shapes, 6)
    a = [torch.ones(5, dtype=torch.float64, requires_grad=True)]
    b = [torch.ones(5, dtype=torch.float64, requires_grad=True)]
    opt_a, opt_b = build(name, a, lr=0.1), build(name, b, lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt_a, step_size=2, gamma=0.5)
    for i, g in enumerate(grads):
        _apply(opt_a, a, [g])
        sched.step()
        _apply(opt_b, b, [g])
        opt_b.param_groups[0]["lr"] = 0.1 * 0.5 ** ((i + 1) // 2)
    assert opt_a.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)
    assert torch.equal(a[0], b[0])
    # and a changed learning rate does change the trajectory
    c = [torch.ones(5, dtype=torch.float64, requires_grad=True)]
    _apply(build(name, c, lr=0.1), c, grads)
    assert not torch.equal(a[0], c[0])


def _state_equal(sa, sb):
    assert sa.keys() == sb.keys()
    for key in sa:
        if isinstance(sa[key], torch.Tensor):
            assert torch.equal(sa[key], sb[key]), key
        else:
            assert sa[key] == sb[key], key


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_foreach_equals_loop_exactly(name, convention, dtype):
    shapes = [(7, 3), (0,), (5,), (2, 2, 2)]  # (0,): a zero-size parameter
    grads = _grads(shapes, 6, seed=1)
    gen = torch.Generator().manual_seed(2)
    init = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
    runs = []
    for foreach in (False, True):
        params = [t.clone().requires_grad_() for t in init]
        opt = build(name, params, convention=convention, foreach=foreach, weight_decay=0.05)
        for step, g_step in enumerate(grads):
            _apply(opt, params, [[g.to(dtype) for g in g_step]])
            opt.param_groups[0]["lr"] *= 0.9 if step % 2 else 1.1
        runs.append((params, opt))
    (pa, oa), (pb, ob) = runs
    for a, b in zip(pa, pb):
        assert torch.equal(a, b)
        _state_equal(oa.state[a], ob.state[b])


_BAD = [
    ({"lr": -1.0}, r"^lr: must be >= 0, got -1\.0$"),
    ({"lr": float("nan")}, r"^lr: must be >= 0, got nan$"),
    ({"lr": "fast"}, r"^lr: must be a number, got 'fast'$"),
    ({"weight_decay": -0.1}, r"^weight_decay: must be >= 0, got -0\.1$"),
    (
        {"convention": "jax"},
        r"^convention: must be one of \['lecture', 'torch', 'keras'\], got 'jax'$",
    ),
]
_BAD_SPECIFIC = {
    "momentum": [({"momentum": 1.0}, r"^momentum: must be in \[0, 1\), got 1\.0$")],
    "nesterov": [({"momentum": 0.0}, r"^nesterov: needs momentum in \(0, 1\), got momentum=0$")],
    "adagrad": [({"initial_accumulator_value": -1.0}, r"^initial_accumulator_value: must be >= 0")],
    "rmsprop": [({"beta": 1.5}, r"^beta: must be in \[0, 1\), got 1\.5$")],
    "adam": [
        ({"betas": (1.0, 0.9)}, r"^betas\[0\]: must be in \[0, 1\), got 1\.0$"),
        ({"betas": 0.9}, r"^betas: must be a pair \(beta1, beta2\), got 0\.9$"),
        ({"eps": -1e-8}, r"^eps: must be >= 0, got -1e-08$"),
    ],
    "nadam": [({"momentum_decay": -1.0}, r"^momentum_decay: must be >= 0, got -1\.0$")],
    "adamax": [({"betas": (0.9, -0.5)}, r"^betas\[1\]: must be in \[0, 1\), got -0\.5$")],
}


@pytest.mark.parametrize("name", NAMES)
def test_rejects_bad_hyperparameters(name):
    cls = OPTIMIZERS[name].cls
    x = torch.zeros(2, requires_grad=True)
    for kwargs, pattern in _BAD + _BAD_SPECIFIC.get(name, []):
        with pytest.raises(ValueError, match=pattern):
            cls([x], **kwargs)
    # a param group added later is checked too
    opt = cls([x])
    with pytest.raises(ValueError, match=r"^lr: must be >= 0, got -2\.0$"):
        opt.add_param_group({"params": [torch.zeros(1, requires_grad=True)], "lr": -2.0})


def test_registry_rows():
    for name, spec in OPTIMIZERS.items():
        assert isinstance(spec, OptimizerSpec) and spec.name == name
        assert issubclass(spec.cls, torch.optim.Optimizer)
        assert spec.description and spec.cls.__doc__
        assert spec.defaults == hyperparameters(name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        OPTIMIZERS["sgd"].name = "x"  # type: ignore[misc]


def test_hyperparameters_from_signature():
    assert hyperparameters("rmsprop") == {
        "lr": 1e-3,
        "beta": 0.9,
        "eps": 1e-10,
        "weight_decay": 0.0,
        "convention": "lecture",
        "foreach": None,
    }
    assert hyperparameters("rmsprop", "torch")["beta"] == 0.99
    assert hyperparameters("adagrad", "keras")["initial_accumulator_value"] == 0.1
    assert hyperparameters("momentum")["momentum"] == 0.9
    assert "nesterov" not in hyperparameters("nesterov")


def test_build_errors_are_user_errors():
    x = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(
        UserError, match=r"^name: unknown optimizer 'x'; choose one of \['sgd'"
    ):
        build("x", x)
    with pytest.raises(
        UserError,
        match=r"^betas: not a hyperparameter of 'sgd'; it takes lr, momentum, weight_decay, nesterov, convention, foreach$",
    ):
        build("sgd", x, betas=(0.9, 0.99))
    with pytest.raises(ValueError, match=r"^lr: must be >= 0, got -1\.0$"):
        build("adam", x, lr=-1.0)
    with pytest.raises(ValueError, match=r"^betas\[1\]: must be in \[0, 1\), got 1\.0$"):
        build("nadam", x, betas=(0.9, 1.0))


def test_build_uses_convention_defaults():
    x = [torch.zeros(2, requires_grad=True)]
    assert build("adam", x, convention="torch").defaults["eps"] == 1e-8
    assert build("adam", x).defaults["eps"] == 1e-7
    assert build("nadam", x, convention="torch").defaults["lr"] == 2e-3
    assert build("adamw", x, convention="keras").defaults["weight_decay"] == 0.004


# The automatic path (foreach=None) runs torch's fused kernels where a convention's math
# is torch's: (name, convention, torch class, torch kwargs).
_FUSED = [
    ("sgd", "torch", torch.optim.SGD, {}),
    ("momentum", "torch", torch.optim.SGD, {"momentum": 0.9}),
    ("nesterov", "torch", torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    ("adagrad", "torch", torch.optim.Adagrad, {}),
    ("adam", "torch", torch.optim.Adam, {}),
    ("adamw", "torch", torch.optim.AdamW, {}),
]


@pytest.mark.parametrize(("name", "convention", "cls", "kwargs"), _FUSED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_automatic_path_equals_torch_fused_exactly(name, convention, cls, kwargs, dtype,
                                                    weight_decay):
    shapes = [(7, 3), (0,), (5,), (2, 2, 2)]
    grads = _grads(shapes, 6, seed=1)
    gen = torch.Generator().manual_seed(2)
    init = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
    ours = [t.clone().requires_grad_() for t in init]
    theirs = [t.clone().requires_grad_() for t in init]
    opt_a = build(name, ours, convention=convention, weight_decay=weight_decay)
    opt_b = cls(theirs, fused=True, weight_decay=weight_decay, **kwargs)
    for step, g_step in enumerate(grads):
        for params, opt in ((ours, opt_a), (theirs, opt_b)):
            _apply(opt, params, [[g.to(dtype) for g in g_step]])
            opt.param_groups[0]["lr"] *= 0.9 if step % 2 else 1.1
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


# The fused kernels order floating-point operations differently from the loop: the stated
# tolerance of the automatic path (relative to the loop's result, per tensor).
_FUSED_RTOL = {torch.float32: 1e-6, torch.float64: 1e-13}


# weight decay 0 as well: some fused paths (Nadam's, outside keras) run only without L2 decay
@pytest.mark.parametrize("weight_decay", [0.05, 0.0])
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_automatic_path_equals_loop_to_rounding(name, convention, dtype, weight_decay):
    shapes = [(7, 3), (0,), (5,), (2, 2, 2)]
    grads = _grads(shapes, 6, seed=1)
    gen = torch.Generator().manual_seed(2)
    init = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
    runs = []
    for foreach in (False, None):
        params = [t.clone().requires_grad_() for t in init]
        opt = build(name, params, convention=convention, foreach=foreach,
                    weight_decay=weight_decay)
        for step, g_step in enumerate(grads):
            _apply(opt, params, [[g.to(dtype) for g in g_step]])
            opt.param_groups[0]["lr"] *= 0.9 if step % 2 else 1.1
        runs.append((params, opt))
    (pa, oa), (pb, ob) = runs
    rtol = _FUSED_RTOL[dtype]
    for a, b in zip(pa, pb):
        torch.testing.assert_close(b, a, rtol=rtol, atol=rtol)  # values are O(1)
        assert oa.state[a].keys() == ob.state[b].keys()  # same state layout: checkpoints fit
        for key, value in oa.state[a].items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(ob.state[b][key], value, rtol=rtol, atol=rtol)
            else:
                assert ob.state[b][key] == value


@pytest.mark.parametrize(
    ("name", "convention", "kernel", "expected"),
    [("adam", "torch", "_fused_adam_", 1), ("adam", "keras", "_fused_adamw_", 1),
     ("adamw", "torch", "_fused_adamw_", 1), ("adam", "lecture", "_fused_adam_", 1),
     ("adamw", "lecture", "_fused_adamw_", 1),
     ("nadam", "torch", "_fused_adam_", 1), ("sgd", "torch", "_fused_sgd_", 1),
     ("momentum", "lecture", "_fused_sgd_", 1), ("nesterov", "keras", "_fused_sgd_", 1),
     ("sgd", "keras", "_fused_sgd_", 1), ("adagrad", "torch", "_fused_adagrad_", 1),
     ("adagrad", "lecture", "_fused_adagrad_", 1), ("adagrad", "keras", "_fused_adagrad_", 1),
     ("rmsprop", "lecture", "_fused_adam_", 1), ("rmsprop", "torch", "_fused_adam_", 1),
     ("rmsprop", "keras", "_fused_adamw_", 1), ("nadam", "lecture", "_fused_adam_", 1), ("adamax", "lecture", "_fused_adam_", 0)],
)
def test_fused_kernel_only_where_the_math_is_torchs(monkeypatch, name, convention, kernel,
                                                     expected):
    calls = []
    real = getattr(torch, kernel)
    monkeypatch.setattr(torch, kernel, lambda *a, **k: calls.append(1) or real(*a, **k))
    x = [torch.ones(3, dtype=torch.float64, requires_grad=True)]
    opt = build(name, x, convention=convention)
    _apply(opt, x, _grads([(3,)], 1))
    assert len(calls) == expected
    calls.clear()
    opt_loop = build(name, [torch.ones(3, dtype=torch.float64, requires_grad=True)], convention=convention,
                     foreach=True)  # an explicit path is never fused
    _apply(opt_loop, opt_loop.param_groups[0]["params"], _grads([(3,)], 1))
    assert not calls


@pytest.mark.parametrize("foreach", [False, True, None])
def test_lecture_adam_state_is_the_shifted_second_moment(foreach):
    # The lecture convention keeps s' = s + ε(1 − β2ᵗ) (see optim/adam.py): check it and the
    # parameters against the textbook recurrence in float64, on every path.
    beta1, beta2, eps, lr = 0.8, 0.9, 1e-3, 0.1
    g_all = _grads([(4, 3)], 5, seed=3)
    x = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3).requires_grad_()
    theta, m, s = x.detach().clone(), torch.zeros(4, 3, dtype=torch.float64), torch.zeros(4, 3, dtype=torch.float64)
    opt = build("adam", [x], lr=lr, betas=(beta1, beta2), eps=eps, foreach=foreach)
    for t, (g,) in enumerate(g_all, start=1):
        g = g.to(torch.float64)
        _apply(opt, [x], [[g]])
        m = beta1 * m + (1 - beta1) * g
        s = beta2 * s + (1 - beta2) * g * g
        theta = theta - lr * (m / (1 - beta1**t)) / torch.sqrt(s / (1 - beta2**t) + eps)
        torch.testing.assert_close(opt.state[x]["exp_avg_sq"], s + eps * (1 - beta2**t),
                                   rtol=1e-13, atol=1e-16)
        torch.testing.assert_close(x.detach(), theta, rtol=1e-12, atol=1e-14)


def test_lecture_adam_without_second_moment_decay_is_not_fused(monkeypatch):
    # β2 = 0 leaves no room for the kernel's pre-shift ε(1 − β2)/β2: the foreach path runs.
    calls = []
    real = torch._fused_adam_
    monkeypatch.setattr(torch, "_fused_adam_", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = [torch.ones(3, dtype=torch.float64, requires_grad=True)]
    opt = build("adam", x, betas=(0.9, 0.0))
    _apply(opt, x, _grads([(3,)], 1))
    assert not calls and torch.isfinite(x[0]).all()


@pytest.mark.parametrize("foreach", [False, True, None])
@pytest.mark.parametrize("name", ["adagrad", "adam", "rmsprop", "nadam"])
def test_eps_changed_mid_run_is_rebased_exactly(name, foreach):
    # ε inside the root is carried in the state (s + ε·w): changing the group's ε after some
    # steps must give what the textbook formula gives with the new ε from then on.
    g_all = _grads([(4, 3)], 6, seed=4)
    x = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3).requires_grad_()
    ref = x.detach().clone()
    kw = {"convention": "keras"} if name == "rmsprop" else {}  # keras: ε inside the root
    opt = build(name, [x], lr=0.1, eps=1e-2, foreach=foreach, **kw)
    m = torch.zeros_like(ref)
    s = torch.zeros_like(ref)
    for t, (g,) in enumerate(g_all, start=1):
        eps = 1e-2 if t <= 3 else 0.5
        opt.param_groups[0]["eps"] = eps
        _apply(opt, [x], [[g]])
        if name == "adagrad":
            s = s + g * g
            ref = ref - 0.1 * g / torch.sqrt(s + eps)
        elif name == "rmsprop":
            s = 0.9 * s + 0.1 * g * g
            ref = ref - 0.1 * g / torch.sqrt(s + eps)
        elif name == "nadam":  # lecture: ψ = 0, μ = β1
            m = 0.9 * m + 0.1 * g
            s = 0.999 * s + 0.001 * g * g
            m_hat = 0.9 * m / (1 - 0.9 ** (t + 1)) + 0.1 * g / (1 - 0.9**t)
            ref = ref - 0.1 * m_hat / torch.sqrt(s / (1 - 0.999**t) + eps)
        else:
            m = 0.9 * m + 0.1 * g
            s = 0.999 * s + 0.001 * g * g
            ref = ref - 0.1 * (m / (1 - 0.9**t)) / torch.sqrt(s / (1 - 0.999**t) + eps)
        torch.testing.assert_close(x.detach(), ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("foreach", [False, True, None])
@pytest.mark.parametrize("convention", ["lecture", "keras"])
@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_with_changing_and_zero_lr_matches_the_lecture_formula(foreach, convention,
                                                                         nesterov):
    # The buffer is kept in units of the last nonzero η (m = c·b): a learning rate that
    # changes every step, and steps at η = 0, must still give m ← β m + η g; θ ← θ − m.
    beta = 0.8
    lrs = [0.1, 0.1, 0.05, 0.0, 0.0, 0.2, 0.07, 0.07]
    g_all = _grads([(3, 2), (4,)], len(lrs), seed=5)
    init = [torch.linspace(-1, 1, 6, dtype=torch.float64).reshape(3, 2),
            torch.linspace(0, 1, 4, dtype=torch.float64)]
    x = [t.clone().requires_grad_() for t in init]
    ref = [t.clone() for t in init]
    m = [torch.zeros_like(t) for t in init]
    opt = build("nesterov" if nesterov else "momentum", x, lr=lrs[0], momentum=beta,
                convention=convention, foreach=foreach)
    for lr, g_step in zip(lrs, g_all):
        opt.param_groups[0]["lr"] = lr
        _apply(opt, x, [g_step])
        for i, g in enumerate(g_step):
            m[i] = beta * m[i] + lr * g
            ref[i] = ref[i] - lr * g - beta * m[i] if nesterov else ref[i] - m[i]
        for xi, ri, mi in zip(x, ref, m):
            torch.testing.assert_close(xi.detach(), ri, rtol=1e-12, atol=1e-14)
            v = opt.velocity(xi)
            torch.testing.assert_close(v if convention == "lecture" else -v, mi,
                                       rtol=1e-12, atol=1e-14)


def test_packed_state_is_one_buffer_and_survives_a_state_dict_round_trip(monkeypatch):
    # Lecture Adam keeps exp_avg_sq as views of one buffer so that its ε shift is one add;
    # a state_dict round trip (a checkpoint) packs again, and the results stay the same.
    adds = []
    real = torch._foreach_add_
    monkeypatch.setattr(torch, "_foreach_add_", lambda *a, **k: adds.append(1) or real(*a, **k))
    shapes = [(7, 3), (5,), (2, 2, 2)]
    grads = _grads(shapes, 4, seed=6)
    x = [torch.randn(s, dtype=torch.float64).requires_grad_() for s in shapes]
    y = [t.detach().clone().requires_grad_() for t in x]
    a, b = build("adam", x), build("adam", y, foreach=False)
    _apply(a, x, grads[:2])
    _apply(b, y, grads[:2])
    flat = a.packed(a.param_groups[0], "exp_avg_sq", [a.state[p]["exp_avg_sq"] for p in x])
    assert flat is not None and flat.numel() == 21 + 5 + 8 and not adds
    c = build("adam", x)
    c.load_state_dict(a.state_dict())
    assert c.packed(c.param_groups[0], "exp_avg_sq", [c.state[p]["exp_avg_sq"] for p in x]) is not None
    _apply(c, x, grads[2:])
    _apply(b, y, grads[2:])
    assert not adds  # never one add per tensor
    for p, q in zip(x, y):
        torch.testing.assert_close(p, q, rtol=1e-13, atol=1e-15)


def _weight_decay(theta, g, lr, wd, convention):
    """The references' weight decay: Keras' decoupled θ ← θ − ηλθ, else L2 (g ← g + λθ)."""
    if wd and convention == "keras":
        return theta - lr * wd * theta, g
    return theta, (g + wd * theta if wd else g)


def _nadam_reference(x0, g_all, lrs, *, beta1, beta2, eps, psi, wd, convention):
    """Nadam from its docstring in float64: θ after every step (Π in float32 for torch)."""
    theta, m, s, prod, out = x0.clone(), torch.zeros_like(x0), torch.zeros_like(x0), 1.0, []

    def mu(k):
        return beta1 if psi == 0 else beta1 * (1 - 0.5 * 0.96 ** (k * psi))

    for t, (g, lr) in enumerate(zip(g_all, lrs), start=1):
        theta, g = _weight_decay(theta, g, lr, wd, convention)
        m = beta1 * m + (1 - beta1) * g
        s = beta2 * s + (1 - beta2) * g * g
        prod = (float(torch.tensor(prod, dtype=torch.float32) * torch.tensor(mu(t), dtype=torch.float32))
                if convention == "torch" else prod * mu(t))
        m_hat = mu(t + 1) * m / (1 - prod * mu(t + 1)) + (1 - mu(t)) * g / (1 - prod)
        s_hat = s / (1 - beta2**t)
        denom = torch.sqrt(s_hat + eps) if convention == "lecture" else torch.sqrt(s_hat) + eps
        theta = theta - lr * m_hat / denom
        out.append(theta)
    return out


# The automatic path runs Nadam as one fused Adam kernel call with β1' and η' chosen so
# that it applies both of Nadam's terms, then one lerp that puts m back (_fused.fused_nadam).
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("beta1", "weight_decay"), [(0.9, 0.0), (0.9, 0.05), (0.5, 0.0), (0.0, 0.0)])
def test_nadam_automatic_path_is_one_kernel_call_and_matches_float64_reference(
        monkeypatch, convention, dtype, beta1, weight_decay):
    calls = {"kernel": 0, "lerp": 0}
    kernels = {k: getattr(torch, k) for k in ("_fused_adam_", "_fused_adamw_", "_foreach_lerp_")}

    def counting(name, key):
        def call(*a, **k):
            calls[key] += 1
            return kernels[name](*a, **k)
        return call

    monkeypatch.setattr(torch, "_fused_adam_", counting("_fused_adam_", "kernel"))
    monkeypatch.setattr(torch, "_fused_adamw_", counting("_fused_adamw_", "kernel"))
    monkeypatch.setattr(torch, "_foreach_lerp_", counting("_foreach_lerp_", "lerp"))
    lrs = [0.1, 0.05, 0.0, 0.2, 0.07, 0.07, 0.12, 0.03]  # a changing η, and a step at η = 0
    g_all = [g[0] for g in _grads([(4, 3)], len(lrs), seed=7)]
    x0 = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(4, 3)
    x = x0.to(dtype, copy=True).requires_grad_()
    hp = {"betas": (beta1, 0.99), "eps": 1e-3, "weight_decay": weight_decay}
    opt = build("nadam", [x], convention=convention, **hp)
    psi = opt.param_groups[0]["momentum_decay"]
    ref = _nadam_reference(x0, g_all, lrs, beta1=beta1, beta2=0.99, eps=1e-3, psi=psi,
                           wd=weight_decay, convention=convention)
    rtol = {torch.float32: 2e-6, torch.float64: 1e-12}[dtype]
    for t, (g, lr, theta) in enumerate(zip(g_all, lrs, ref), start=1):
        opt.param_groups[0]["lr"] = lr
        _apply(opt, [x], [[g.to(dtype)]])
        assert calls["kernel"] == t  # the fused path, every step
        torch.testing.assert_close(x.detach().double(), theta, rtol=rtol, atol=rtol)
    # the lerp runs where it is needed: not for β1 = 0 (m is g) nor at η = 0
    assert calls["lerp"] == (0 if beta1 == 0 else len(lrs) - 1)


def test_nadam_with_a_small_beta1_leaves_the_kernel_to_the_foreach_path(monkeypatch):
    # β1 = 0.1 makes the lerp weight w = −c_grad / c_avg = −(1 − β1²)/β1 = −9.9 at t = 1 (more
    # rounding than NADAM_MAX_WEIGHT allows): the automatic path falls back before touching
    # the state.
    calls = []
    real = torch._fused_adam_
    monkeypatch.setattr(torch, "_fused_adam_", lambda *a, **k: calls.append(1) or real(*a, **k))
    g_all = _grads([(5,)], 4, seed=8)
    x = [torch.linspace(-1, 1, 5, dtype=torch.float64).requires_grad_()]
    y = [x[0].detach().clone().requires_grad_()]
    a, b = build("nadam", x, betas=(0.1, 0.99)), build("nadam", y, betas=(0.1, 0.99), foreach=False)
    _apply(a, x, g_all)
    _apply(b, y, g_all)
    assert not calls
    assert torch.equal(x[0], y[0])


def _adamax_reference(x0, g_all, lrs, *, beta1, beta2, eps, wd, convention):
    """AdaMax from its docstring in float64: θ after every step."""
    theta, m, u, out = x0.clone(), torch.zeros_like(x0), torch.zeros_like(x0), []
    for t, (g, lr) in enumerate(zip(g_all, lrs), start=1):
        theta, g = _weight_decay(theta, g, lr, wd, convention)
        m = beta1 * m + (1 - beta1) * g
        if convention == "torch":
            u = torch.maximum(beta2 * u, g.abs() + eps)
            theta = theta - lr * m / ((1 - beta1**t) * u)
        else:
            u = torch.maximum(beta2 * u, g.abs())
            theta = theta - lr * m / ((1 - beta1**t) * (u + eps))
        out.append(theta)
    return out


# On the CPU the automatic path runs AdaMax's loop (each tensor's operations in cache): the
# loop's results exactly, and the documented formula.
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_adamax_automatic_path_is_the_loop_bit_for_bit_and_the_float64_formula(
        monkeypatch, convention, dtype, weight_decay):
    import trainwell.optim.adam as adam_module

    paths = []
    real = adam_module.adamax
    monkeypatch.setattr(adam_module, "adamax",
                        lambda *a, **k: paths.append(k["foreach"]) or real(*a, **k))
    shapes = [(7, 3), (0,), (5,), (2, 2, 2)]
    lrs = [0.1, 0.05, 0.0, 0.2, 0.07, 0.07]
    grads = _grads(shapes, len(lrs), seed=9)
    gen = torch.Generator().manual_seed(2)
    init = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    runs = []
    for foreach in (False, None):
        params = [t.to(dtype, copy=True).requires_grad_() for t in init]
        opt = build("adamax", params, convention=convention, foreach=foreach,
                    weight_decay=weight_decay, eps=1e-3)
        for lr, g_step in zip(lrs, grads):
            opt.param_groups[0]["lr"] = lr
            _apply(opt, params, [[g.to(dtype) for g in g_step]])
        runs.append((params, opt))
    (pa, oa), (pb, ob) = runs
    assert paths == [False] * (2 * len(lrs))  # both runs took the loop at every step
    for a, b in zip(pa, pb):
        assert torch.equal(a, b)
        _state_equal(oa.state[a], ob.state[b])
    beta1, beta2 = ob.param_groups[0]["betas"]
    for i, (x0, b) in enumerate(zip(init, pb)):
        ref = _adamax_reference(x0, [g[i] for g in grads], lrs, beta1=beta1, beta2=beta2,
                                eps=1e-3, wd=weight_decay, convention=convention)[-1]
        rtol = {torch.float32: 2e-6, torch.float64: 1e-13}[dtype]
        torch.testing.assert_close(b.detach().double(), ref, rtol=rtol, atol=rtol)
