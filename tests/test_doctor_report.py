"""The health report: self-contained HTML with embedded PNGs, rendered by headless Chromium."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess

import pytest
import torch
from torch import nn

from trainwell.data import Dataset, Split
from trainwell.doctor import DoctorCallback, Health, write_report
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
    uris = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", text)
    assert len(uris) == 5  # curves, gradient heat map, dead/saturated, histograms, LR
    for uri in uris:
        assert base64.b64decode(uri)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http" not in text.lower().replace("http-equiv", "")  # nothing fetched
    health = Health.read(run_dir / "health.jsonl")
    assert [r["step"] for r in health.probes][:4] == [0, 2, 4, 6]
    assert len(health.losses) == 18 and len(health.epochs) == 3  # 6 steps × 3 epochs


def test_report_regenerates_from_health(run_dir):
    (run_dir / "report.html").unlink()
    path = write_report(run_dir)
    assert path.read_text().count("<img") == 5


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
    assert dom.stdout.count("<img") == 5 and "data:image/png;base64," in dom.stdout
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
