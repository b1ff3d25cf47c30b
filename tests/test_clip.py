"""Gradient clipping vs torch's utilities and float64 NumPy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainwell.errors import UserError
from trainwell.optim import clip


def _params(seed: int = 0, dtype=torch.float64, scale: float = 3.0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(5, 4), (5,), (3, 2, 3, 3), (7,), (0,)]  # includes a conv weight and an empty tensor
    ps = []
    for shape in shapes:
        p = torch.nn.Parameter(torch.randn(shape, generator=g, dtype=dtype))
        p.grad = scale * torch.randn(shape, generator=g, dtype=dtype)
        ps.append(p)
    return ps


def _clone(ps):
    out = []
    for p in ps:
        q = torch.nn.Parameter(p.detach().clone())
        q.grad = p.grad.clone()
        out.append(q)
    return out


def _np_norm(ps) -> float:
    return math.sqrt(sum(float((p.grad.double().numpy() ** 2).sum()) for p in ps))


def test_grad_norm_matches_float64_reference():
    ps = _params()
    assert clip.grad_norm(ps).item() == pytest.approx(_np_norm(ps), rel=1e-14)
    assert clip.grad_norm([torch.nn.Parameter(torch.ones(2))]).item() == 0.0  # no grads


def test_grad_norm_does_not_underflow_in_float32():
    p = torch.nn.Parameter(torch.zeros(100))
    p.grad = torch.full((100,), 1e-32)
    assert torch.linalg.vector_norm(p.grad).item() == 0.0  # the float32 trap
    assert clip.grad_norm([p]).item() == pytest.approx(1e-31, rel=1e-6)


@pytest.mark.parametrize("max_norm", [0.5, 1e3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_by_global_norm_equals_clip_grad_norm(max_norm, dtype):
    ps = _params(dtype=dtype)
    ref = _clone(ps)
    norm = clip.by_global_norm(ps, max_norm)
    ref_norm = torch.nn.utils.clip_grad_norm_(ref, max_norm)
    assert norm.item() == pytest.approx(
        ref_norm.item(), rel=1e-6 if dtype == torch.float32 else 1e-14
    )
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    for p, q in zip(ps, ref):
        torch.testing.assert_close(p.grad, q.grad, rtol=tol, atol=0)
    assert clip.grad_norm(ps).item() <= max_norm * (1 + 1e-6)


def test_by_value_equals_clip_grad_value_and_returns_preclip_norm():
    ps = _params()
    ref = _clone(ps)
    before = _np_norm(ps)
    norm = clip.by_value(ps, 0.7)
    torch.nn.utils.clip_grad_value_(ref, 0.7)
    assert norm.item() == pytest.approx(before, rel=1e-14)
    for p, q in zip(ps, ref):
        assert torch.equal(p.grad, q.grad)


def test_by_tensor_norm_per_tensor_reference():
    ps = _params()
    raw = [p.grad.numpy().copy() for p in ps]
    norm = clip.by_tensor_norm(ps, 2.0)
    assert norm.item() == pytest.approx(math.sqrt(sum((r**2).sum() for r in raw)), rel=1e-14)
    for p, r in zip(ps, raw):
        n = np.sqrt((r**2).sum())
        expected = r * 2.0 / max(n, 2.0)
        np.testing.assert_allclose(p.grad.numpy(), expected, rtol=1e-14)
        assert np.linalg.norm(p.grad.numpy()) <= 2.0 * (1 + 1e-12)


def _agc_reference(w: np.ndarray, g: np.ndarray, lam: float, eps: float) -> np.ndarray:
    if w.ndim > 1:
        axes = tuple(range(1, w.ndim))
        wn = np.sqrt((w**2).sum(axis=axes, keepdims=True))
        gn = np.sqrt((g**2).sum(axis=axes, keepdims=True))
    else:
        wn, gn = np.sqrt((w**2).sum()), np.sqrt((g**2).sum())
    limit = lam * np.maximum(wn, eps)
    return np.where(gn > limit, g * limit / np.maximum(gn, 1e-6), g)


def test_adaptive_matches_unitwise_numpy_reference():
    ps = _params(scale=0.05)
    ps[0].data[2] = 0.0  # a zero row: eps floor on the weight norm
    raw = [(p.detach().numpy().copy(), p.grad.numpy().copy()) for p in ps]
    norm = clip.adaptive(ps, clipping=0.02, eps=1e-3)
    assert norm.item() == pytest.approx(math.sqrt(sum((g**2).sum() for _, g in raw)), rel=1e-14)
    clipped_any = False
    for p, (w, g) in zip(ps, raw):
        exp = _agc_reference(w, g, 0.02, 1e-3)
        clipped_any |= not np.allclose(exp, g)
        np.testing.assert_allclose(p.grad.numpy(), exp, rtol=1e-13, atol=0)
    assert clipped_any


@pytest.mark.parametrize("fn", [clip.by_global_norm, clip.by_tensor_norm, clip.by_value])
def test_nonfinite_norm_is_reported_not_spread(fn):
    ps = _params()
    ps[0].grad[0, 0] = math.inf
    finite_before = ps[2].grad.clone()
    norm = fn(ps, 1e6)  # threshold large: nothing finite should change
    assert math.isinf(norm.item())
    assert torch.equal(ps[2].grad, finite_before)
    assert not torch.isnan(ps[2].grad).any()


def test_adaptive_nonfinite_unit_left_alone():
    ps = _params()
    ps[1].grad[0] = math.nan
    norm = clip.adaptive(ps, 0.01)
    assert math.isnan(norm.item())
    assert torch.isnan(ps[1].grad).sum().item() == 1


def test_clipper_dispatch_and_errors():
    ps = _params()
    ref = _clone(ps)
    n = clip.build("global_norm", 1.0)(ps)
    assert n.item() == pytest.approx(torch.nn.utils.clip_grad_norm_(ref, 1.0).item(), rel=1e-14)
    before = [p.grad.clone() for p in ps]
    assert clip.build(None)(ps).item() == pytest.approx(1.0, rel=1e-5)
    assert all(torch.equal(p.grad, b) for p, b in zip(ps, before))
    assert clip.Clipper("adaptive", 0.01).kind == "adaptive"
    with pytest.raises(
        UserError,
        match=r"threshold: must be a finite number > 0 for clip kind 'value', got -1",
    ):
        clip.build("value", -1)
    with pytest.raises(UserError, match=r"threshold: .* got None"):
        clip.build("tensor_norm")
    with pytest.raises(UserError, match=r"kind: unknown clip kind 'norm'"):
        clip.build("norm", 1.0)
