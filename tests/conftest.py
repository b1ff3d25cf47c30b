"""Shared test set-up: CPU only, a private cache folder, deterministic torch."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _deterministic_cpu():
    torch.use_deterministic_algorithms(True)
    yield


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    # Tests never share the user's cache (and never download into it).
    cache = tmp_path_factory.getbasetemp() / "trainwell-cache"
    monkeypatch.setenv("TRAINWELL_CACHE", str(cache))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    yield


@pytest.fixture(autouse=True)
def _restore_threads():
    # Configs ask for train.threads (1 on this shared 2-core machine) and the Trainer sets
    # torch's thread count from it: put the count back after every test.
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def generator():
    """An explicit, seeded random generator for a test."""
    return torch.Generator().manual_seed(1234)


def pytest_configure(config):
    os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _doctor_verifies_fully(monkeypatch):
    # The doctor's wall-time budget stops a kept repair's continuation by the clock; tests
    # must not depend on wall time, so they verify fully unless a test sets the budget.
    from trainwell.cli import repair_loop

    monkeypatch.setattr(repair_loop, "PLAN_TIME_RUNS", float("inf"))
    monkeypatch.setattr(repair_loop, "LIMIT_TIME_RUNS", float("inf"))
    yield
