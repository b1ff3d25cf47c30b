"""Repair candidates for a config: ranked patches, and code changes for a user's model.

trainwell edits the networks it builds through config fields (``model.activation``,
``model.batch_norm`` …). A user's model (``model.target``) keeps its own ``forward``: the
repairs that would edit it are not tried but stated as the exact code change
(:func:`code_changes`); re-initialization walks the model's modules (``model.reinit``),
which works for any model. Re-initialization goes first wherever the evidence puts the
cause in the initialization.
"""

from __future__ import annotations

import json
from typing import Any

from .. import nn as tw_nn
from ..config import Config
from ..data.dataset import Dataset
from ..doctor.findings import Finding, Health
from ..doctor.repairs import REPAIRS, Current
from ..doctor.signals import Signals, signals
from .runner import build_data, build_model
from .targets import first_inputs

__all__ = ["CODE_REPAIRS", "auto_repairable", "candidate_patches", "code_change",
           "code_changes", "hidden_activation"]

# Repairs that edit the network trainwell builds: a user's model (model.target) keeps its own
# forward, so for it they are code changes the user applies (see code_change).
CODE_REPAIRS = ("fix_output_head", "swap_activation", "add_batch_norm", "add_dropout")
# Findings of a saturating activation: on a user's model with activation modules the swap
# (which re-initializes as well) goes before a re-initialization alone.
SWAP_FIRST = ("saturation",)


def _init_caused(f: Finding) -> bool:
    """The finding's evidence puts its cause in the initialization: gradients exploding or
    units saturated at step 0, or dead ReLUs whose biases start negative."""
    bias = f.evidence.get("bias_mean_start")
    return f.evidence.get("at_initialization") is True or (
        f.kind == "dying_relu" and isinstance(bias, int | float) and bias < 0
    )


def _user_patch(name: str, config: Config, activation: str | None) -> dict[str, Any] | None:
    """A repair's patch for a user's model: re-initialization walks its modules
    (``model.reinit``); a penalty change keeps only the penalties (the dropout rate is in
    the user's code); the CODE_REPAIRS have none."""
    if name == "swap_activation":
        # activation *modules* are attributes of the model: swapped after building it
        # (model.swap_activation), with the re-initialization that suits the new activation;
        # activations called in forward stay a code change (see code_changes)
        if not _has_activation_modules(config) or config.model.swap_activation is not None:
            return None
        new = REPAIRS[name].values(Current(config.optim.lr, False, activation))["model.activation"]
        return {"model.swap_activation": new, "model.reinit": True, "model.init": "auto",
                "model.bias_init": "zeros", "model.head_init": None, "model.activation": new}
    if name in CODE_REPAIRS:
        return None
    if name == "reinit_by_activation":
        if config.model.reinit:
            return None
        return {"model.reinit": True, "model.init": "auto", "model.bias_init": "zeros",
                "model.head_init": None,
                "model.activation": activation or config.model.activation}
    patch = REPAIRS[name].patch(config)
    if patch and name == "reduce_regularization":
        patch = {k: v for k, v in patch.items() if not k.startswith("model.")}
        if all(getattr(config.regularization, k.split(".")[1]) == v for k, v in patch.items()):
            return None
    return patch


_ACTIVATION_MODULES: dict[str, bool] = {}  # a model's answer, by the config parts it depends on


def _has_activation_modules(config: Config) -> bool:
    """The user's model (built from the config's seed, untrained) holds hidden activation
    modules that :func:`trainwell.nn.swap_activations` can replace.

    Building the user's data and model takes as long as a few training epochs of a small
    run, and a doctor call asks for every candidate list: the answer is kept per model,
    data, seed and root."""
    key = json.dumps([config.model.model_dump(mode="json"), config.data.model_dump(mode="json"),
                      config.seed, str(config.root)], sort_keys=True, default=str)
    if key not in _ACTIVATION_MODULES:
        try:
            data = build_data(config)
            model = build_model(config, data)
            sample = data.train.x[:2] if isinstance(data, Dataset) else first_inputs(data)
            found = bool(tw_nn.activation_modules(model, sample))
        except Exception:  # noqa: BLE001 - a model that does not build offers no swap
            found = False
        if len(_ACTIVATION_MODULES) > 64:
            _ACTIVATION_MODULES.clear()
        _ACTIVATION_MODULES[key] = found
    return _ACTIVATION_MODULES[key]


