"""The public API: every exported name exists and carries a docstring."""

from __future__ import annotations

import importlib
import inspect

import pytest

PACKAGES = ["trainwell", "trainwell.nn", "trainwell.optim", "trainwell.optim.schedules",
            "trainwell.optim.clip", "trainwell.optim.penalties", "trainwell.data", "trainwell.train",
            "trainwell.config", "trainwell.doctor", "trainwell.transfer"]


def exported():
    for pkg in PACKAGES:
        module = importlib.import_module(pkg)
        for name in module.__all__:
            yield pkg, name, getattr(module, name)


@pytest.mark.parametrize("pkg, name, obj", list(exported()), ids=lambda v: str(v)[:40])
def test_every_public_function_and_class_has_a_docstring(pkg, name, obj):
    if inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismodule(obj):
        doc = inspect.getdoc(obj)
        assert doc and len(doc.split()) >= 3, f"{pkg}.{name} needs a docstring"


def test_the_readme_example_names_exist():
    import trainwell as tw

    assert callable(tw.data.load) and callable(tw.optim.build) and callable(tw.nn.MLP)
    assert tw.Trainer.fit.__doc__ and tw.Trainer.evaluate.__doc__
