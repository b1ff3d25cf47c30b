"""The fallback finding: a classification run at chance that no rule explains is never healthy."""

from __future__ import annotations

import math

from trainwell.cli.candidates import auto_repairable
from trainwell.doctor.findings import Finding
from trainwell.doctor.rules import NOT_LEARNING_REPAIRS, near_chance, not_learning
from trainwell.doctor.signals import Signals

CHANCE_LOSS = math.log(10)


def _signals(**kw) -> Signals:
    base = dict(task="classification", chance_acc=0.1, chance_loss=CHANCE_LOSS, acc=0.076,
                train_acc=0.116, loss_end=2.49)
    return Signals(**{**base, **kw})


def test_near_chance_needs_accuracy_and_loss_at_chance():
    assert near_chance(_signals())
    # the bar: chance + 25 % of the gap to 1 = 0.325 on 10 classes
    assert near_chance(_signals(acc=0.32, train_acc=0.32))
    assert not near_chance(_signals(acc=0.33))
    assert not near_chance(_signals(train_acc=0.9))  # it fits its training set: not "at chance"
    assert near_chance(_signals(loss_end=CHANCE_LOSS))
    # a loss below the uniform guess's has learned something (healthy circles after 1 epoch)
    assert not near_chance(_signals(loss_end=0.99 * CHANCE_LOSS))
    assert not near_chance(_signals(chance_acc=0.5, chance_loss=math.log(2), acc=0.583,
                                    train_acc=0.553, loss_end=0.662))
    assert not near_chance(_signals(task="regression"))
    assert not near_chance(_signals(acc=float("nan")))


def test_the_evidence_and_the_text_say_what_the_yardstick_shows():
    _, ev, text, conf = not_learning(_signals(yardstick_chance_acc=0.083))
    assert ev["yardstick_at_chance"] is True and ev["yardstick_accuracy"] == 0.083
    assert ev["val_accuracy"] == 0.076 and ev["train_accuracy"] == 0.116
    assert "validation accuracy 0.076 (chance 0.100)" in text
    assert "stays at chance too (validation accuracy 0.083)" in text
    assert "labels belong to the inputs" in text and conf == 0.5
    _, ev, text, _ = not_learning(_signals(yardstick_acc=0.91))
    assert "yardstick_at_chance" not in ev and ev["yardstick_accuracy"] == 0.91
    assert "the training recipe is at fault" in text
    _, ev, text, _ = not_learning(_signals())
    assert "yardstick_accuracy" not in ev and "recipe" not in text


def test_a_finding_without_repairs_is_not_auto_repairable():
    f = Finding("not_learning", (), {}, "at chance", (), 0.5)
    assert auto_repairable([f], []) is False
    g = Finding("not_learning", (), {}, "at chance", NOT_LEARNING_REPAIRS, 0.5)
    assert auto_repairable([g], []) is True
