"""One primary finding with its consequences: ranking by cause, the text and the JSON."""

from __future__ import annotations

from torch import nn

from test_doctor_rules import _net, _train
from trainwell.cli.repair_loop import DoctorResult, Trial, candidate_patches
from trainwell.config import validate
from trainwell.doctor.causes import (
    EXPLAINS,
    EXPLAINS_AT_INIT,
    arrows,
    format_findings,
    primary_and_consequences,
    rank,
)
from trainwell.doctor.findings import KINDS, Finding
from trainwell.doctor.rules import RULES


def _f(kind: str, conf: float = 1.0) -> Finding:
    return Finding(kind, (), {}, f"{kind} text", ("lr_down",), conf)


def test_explains_table_is_a_dag_over_known_kinds():
    for cause, effects in EXPLAINS.items():
        assert cause in KINDS and set(effects) <= set(KINDS) and cause not in effects

    def reach(k, seen=()):
        return any(e == k or reach(e, seen + (e,)) for e in EXPLAINS.get(k, ()) if e not in seen)

    assert not any(reach(k) for k in EXPLAINS)


def test_too_high_lr_comes_before_what_it_causes():
    found = [_f("non_finite"), _f("exploding_gradients"), _f("lr_too_high"), _f("dying_relu")]
    ranked = rank(found)
    assert [f.kind for f in ranked] == [
        "lr_too_high", "exploding_gradients", "non_finite", "dying_relu"
    ]  # fmt: skip
    # Each consequence follows its nearest cause: the overflow comes from the exploding gradient.
    assert [f.explained_by for f in ranked] == [
        None, "lr_too_high", "exploding_gradients", "lr_too_high"
    ]  # fmt: skip
    assert primary_and_consequences(ranked) == {
        "primary": "lr_too_high",
        "consequences": ["exploding_gradients", "non_finite", "dying_relu"],
    }


def test_unnormalized_inputs_explain_saturation_and_exploding_gradients():
    ranked = rank([_f("saturation"), _f("exploding_gradients"), _f("unnormalized_inputs", 0.6)])
    assert [f.kind for f in ranked] == ["unnormalized_inputs", "exploding_gradients", "saturation"]


def test_independent_roots_ranked_by_confidence_then_report_order():
    ranked = rank([_f("overfitting", 0.9), _f("lr_too_low", 0.7), _f("unnormalized_inputs", 0.9)])
    assert [f.kind for f in ranked] == ["unnormalized_inputs", "overfitting", "lr_too_low"]
    assert primary_and_consequences(ranked) == {
        "primary": "unnormalized_inputs",
        "consequences": [],
    }
    assert primary_and_consequences([]) == {"primary": None, "consequences": []}


def test_text_prints_primary_then_because_of_it():
    ranked = rank([_f("vanishing_gradients"), _f("dying_relu", 0.8), _f("overfitting", 0.6)])
    lines = format_findings(ranked)
    assert lines[0] == "primary: dying_relu (confidence 0.80): dying_relu text"
    assert lines[2:4] == [
        "because of it:",
        "  vanishing_gradients (confidence 1.00): vanishing_gradients text",
    ]
    assert lines[5] == "also:" and lines[6].startswith("  overfitting")
    assert format_findings([]) == ["no finding: the run looks healthy"]


def test_json_has_primary_and_consequences():
    ranked = rank([_f("exploding_gradients"), _f("lr_too_high")])
    trial = Trial(None, {}, 0.1, 2.3, [f.kind for f in ranked], 1.0)
    doc = DoctorResult(ranked, trial).to_dict()
    assert doc["primary"] == "lr_too_high" and doc["consequences"] == ["exploding_gradients"]
    assert doc["findings"][1]["explained_by"] == "lr_too_high"


def test_dead_relus_from_negative_biases_are_primary_not_vanishing():
    # Every ReLU starts off (bias −3): the first layer's gradient is exactly 0, which also
    # trips the vanishing rule; the cause is the dead units.
    _, w = _train(_net(4, nn.ReLU, lambda m: nn.init.constant_(m.bias, -3.0)), lr=0.05)
    found = w.findings()
    assert found[0].kind == "dying_relu"
    assert found[0].evidence["bias_mean_start"] == -3.0 and "mean of -3" in found[0].explanation
    rest = {f.kind: f.explained_by for f in found[1:]}
    assert rest.get("vanishing_gradients", "dying_relu") == "dying_relu"
    assert found[0].repairs[0] == "swap_activation"


