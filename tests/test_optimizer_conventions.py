"""Each optimizer vs a float64 NumPy reference of its formula, and convention="torch" vs torch.optim."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainwell.optim.registry import build, hyperparameters

CONVENTIONS = ("lecture", "torch", "keras")
NAMES = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "nadam", "adamax"]
LR0, STEPS = 0.05, 60


def _schedule(t: int) -> float:
    """A changing learning rate: the references must read η at every step."""
    return LR0 * 0.98**t


def _loss(theta: torch.Tensor) -> torch.Tensor:
    """A quadratic plus a small tanh network term: nonconvex, smooth, float64."""
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(5, theta.numel(), generator=gen, dtype=torch.float64)
    scale = torch.linspace(0.5, 2.0, theta.numel(), dtype=torch.float64)
    return 0.5 * (scale * (theta - 1.0) ** 2).sum() + torch.tanh(w @ theta).pow(2).sum()


def _grad(theta_np: np.ndarray) -> np.ndarray:
    theta = torch.tensor(theta_np, requires_grad=True)
    _loss(theta).backward()
    return theta.grad.numpy()


def _reference_step(name, conv, hp, st, th, g, t, lr):
    """One step of the documented formula, written in NumPy from the docstrings."""
    wd = hp["weight_decay"]
    if wd:
        if conv == "keras" or name == "adamw":
            th = th - lr * wd * th
        else:
            g = g + wd * th
    if name in ("sgd", "momentum", "nesterov"):
        mu, nesterov = hp["momentum"], name == "nesterov"
        if mu == 0:
            return th - lr * g
        m = st.get("m", np.zeros_like(th))
        if conv == "lecture":
            m = mu * m + lr * g
            th = th - lr * g - mu * m if nesterov else th - m
        elif conv == "torch":
            m = mu * m + g
            th = th - lr * (g + mu * m) if nesterov else th - lr * m
        else:
            m = mu * m - lr * g
            th = th + mu * m - lr * g if nesterov else th + m
        st["m"] = m
        return th
    if name == "adagrad":
        s = st.get("s", np.full_like(th, hp["initial_accumulator_value"])) + g * g
        st["s"] = s
        if conv == "torch":
            return th - lr * g / (np.sqrt(s) + hp["eps"])
        return th - lr * g / np.sqrt(s + hp["eps"])
    if name == "rmsprop":
        b = hp["beta"]
        s = b * st.get("s", 0 * th) + (1 - b) * g * g
        st["s"] = s
        if conv == "keras":
            return th - lr * g / np.sqrt(s + hp["eps"])
        return th - lr * g / (np.sqrt(s) + hp["eps"])
    b1, b2, eps = *hp["betas"], hp["eps"]
    m = b1 * st.get("m", 0 * th) + (1 - b1) * g
    st["m"] = m
    if name == "adamax":
        if conv == "torch":
            u = np.maximum(b2 * st.get("u", 0 * th), np.abs(g) + eps)
            st["u"] = u
            return th - lr / (1 - b1**t) * m / u
        u = np.maximum(b2 * st.get("u", 0 * th), np.abs(g))
        st["u"] = u
        return th - lr * m / ((1 - b1**t) * (u + eps))
    s = b2 * st.get("s", 0 * th) + (1 - b2) * g * g
    st["s"] = s
    s_hat = s / (1 - b2**t)
    if name == "nadam":
        psi = hp["momentum_decay"]

        def mu(k):
            return b1 if psi == 0 else b1 * (1 - 0.5 * 0.96 ** (k * psi))

        prod = st.get("prod", 1.0)
        # torch keeps the product Π in a float32 tensor (its default scalar dtype)
        prod = float(np.float32(prod) * np.float32(mu(t))) if conv == "torch" else prod * mu(t)
        st["prod"] = prod
        m_hat = mu(t + 1) * m / (1 - prod * mu(t + 1)) + (1 - mu(t)) * g / (1 - prod)
    else:
        m_hat = m / (1 - b1**t)
        if conv == "keras":
            lr_t = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
            return th - lr_t * m / (np.sqrt(s) + eps)
    if conv == "lecture":
        return th - lr * m_hat / np.sqrt(s_hat + eps)
    return th - lr * m_hat / (np.sqrt(s_hat) + eps)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("convention", CONVENTIONS)
def test_matches_numpy_reference(name, convention):
    hp = hyperparameters(name, convention)
    hp["weight_decay"] = 0.01
    theta0 = np.linspace(-1.0, 2.0, 8)
    x = torch.tensor(theta0, requires_grad=True)
    opt = build(name, [x], convention=convention, weight_decay=0.01)
    ref, state = theta0.copy(), {}
    for t in range(1, STEPS + 1):
        lr = _schedule(t)
        opt.param_groups[0]["lr"] = lr
        opt.zero_grad()
        _loss(x).backward()
        opt.step()
        ref = _reference_step(name, convention, hp, state, ref, _grad(ref), t, lr)
        err = np.linalg.norm(x.detach().numpy() - ref) / np.linalg.norm(ref)
        assert err <= 1e-10, (t, err)
    assert np.linalg.norm(ref - theta0) > 0.05  # the trajectory went somewhere


_TORCH = {
    "sgd": (torch.optim.SGD, {}),
    "momentum": (torch.optim.SGD, {"momentum": 0.9}),
    "nesterov": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    "adagrad": (torch.optim.Adagrad, {}),
    "rmsprop": (torch.optim.RMSprop, {}),
    "adam": (torch.optim.Adam, {}),
    "adamw": (torch.optim.AdamW, {}),
    "nadam": (torch.optim.NAdam, {}),
    "adamax": (torch.optim.Adamax, {}),
}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.02])
@pytest.mark.parametrize("foreach", [False, True])
def test_torch_convention_matches_torch_optim(name, weight_decay, foreach):
    cls, kwargs = _TORCH[name]
    gen = torch.Generator().manual_seed(5)
    init = [torch.randn(s, generator=gen, dtype=torch.float64) for s in [(4, 3), (3,)]]
    ours = [t.clone().requires_grad_() for t in init]
    theirs = [t.clone().requires_grad_() for t in init]
    wd = {} if name == "adamw" and weight_decay == 0 else {"weight_decay": weight_decay}
    opt_a = build(name, ours, convention="torch", foreach=foreach, **wd)
    opt_b = cls(theirs, foreach=foreach, **kwargs, **wd)
    assert opt_a.defaults["lr"] == opt_b.defaults["lr"]  # torch's defaults
    for step in range(50):
        for params, opt in ((ours, opt_a), (theirs, opt_b)):
            opt.zero_grad()
            sum(_loss(p.flatten()) for p in params).backward()
            opt.step()
            opt.param_groups[0]["lr"] *= 0.97 if step % 3 else 1.2  # a changing LR
        for a, b in zip(ours, theirs):
            err = ((a - b).norm() / b.norm()).item()
            assert err <= 1e-12, (step, err)


def _quartic(x: torch.Tensor) -> torch.Tensor:
    return ((x - 0.5) ** 4).sum() + (x**2).sum()


@pytest.mark.parametrize("convention", ["lecture", "keras"])
def test_nesterov_matches_two_point_formula(convention):
    """m ← β m + η ∇J(θ − β m); θ ← θ − m with two gradient evaluations per step."""
    beta, lr = 0.9, 0.05
    theta = torch.tensor([2.0, -1.0, 0.3], dtype=torch.float64)
    m = torch.zeros_like(theta)
    phi = theta.clone().requires_grad_()  # the optimizer stores the look-ahead θ − β m
    opt = build("nesterov", [phi], lr=lr, momentum=beta, convention=convention)
    for _ in range(60):
        ahead = (theta - beta * m).requires_grad_()
        _quartic(ahead).backward()  # gradient at the look-ahead point
        m = beta * m + lr * ahead.grad
        theta = theta - m
        opt.zero_grad()
        _quartic(phi).backward()
        opt.step()
        stored = opt.velocity(phi)
        stored_m = stored if convention == "lecture" else -stored  # keras' velocity v = −m
        torch.testing.assert_close(phi.detach(), theta - beta * m, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(phi.detach() + beta * stored_m, theta, rtol=1e-12, atol=1e-14)
    # the literal two-point evaluation (θ itself evaluated once per step) converges
    assert _quartic(theta).item() < _quartic(torch.tensor([2.0, -1.0, 0.3])).item()
