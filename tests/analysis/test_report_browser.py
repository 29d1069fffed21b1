"""report.html in a real browser (headless Chromium, Debian's ``chromium``; ``make test`` installs it): every
image loads and nothing is wider than the window, at 1024 px and at the width of MLflow's artifact preview."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import pytest
from matplotlib.image import imread

from analysis.planted import make_phase_trials
from analysis.report import analyze
from tests.analysis.conftest import PLANTED, SPEC_ANALYSIS, Y_GRID, _write_study

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (make test installs it)")

# Runs after the page has loaded and writes what it measured into the DOM, which --dump-dom prints.
PROBE = """<script>window.addEventListener('load', () => {
  const width = window.innerWidth;
  const out = {width, scroll: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight,
               images: [], wide: []};
  for (const img of document.images)
    out.images.push({alt: img.alt, loaded: img.complete && img.naturalWidth > 0, shown: img.clientWidth});
  for (const el of document.body.querySelectorAll('*')) {
    const right = el.getBoundingClientRect().right;
    if (right > width + 0.5) out.wide.push(`${el.tagName.toLowerCase()} ends at ${Math.round(right)} px`);
  }
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});</script>"""


def _chromium(tmp_path, *args: str) -> str:
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--mute-audio",
         f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args],
        capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _measure(tmp_path, page, width: int) -> dict:
    probed = tmp_path / f"probed-{width}.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = _chromium(tmp_path, f"--window-size={width},900", "--dump-dom", probed.as_uri())
    found = re.search(r"<pre id=\"probe\">(.*?)</pre>", dom, re.S)
    assert found, dom[-2000:]
    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    trials = make_phase_trials(PLANTED, y_values=Y_GRID, n_seeds=5, noise=0.02, random_state=7)
    study_dir = _write_study(tmp_path_factory.mktemp("browser") / "runs" / "planted", trials, SPEC_ANALYSIS)
    analyze(study_dir, log_to_mlflow=False, n_boot=50, random_state=0)
    return study_dir / "phase" / "report.html"


@pytest.mark.parametrize("width", [1024, 800])  # a laptop window; MLflow's artifact preview
def test_every_image_loads_and_nothing_overflows(report, tmp_path, width):
    seen = _measure(tmp_path, report, width)
    assert seen["width"] == width
    assert [i["alt"] for i in seen["images"]] == ["phase_diagram", "theory_agreement", "metric_curves",
                                                  "loss_vs_accuracy"]
    assert all(i["loaded"] and 0 < i["shown"] <= width for i in seen["images"]), seen["images"]
    assert seen["scroll"] <= width and not seen["wide"], seen["wide"]


def test_a_screenshot_of_the_whole_report(report, tmp_path):
    height = _measure(tmp_path, report, 1024)["height"]
    shot = tmp_path / "report_1024.png"
    _chromium(tmp_path, f"--window-size=1024,{height}", f"--screenshot={shot}", report.as_uri())
    image = imread(shot)
    assert image.shape[1] == 1024 and image.shape[0] == height
    assert image[..., :3].std() > 0.05  # something was drawn, not a blank page
    print(f"screenshot: {shot}")