def test_repairs_target_the_primary_finding_first():
    config = validate(
        {
            "data": {"source": "synthetic", "num_samples": 200, "input_scale": 100.0},
            "optim": {"name": "sgd", "lr": 1.0},
            "schedule": {"name": "constant"},
        }
    )
    found = [
        Finding(r.kind, (), {}, "", r.repairs, 1.0)
        for r in RULES
        if r.kind in ("non_finite", "exploding_gradients", "unnormalized_inputs")
    ]
    ranked = rank(found)
    assert ranked[0].kind == "unnormalized_inputs"
    assert [name for name, _ in candidate_patches(config, ranked)][:2] == [
        "standardize_inputs",
        "add_batch_norm",
    ]


def _ex(at_init: bool) -> Finding:
    return Finding("exploding_gradients", (), {"at_initialization": at_init}, "", ("lr_down",))


def test_gradients_exploding_at_initialization_explain_the_too_high_lr_symptoms():
    found = [_f("lr_too_high"), _ex(True), _f("non_finite"), _f("dying_relu")]
    ranked = rank(found)
    assert [f.kind for f in ranked] == [
        "exploding_gradients", "non_finite", "lr_too_high", "dying_relu"
    ]  # fmt: skip
    assert [f.explained_by for f in ranked] == [
        None, "exploding_gradients", "exploding_gradients", "exploding_gradients"
    ]  # fmt: skip
    # not at initialization: the rate stays the cause (test_too_high_lr_comes_before_…)
    assert rank([_f("lr_too_high"), _ex(False)])[0].kind == "lr_too_high"
    # raw inputs still come first: they explode the gradients at step 0 too
    assert rank([_ex(True), _f("unnormalized_inputs", 0.6)])[0].kind == "unnormalized_inputs"
    table = arrows([_ex(True)])
    assert "exploding_gradients" not in table["lr_too_high"]
    assert table["exploding_gradients"] == EXPLAINS_AT_INIT


def test_n01_init_is_the_root_cause_at_a_moderate_rate_a_high_rate_is_not_init():
    # 6 ReLU layers of width 64 with N(0, 1) weights at SGD lr 0.05: the loss is huge and the
    # gradients explode at step 0, before any update → exploding_gradients first, the
    # init's repair first; the same net with its default init at lr 20 explodes from the
    # steps → lr_too_high first.
    def normal(m):
        nn.init.normal_(m.weight, 0.0, 1.0)

    _, w = _train(_net(6, nn.ReLU, normal, width=64), lr=0.05, epochs=2)
    found = w.findings()
    assert found[0].kind == "exploding_gradients"
    ev = found[0].evidence
    assert ev["at_initialization"] is True and ev["init_grad_norm"] > 1e4
    assert "already at step 0, before any update" in found[0].explanation
    assert found[0].repairs[0] == "reinit_by_activation"
    kinds = {f.kind: f.explained_by for f in found[1:]}
    assert kinds.get("lr_too_high", "exploding_gradients") == "exploding_gradients"
    _, w = _train(_net(6, nn.ReLU, width=64), lr=20.0, epochs=2)
    found = w.findings()
    assert found[0].kind == "lr_too_high"
    assert all(f.evidence.get("at_initialization") is not True for f in found)


def test_units_saturated_at_initialization_are_not_blamed_on_the_learning_rate():
    # tests/test_user_model.py's 8-layer sigmoid net with N(0, 4²) weights after one epoch:
    # 88% of the units saturated (already at step 0), a marginal too-high-LR signal (update
    # ratio 0.104, confidence 0.508): the saturation is the primary finding
    sat = Finding("saturation", (), {"at_initialization": True}, "", ("swap_activation",), 0.883)
    lr = _f("lr_too_high", 0.508)
    ranked = rank([lr, sat])
    assert [f.kind for f in ranked] == ["saturation", "lr_too_high"]
    # no loss rise in its evidence: the huge step follows from the init (test_doctor_lr_vs_init)
    assert ranked[1].explained_by == "saturation"
    # saturation that appears only after training started may come from the rate
    later = Finding("saturation", (), {"at_initialization": False}, "", (), 0.883)
    assert [f.kind for f in rank([lr, later])] == ["lr_too_high", "saturation"]
