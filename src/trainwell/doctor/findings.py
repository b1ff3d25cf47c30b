"""Findings and the health record they are decided from.

A :class:`Health` is everything the probes saw during one run (per-layer statistics on
probe steps, the loss of every step, per-epoch metrics, and facts about the model and the
loss); it is written to and read back from ``health.jsonl``. A :class:`Finding` is one
diagnosis: its kind (one of :data:`KINDS`), the layers concerned, the evidence (numbers
and steps), the cause in plain words, and the names of ranked repairs.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..train.checkpoint import atomic_write_text

__all__ = ["KINDS", "Finding", "Health"]

KINDS: tuple[str, ...] = (
    "non_finite",
    "bad_output_head",
    "symmetric_init",
    "unnormalized_inputs",
    "exploding_gradients",
    "lr_too_high",
    "saturation",
    "vanishing_gradients",
    "dying_relu",
    "lr_too_low",
    "overfitting",
    "over_regularized",
    "not_learning",
)
"""The finding kinds, in the order the doctor reports (and repairs) them."""


@dataclass(frozen=True)
class Finding:
    """One diagnosis with its evidence and ranked repairs.

    Attributes:
        kind: one of :data:`KINDS`.
        layers: names of the layers concerned (may be empty, e.g. for ``lr_too_high``).
        evidence: the numbers that show it (JSON-ready scalars, steps, per-layer values).
        explanation: the cause in plain words.
        repairs: names of repairs (see :data:`trainwell.doctor.repairs.REPAIRS`), best first.
        confidence: how clearly the evidence passes the rule's threshold, in [0.5, 1]
            (0.5 at the threshold, 1 a decade or more beyond it).
        explained_by: the kind of the finding that causes this one (None for the primary
            finding and for independent ones).
    """

    kind: str
    layers: tuple[str, ...]
    evidence: dict[str, Any]
    explanation: str
    repairs: tuple[str, ...]
    confidence: float = 1.0
    explained_by: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Finding.kind: unknown kind {self.kind!r}; choose one of {KINDS}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["layers"] = list(self.layers)
        d["repairs"] = list(self.repairs)
        return d


@dataclass
class Health:
    """What the probes recorded over one run.

    Attributes:
        layers: per weighted layer ``{"name", "kind", "fan_in", "fan_out", "activation"}``,
            the output head last.
        probes: one dict per probe step (see :class:`trainwell.doctor.probes.Probe`).
        losses: the training loss of every step (float; NaN/inf kept).
        epochs: per-epoch metrics (``train_loss``, ``val_loss``, ``val_accuracy``, ``lr`` …).
        context: facts for the rules: ``task``, ``loss``, ``num_classes``,
            ``output_activation``, ``skipped_steps``, ``every``.
    """

    layers: list[dict[str, Any]] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)

    def series(self, layer: str, key: str) -> list[tuple[int, float]]:
        """``(step, value)`` of one per-layer statistic over the probe steps (finite values only)."""
        out = []
        for rec in self.probes:
            v = rec.get("layers", {}).get(layer, {}).get(key)
            if isinstance(v, int | float) and math.isfinite(v):
                out.append((rec["step"], float(v)))
        return out

    @property
    def layer_names(self) -> list[str]:
        """Names of the weighted layers, input side first."""
        return [layer["name"] for layer in self.layers]

    # ---- health.jsonl ------------------------------------------------------------
    def to_lines(self) -> list[str]:
        """The record as JSON lines: meta, probes, then one line per epoch with its losses."""
        lines = [json.dumps({"type": "meta", "layers": self.layers, "context": self.context})]
        lines += [json.dumps(p) for p in self.probes]
        steps_done = 0
        for e in self.epochs:
            n = int(e.get("steps", 0))
            rec = {"type": "epoch", **e, "step_losses": self.losses[steps_done : steps_done + n]}
            steps_done += n
            lines.append(json.dumps(rec))
        if steps_done < len(self.losses):
            lines.append(json.dumps({"type": "losses", "step_losses": self.losses[steps_done:]}))
        return lines

    def write(self, path: str | Path) -> None:
        """Write the record to ``path`` as JSON lines (atomically: temp file + rename)."""
        atomic_write_text(Path(path), "\n".join(self.to_lines()) + "\n")

    @classmethod
    def read(cls, path: str | Path) -> Health:
        """Read a ``health.jsonl`` written by :meth:`write` or the doctor callback.

        Raises:
            UserError: the file is missing or not health JSON lines.
        """
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: no health record; run `trainwell train` on a config first")
        health = cls()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                kind = rec["type"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(
                    f"{path}:{n}: not a health record line; regenerate the run"
                ) from None
            if kind == "meta":
                health.layers, health.context = rec.get("layers", []), rec.get("context", {})
            elif kind == "probe":
                health.probes.append(rec)
            elif kind == "epoch":
                health.losses += [float(v) for v in rec.pop("step_losses", [])]
                rec.pop("type")
                health.epochs.append(rec)
            elif kind == "losses":
                health.losses += [float(v) for v in rec.get("step_losses", [])]
        return health
