"""Every example config validates, and relative paths in it resolve against its folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainwell.config import load_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.rglob("*.toml")), ids=lambda p: p.name)
def test_example_configs_validate(path):
    config = load_config(path)
    assert config.name
    if config.model.target is not None or config.data.target is not None:
        assert config.root == str(path.parent.resolve())  # targets are looked up beside it


def test_relative_data_paths_resolve_against_the_config_folder(tmp_path):
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "a.toml").write_text('[data]\nsource = "npz:data/x.npz"\n'
                                   '[transfer]\nfrom = "runs/A"\n')
    config = load_config(folder / "a.toml")
    assert config.data.source == f"npz:{folder / 'data' / 'x.npz'}"
    assert config.transfer.from_ == str(folder / "runs" / "A")
    # a --set value stays relative to the working directory, like any command-line path
    config = load_config(folder / "a.toml", ["data.source=npz:y.npz"])
    assert config.data.source == "npz:y.npz"


def test_home_in_a_path_is_expanded(tmp_path):
    (tmp_path / "b.toml").write_text('[data]\nsource = "cifar10:~/data/cifar10"\n')
    config = load_config(tmp_path / "b.toml")
    assert config.data.source == f"cifar10:{Path.home() / 'data' / 'cifar10'}"
