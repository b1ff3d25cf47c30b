"""Hypothesis budgets: a CI profile of a few minutes, and TRAINWELL_FUZZ_LONG=1 for local runs."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

LONG = os.environ.get("TRAINWELL_FUZZ_LONG") == "1"
# Every fuzz test multiplies its CI example count by this under the long budget.
SCALE = 20 if LONG else 1

settings.register_profile(
    "trainwell-fuzz",
    deadline=None,  # tiny trainings vary with the machine's load; hangs have their own alarm
    derandomize=not LONG,  # CI sees the same inputs every run; the long budget explores
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("trainwell-fuzz")
