"""The doctor: measure gradient health, decide what is wrong, act with named repairs.

- measure: :class:`Probe` (sampled hooks), :class:`DoctorCallback` (Trainer events →
  ``health.jsonl``), :func:`watch` (a user's own loop);
- decide: :func:`diagnose_health` (the table :data:`RULES` of pure rules over one
  :class:`Signals` object, thresholds in :data:`THRESHOLDS`) → :class:`Finding` objects of
  the kinds in :data:`KINDS`, the primary cause first (:data:`EXPLAINS`);
- act: :data:`REPAIRS` (each one description: a config patch and a live action),
  :func:`write_report` for ``report.html``. The diagnose/repair loop over a config lives in
  the front, :mod:`trainwell.cli.repair_loop`.

Example:
    >>> with tw.doctor.watch(model, num_classes=10) as w:
    ...     ...  # your loop, calling w.step(loss) after optimizer.step()
    >>> for f in w.findings():
    ...     print(f.kind, f.layers, f.evidence)
"""

from __future__ import annotations

from .callback import DEFAULT_EVERY, DoctorCallback
from .causes import EXPLAINS, format_findings
from .findings import KINDS, Finding, Health
from .probes import LayerInfo, Probe, describe_layers, probe_schedule
from .repairs import REPAIRS, Repair, RollbackGuard
from .report import render_report, write_report
from .rules import RULES, THRESHOLDS, Rule, diagnose_health, summarize
from .signals import Signals
from .watch import Watcher, watch

__all__ = [
    "DEFAULT_EVERY",
    "EXPLAINS",
    "KINDS",
    "THRESHOLDS",
    "DoctorCallback",
    "Finding",
    "Health",
    "LayerInfo",
    "Probe",
    "REPAIRS",
    "RULES",
    "Repair",
    "RollbackGuard",
    "Rule",
    "Signals",
    "Watcher",
    "describe_layers",
    "diagnose_health",
    "format_findings",
    "probe_schedule",
    "render_report",
    "summarize",
    "watch",
    "write_report",
]
