"""Run-folder safety (issue 10, items 1, 6, 7, 8): claims, manifests, resume checks, the guard."""

from __future__ import annotations

import io

import pytest

from trainwell.cli.rundir import (
    MANIFEST,
    after_failure,
    check_resume_config,
    choose_run_dir,
    claim_run_dir,
    created_files,
    record_created,
    remove_created,
    resume_config,
    run_guarded,
)
from trainwell.config import load_config, to_toml
from trainwell.errors import UserError


def fake_run(folder, checkpoint=False):
    """The files a run writes (names only matter here)."""
    (folder / "config.toml").write_text("name = 'x'\n")
    (folder / "metrics.jsonl").write_text("{}\n")
    (folder / "checkpoints").mkdir(exist_ok=True)
    (folder / "checkpoints" / ".epoch-0001.json.ab_1.tmp").write_text("{")
    if checkpoint:
        (folder / "checkpoints" / "epoch-0001.safetensors").write_bytes(b"x")
        (folder / "checkpoints" / "epoch-0001.json").write_text("{}")


def test_a_new_folder_is_claimed_with_a_manifest(tmp_path):
    assert choose_run_dir(tmp_path / "runs" / "a", default=True) == (tmp_path / "runs" / "a", None)
    assert not (tmp_path / "runs").exists()  # choosing writes nothing
    folder = claim_run_dir(tmp_path / "runs" / "a")
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST]


def test_rerunning_a_config_picks_a_fresh_folder_and_says_which(tmp_path):
    first = claim_run_dir(tmp_path / "a")
    fake_run(first)
    before = {p: p.read_bytes() for p in first.rglob("*") if p.is_file()}
    second, note = choose_run_dir(tmp_path / "a", default=True)
    assert second == tmp_path / "a-2"
    assert note == f"note: {first} holds an earlier run, kept; this run writes to {second}"
    fake_run(claim_run_dir(second))
    assert {p: p.read_bytes() for p in first.rglob("*") if p.is_file()} == before
    assert choose_run_dir(tmp_path / "a", default=True)[0] == tmp_path / "a-3"  # a-2 is taken


def test_out_over_an_earlier_run_is_refused_with_the_way_out(tmp_path):
    folder = claim_run_dir(tmp_path / "a")
    fake_run(folder)
    with pytest.raises(UserError, match=rf"^--out {folder}: holds an earlier trainwell run; "
                                        rf"continue it with --resume {folder}, or choose"):
        choose_run_dir(folder, default=False)
    with pytest.raises(UserError, match=r"holds an earlier trainwell run"):
        claim_run_dir(folder)


def test_a_foreign_folder_is_refused_untouched(tmp_path):
    (tmp_path / "config.toml").write_text("# my commented config\n")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "model.pt").write_bytes(b"weights")
    with pytest.raises(UserError) as err:
        claim_run_dir(tmp_path)
    assert str(err.value) == (f"--out {tmp_path}: holds files trainwell did not write "
                              "(checkpoints, ...); choose an empty or new folder")
    assert (tmp_path / "config.toml").read_text() == "# my commented config\n"
    assert not (tmp_path / MANIFEST).exists()


def test_a_file_given_as_out_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match=r"exists and is not a folder"):
        choose_run_dir(tmp_path / "f", default=False)


def test_an_empty_folder_the_user_gave_stays_after_a_failed_start(tmp_path):
    folder = tmp_path / "given"
    folder.mkdir()
    claim_run_dir(folder)
    fake_run(folder)
    after_failure(folder)
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_a_failed_start_removes_only_what_the_run_created(tmp_path):
    folder = claim_run_dir(tmp_path / "a")
    fake_run(folder)
    (folder / "mine.pt").write_bytes(b"user file")  # dropped in by the user meanwhile
    message = after_failure(folder)
    assert message == f"removed the 2 files this run had written to {folder}"
    assert sorted(p.name for p in folder.rglob("*")) == ["mine.pt"]