def candidate_patches(
    config: Config, findings: list[Finding], activation: str | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Applicable ``(repair name, patch)`` pairs, in finding then repair rank order.

    Re-initialization goes first where the finding's cause is the initialization
    (:func:`_init_caused`). For a user's model (``model.target``) the repairs that edit the
    network are left out (:data:`CODE_REPAIRS`, see :func:`code_changes`), and so are the
    repairs of the consequences of a finding only such a change repairs; re-initialization
    walks the model's modules by ``activation``, the hidden activation the probes saw.
    """
    seen: set[str] = set()
    out = []
    user = config.model.target is not None
    blocked: set[str] = set()  # causes only a code change repairs
    for f in findings:
        if f.explained_by in blocked:
            # treating the symptoms of a cause only the user's code can remove wastes trials
            blocked.add(f.kind)
            continue
        if user and f.repairs and all(n in CODE_REPAIRS for n in f.repairs):
            blocked.add(f.kind)
        names = list(f.repairs)
        if _init_caused(f) and "reinit_by_activation" in names:
            names.remove("reinit_by_activation")
            names.insert(0, "reinit_by_activation")
            if user and f.kind in SWAP_FIRST and "swap_activation" in names:
                # a user's swap re-initializes too (model.reinit), and a re-init alone keeps
                # the saturating activation (20 sigmoid layers vanish under Glorot too)
                names.remove("swap_activation")
                names.insert(0, "swap_activation")
        for name in names:
            if name in seen or name not in REPAIRS:
                continue
            seen.add(name)
            patch = _user_patch(name, config, activation) if user else REPAIRS[name].patch(config)
            if patch:
                out.append((name, patch))
    return out


def code_change(name: str, s: Signals) -> str:
    """The exact change a user makes in their model's code for a network-editing repair."""
    act = s.output_activation
    if name == "fix_output_head":
        if s.loss == "nll" and act == "softmax":
            return ("in forward, apply log_softmax instead of softmax to the output "
                    "(F.log_softmax(x, dim=1)), or return the logits and set "
                    "train.loss = \"auto\" (cross-entropy)")
        if s.task == "regression":
            return (f"in forward, return the output layer's values without the {act} on them: "
                    "the targets lie outside its range (keep your loss)")
        on = f"without the {act} on them" if act else "as they are"
        return (f"in forward, return the output layer's logits {on}, one per class, and set "
                "train.loss = \"auto\" (cross-entropy applies the softmax itself)")
    hidden = next((v.activation for n, v in s.layers.items()
                   if n in s.hidden and v.activation), None) or "hidden"
    if name == "swap_activation":
        new = "LeakyReLU (F.leaky_relu)" if hidden == "relu" else "ELU (F.elu)"
        return f"in forward, replace the {hidden} activations with {new}"
    if name == "add_batch_norm":
        return ("add nn.BatchNorm1d(units) after each hidden Linear, before its "
                f"{hidden} activation")
    if name == "add_dropout":
        return "add nn.Dropout(0.3) after each hidden activation"
    return REPAIRS[name].description


def code_changes(config: Config, findings: list[Finding], s: Signals) -> list[dict[str, str]]:
    """For a user's model: the network-editing repairs its findings call for, each as
    ``{"finding", "repair", "change"}`` with the exact code change; [] for trainwell's own."""
    if config.model.target is None:
        return []
    out, seen = [], set()
    swappable: bool | None = None  # built once, only where a finding calls for a swap
    for f in findings:
        for name in f.repairs:
            if name == "swap_activation" and name not in seen:
                if swappable is None:
                    swappable = _has_activation_modules(config)
                if swappable:  # tried automatically (model.swap_activation): no code edit
                    seen.add(name)
                    continue
            if name in CODE_REPAIRS and name not in seen:
                seen.add(name)
                out.append({"finding": f.kind, "repair": name, "change": code_change(name, s)})
    return out


def hidden_activation(health: Health) -> str | None:
    """The hidden activation the probes saw most often (None when none was seen)."""
    s = signals(health)
    acts = [s.layers[n].activation for n in s.hidden if s.layers[n].activation]
    return max(set(acts), key=acts.count) if acts else None


def auto_repairable(findings: list[Finding], changes: list[dict[str, str]]) -> bool | None:
    """Whether the doctor can repair the run itself: False where every repair of the primary
    finding is a code change it can only state (``changes``, from :func:`code_changes`: a
    user's ``forward`` to edit) or where it has no repair at all (``not_learning`` while
    the known-good recipe stays at chance too: the data, not training, is at fault), True
    otherwise; None without a finding."""
    if not findings:
        return None
    if not findings[0].repairs:
        return False
    stated = {c["repair"] for c in changes}
    return not (findings[0].repairs and set(findings[0].repairs) <= stated)
