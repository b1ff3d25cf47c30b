"""The health report: self-contained HTML with inline SVG plots, rendered by headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib

import pytest
import torch
from torch import nn

from trainwell.cli import main
from trainwell.data import Dataset, Split
from trainwell.doctor import DoctorCallback, Health, write_report
from trainwell.doctor.wording import (
    change_line,
    evidence_sentences,
    metric_change,
    num,
    pct,
    toml_lines,
)
from trainwell.train import Trainer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def run_dir(tmp_path):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=gen)
    y = (x[:, 0] + x[:, 1] > 0).long()
    data = Dataset(
        Split(x[:192], y[:192]),
        Split(x[192:224], y[192:224]),
        Split(x[224:], y[224:]),
        "classification",
        2,
        "toy",
    )
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2)
    )
    cb = DoctorCallback(every=2, num_classes=2, report=True)
    trainer = Trainer(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        epochs=3,
        batch_size=32,
        callbacks=[cb],
        device="cpu",
        run_dir=tmp_path,
        progress=False,
    )
    trainer.fit(data)
    return tmp_path


def test_report_is_self_contained_with_images(run_dir):
    text = (run_dir / "report.html").read_text()
    charts = re.findall(r"<svg class='plot' viewBox='0 0 (\d+) (\d+)'.*?</svg>", text, re.S)
    assert len(charts) == 5  # curves, gradient heat map, dead/saturated, histograms, LR
    for width, height in charts:
        # Full page width: ~1100 px wide in its own coordinates, shown at 100% of the page.
        assert int(width) >= 1000 and int(height) >= 200
    assert "svg.plot{width:100%" in text
    # Readable: labelled axes, legends and the layers by name.
    for label in ("optimizer step", "epoch", "accuracy", "layer (input side at the top)",
                  "log10 of the gradient norm", "validation loss", "learning rate",
                  "dead units", "saturated outputs", "layer (input side first)"):
        assert label in text, label
    names = Health.read(run_dir / "health.jsonl").layer_names
    assert names and all(f">{name}</text>" in text for name in names)  # every layer labelled
    # Nothing fetched: no link, no image file, no namespace URL (inline SVG needs none).
    assert "http" not in text.lower().replace("http-equiv", "")
    assert "<img" not in text
    health = Health.read(run_dir / "health.jsonl")
    assert [r["step"] for r in health.probes][:4] == [0, 2, 4, 6]
    assert len(health.losses) == 18 and len(health.epochs) == 3  # 6 steps × 3 epochs


def test_report_regenerates_from_health(run_dir):
    (run_dir / "report.html").unlink()
    path = write_report(run_dir)
    assert path.read_text().count("<svg class='plot'") == 5


def test_report_renders_in_headless_chromium(run_dir, tmp_path_factory):
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":  # .ci/run installs it: CI must not skip this test
            pytest.fail("chromium is missing in CI; .ci/run should have installed it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    shot = profile / "shot.png"
    flags = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        f"--user-data-dir={profile}",
    ]
    url = (run_dir / "report.html").as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-500:]
    assert dom.stdout.count("<svg class=\"plot\"") + dom.stdout.count("<svg class='plot'") == 5
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1000,2400", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[0] == 2400 and pixels.shape[1] == 1000
    # The page is not blank: the plots put many distinct colours on the white background.
    assert float(pixels[..., :3].std()) > 0.05


def test_resumed_run_keeps_the_checkpointed_health(run_dir):
    before = Health.read(run_dir / "health.jsonl")

    class _Resumed:  # what the callback reads from a Trainer that resumed after epoch 2
        epoch, step, run_dir = 2, 12, None

    _Resumed.run_dir = run_dir
    cb = DoctorCallback(every=2)
    cb._resume(_Resumed())
    assert cb.health.epochs == before.epochs[:2]
    assert cb.health.losses == before.losses[:12]
    assert [p["step"] for p in cb.health.probes] == [s for s in range(0, 12, 2)]


def test_a_training_runs_report_starts_with_its_final_metrics(run_dir):
    text = (run_dir / "report.html").read_text()
    health = Health.read(run_dir / "health.jsonl")
    last = health.epochs[-1]
    assert text.index("id='metrics'") < text.index("<h2>Findings")
    assert f"<td class='n'>{num(last['val_loss'])}</td>" in text
    assert f"<td class='n'>{pct(last['val_accuracy'])}</td>" in text


def test_numbers_and_changes_read_as_a_person_writes_them():
    assert num(0.08958333333333333) == "0.08958" and num(5.698e36) == "5.698e36"
    assert num(160) == "160" and num(float("nan")) == "NaN" and num(None) == "n/a"
    assert pct(0.7344) == "73.4%"
    assert change_line("optim.lr", 5.0, 0.05) == "optim.lr: 5 → 0.05"
    assert change_line("model.batch_norm", False, True) == "model.batch_norm: false → true"
    assert change_line("model.output_activation", "relu", None) == (
        'model.output_activation: "relu" → unset')
    assert change_line("optim.lr", 3.0, 3.0 * 0.1) == "optim.lr: 3 → 0.3"  # not 0.30000000000000004
    assert metric_change(0.06944, 0.7986, accuracy=True) == "6.9% → 79.9% (+72.9 points)"
    assert metric_change(2.0, 1.5, accuracy=False) == "2 → 1.5 (−25.0%)"
    assert metric_change(float("nan"), 1.2032, accuracy=False) == "NaN → 1.203"
    assert toml_lines({"optim.lr": 0.05, "model.batch_norm": True, "model.init": None}) == [
        "[optim]", "lr = 0.05", "", "[model]", "batch_norm = true", "# init = (unset)"]


def test_evidence_reads_as_sentences_with_numbers():
    lr_high = {"loss_rising": True, "loss_up_share": 0.0, "update_ratio_max_layer": 0.0,
               "update_ratio_peak": 4.469, "accuracy": 0.06944, "loss_start": 2.756,
               "loss_end": 5.698e36, "chance_accuracy": 0.1}
    assert evidence_sentences(lr_high) == [
        "The loss rose over the run.",
        "The loss went up in 0.0% of the loss windows.",
        "A typical step changed a layer's weights by 0 of their norm (median ‖ΔW‖/‖W‖ of the "
        "layer that moves most).",
        "The largest single step moved a layer by 4.469× its weights.",
        "The run ends at 6.9% accuracy (chance level: 10.0%).",
        "The training loss went from 2.756 at the start to 5.698e36 at the end.",
    ]
    dead = evidence_sentences({"dead_share": {"blocks.1.linear": 0.7344}, "bias_mean_start": -0.5,
                               "non_finite_steps": 160, "first_step": 3, "new_signal": 0.123456})
    assert dead == [
        "Share of dead ReLU units (0 on every probe sample) by layer: blocks.1.linear 73.4%.",
        "The mean bias at the first probe was -0.5.",
        "160 steps had a non-finite loss or gradient (inf/NaN), the first at step 3.",
        "new signal: 0.1235.",  # a key without a sentence yet still reads with its number
    ]
    head = {"output_activation": "sigmoid", "loss": "mse", "out_features": 1, "num_classes": None,
            "target_min": -3.2, "target_max": 5.1}
    assert evidence_sentences(head) == [
        "The head has 1 output with a sigmoid activation, under the mse loss.",
        "The targets range from -3.2 to 5.1.",
    ]


_BROKEN = """name = "t"
seed = 0
device = "cpu"
[data]
source = "synthetic"
num_samples = 400
options = {kind = "moons", noise = 0.2}
[model]
depth = 2
width = 16
[optim]
name = "sgd"
lr = 10.0
[schedule]
name = "constant"
[train]
epochs = 3
batch_size = 32
checkpoint_every = 100
threads = 1
"""


def _significant(number: str) -> int:
    mantissa = number.lower().split("e")[0].replace(".", "").lstrip("0")
    return len(mantissa)


def test_doctor_prints_the_patch_and_the_report_shows_each_change(tmp_path, capsys):
    before = torch.get_num_threads()
    config = tmp_path / "broken.toml"
    config.write_text(_BROKEN)
    out = tmp_path / "doc"
    try:
        main(["doctor", str(config), "--out", str(out)])
    finally:
        torch.set_num_threads(before)
    term = capsys.readouterr().out
    doc = json.loads((out / "doctor.json").read_text())
    assert doc["chosen"] == "lr_down" and doc["patch"] == {"optim.lr": 0.05}  # JSON as before
    # The terminal: each change tried in config terms, the applied patch as TOML, the file.
    assert "  lr_down  optim.lr: 10 → 0.05\n" in term
    assert "applied patch (lr_down), the lines repaired.toml changes:\n  [optim]\n  lr = 0.05\n" in term
    assert f"repaired config: {out / 'repaired.toml'}" in term
    assert tomllib.loads((out / "repaired.toml").read_text())["optim"]["lr"] == 0.05

    text = (out / "report.html").read_text()
    # The top: status, the kept change, the patch and the final metrics before the findings.
    top = text[: text.index("<h2>Findings")]
    assert "optim.lr: 10 → 0.05" in top and "<pre id='patch'>[optim]\nlr = 0.05</pre>" in top
    assert f"Status: <b>{doc['status']}</b>" in top
    for row in ("before (the config as given)", "after (the repaired config)", "yardstick"):
        assert row in top
    assert f"<td class='n'>{pct(doc['after']['test_accuracy'])}</td>" in top
    # Evidence as sentences, not JSON dicts.
    findings = text[text.index("id='findings'"): text.index("</table>", text.index("id='findings'"))]
    assert "<li>The training loss went from" in findings and '{"' not in findings
    # The repairs tried: the change and rounded before → after metrics.
    trials = text[text.index("id='trials'"): text.index("</table>", text.index("id='trials'"))]
    assert "<code>optim.lr: 10 → 0.05</code>" in trials
    d, t = doc["diagnostic"], doc["trials"][0]
    assert metric_change(d["val_accuracy"], t["val_accuracy"], accuracy=True) in trials
    numbers = re.findall(r"\d+(?:\.\d+)?(?:e-?\d+)?", re.sub(r"<[^>]+>", " ", trials))
    assert numbers and max(_significant(n) for n in numbers) <= 4, numbers