def test_a_failed_run_with_a_checkpoint_is_kept_for_resume(tmp_path):
    folder = claim_run_dir(tmp_path / "a")
    fake_run(folder, checkpoint=True)
    assert after_failure(folder) == (f"the run folder {folder} is kept; continue it with "
                                     f"trainwell train --resume {folder}")
    assert (folder / "config.toml").exists()
    assert not (folder / "checkpoints" / ".epoch-0001.json.ab_1.tmp").exists()


def test_the_manifest_lists_created_files_and_a_foreign_folder_loses_nothing(tmp_path):
    folder = claim_run_dir(tmp_path / "a")
    fake_run(folder, checkpoint=True)
    record_created(folder)
    assert [p.relative_to(folder).as_posix() for p in created_files(folder)] == [
        "checkpoints/.epoch-0001.json.ab_1.tmp", "checkpoints/epoch-0001.json",
        "checkpoints/epoch-0001.safetensors", "config.toml", "metrics.jsonl"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.toml").write_text("x")
    assert remove_created(foreign) == [] and (foreign / "config.toml").exists()
    assert len(remove_created(folder)) == 5 and not folder.exists()


def write_run(folder, *overrides):
    folder.mkdir()
    config = load_config(None, ["data.source=synthetic", *overrides])
    (folder / "config.toml").write_text(to_toml(config))
    return config


def test_resume_with_a_changed_optimizer_is_refused_naming_the_field(tmp_path):
    write_run(tmp_path / "r")
    before = (tmp_path / "r" / "config.toml").read_bytes()
    with pytest.raises(UserError) as err:
        resume_config(tmp_path / "r", ["optim.name=sgd"])
    assert str(err.value) == ("--resume: optim.name was 'adam' in the run and would become 'sgd'; "
                              "the checkpoint depends on it — resume without that --set, or start "
                              "a new run with --out")
    assert (tmp_path / "r" / "config.toml").read_bytes() == before


def test_resume_accepts_fields_the_checkpoint_does_not_depend_on(tmp_path):
    saved = write_run(tmp_path / "r")
    assert resume_config(tmp_path / "r") == saved
    assert resume_config(tmp_path / "r", ["train.threads=1"]).train.threads == 1


@pytest.mark.parametrize("override", ["model.width=32", "train.epochs=3", "seed=5",
                                      "schedule.params={pct_start=0.5}", "data.num_samples=500"])
def test_every_state_field_is_guarded(override):
    saved = load_config(None)
    with pytest.raises(UserError, match=rf"^--resume: {override.split('=')[0]} was "):
        check_resume_config(saved, load_config(None, [override]))


def test_resume_without_a_config_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"no config.toml there"):
        resume_config(tmp_path)


def test_the_guard_turns_a_stray_exception_into_one_line():
    def broken() -> int:
        return {}["optimizer"]

    out = io.StringIO()
    assert run_guarded(broken, stream=out) == 1
    line = out.getvalue()
    assert line.count("\n") == 1
    assert line.startswith("error: internal error KeyError at test_rundir.py:")
    assert line.endswith(": 'optimizer'; rerun with --debug for the traceback and report it\n")


def test_the_guard_lets_user_errors_and_debug_through():
    def bad() -> int:
        raise UserError("optim.lr: must be > 0")

    with pytest.raises(UserError):
        run_guarded(bad)
    with pytest.raises(ZeroDivisionError):
        run_guarded(lambda: 1 // 0, debug=True)
    assert run_guarded(lambda: 0) == 0


def test_a_run_killed_before_its_first_file_can_start_again_in_its_folder(tmp_path):
    folder = claim_run_dir(tmp_path / "a")
    (folder / ".config.toml.x1_2.tmp").write_text("half")
    assert choose_run_dir(folder, default=False) == (folder, None)
    assert claim_run_dir(folder) == folder
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST]
    after_failure(folder)
    assert not folder.exists()  # the first claim made it, so it goes
