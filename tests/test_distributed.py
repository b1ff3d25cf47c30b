"""Data-parallel arithmetic: shards cover each global batch once, weights make DDP exact."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from trainwell.train.distributed import Distributed, all_reduce_sum, from_env, loss_weight, shard


@given(n=st.integers(0, 500), world=st.integers(1, 9))
def test_shards_are_contiguous_disjoint_near_equal_and_cover_the_batch(n, world):
    parts = [shard(n, r, world) for r in range(world)]
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(parts[i][1] == parts[i + 1][0] for i in range(world - 1))
    sizes = [hi - lo for lo, hi in parts]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)


def test_shard_example_and_bad_arguments():
    assert [shard(10, r, 4) for r in range(4)] == [(0, 3), (3, 6), (6, 8), (8, 10)]
    with pytest.raises(ValueError, match="rank"):
        shard(10, 4, 4)


@pytest.mark.parametrize("n,world", [(12, 2), (7, 2), (10, 4), (3, 4)])
def test_weighted_rank_gradients_average_to_the_global_mean_gradient(n, world):
    # What DDP computes — the mean over ranks of each rank's gradient — equals the gradient
    # of the mean loss over the whole global batch, in float64, uneven shards included.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=g)
    w = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    torch.nn.functional.cross_entropy(x @ w, y).backward()
    want = w.grad.clone()
    total = torch.zeros_like(want)
    for r in range(world):
        lo, hi = shard(n, r, world)
        w.grad = None
        if hi == lo:  # an empty shard contributes a zero gradient
            continue
        loss = torch.nn.functional.cross_entropy(x[lo:hi] @ w, y[lo:hi])
        (loss * loss_weight(hi - lo, n, world)).backward()
        total += w.grad
    torch.testing.assert_close(total / world, want, rtol=1e-12, atol=1e-14)


def test_one_process_is_rank_zero_of_one(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    info = from_env(torch.device("cpu"))
    assert info == Distributed(0, 1, 0) and info.is_main and not info.active
    t = torch.tensor([2.0])
    assert all_reduce_sum(t, info).item() == 2.0


def test_bad_environment_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ValueError, match=r"RANK: 5 is outside \[0, WORLD_SIZE=2\)"):
        from_env(torch.device("cpu"))
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="must be integers"):
        from_env(torch.device("cpu"))
