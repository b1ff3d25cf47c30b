"""The doctor: measure gradient health, decide what is wrong, act with named repairs.

- measure: :class:`Probe` (sampled hooks), :class:`DoctorCallback` (Trainer events →
  ``health.jsonl``), :func:`watch` (a user's own loop);
- decide: :func:`diagnose_health` (pure rules, thresholds in :data:`THRESHOLDS`) →
  :class:`Finding` objects of the kinds in :data:`KINDS`;
- act: :data:`REPAIRS` (each a Python action and a config patch), :func:`write_report`
  for ``report.html``. The diagnose/repair loop over a config lives in the front,
  :mod:`trainwell.cli.repair_loop`.

Example:
    >>> with tw.doctor.watch(model, num_classes=10) as w:
    ...     ...  # your loop, calling w.step(loss) after optimizer.step()
    >>> for f in w.findings():
    ...     print(f.kind, f.layers, f.evidence)
"""

from __future__ import annotations

from .callback import DEFAULT_EVERY, DoctorCallback
from .findings import KINDS, Finding, Health
from .probes import LayerInfo, Probe, describe_layers, probe_schedule
from .repairs import REPAIRS, Repair, RollbackGuard
from .report import render_report, write_report
from .rules import THRESHOLDS, diagnose_health, summarize
from .watch import Watcher, watch

__all__ = [
    "DEFAULT_EVERY",
    "KINDS",
    "THRESHOLDS",
    "DoctorCallback",
    "Finding",
    "Health",
    "LayerInfo",
    "Probe",
    "REPAIRS",
    "Repair",
    "RollbackGuard",
    "Watcher",
    "describe_layers",
    "diagnose_health",
    "probe_schedule",
    "render_report",
    "summarize",
    "watch",
    "write_report",
]
