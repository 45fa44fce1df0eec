"""The report in a real browser: headless Chromium loads every image, and the page is drawn.

Skipped when Chromium is not installed, unless ``TENSORSTATS_REQUIRE_BROWSER=1``
(then it fails).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from matplotlib.image import imread

import tensorstats as ts
from tensorstats.report import write_report

pytestmark = pytest.mark.slow

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p and os.path.exists(p)),
                None)

if CHROMIUM is None:
    if os.environ.get("TENSORSTATS_REQUIRE_BROWSER") == "1":
        pytest.fail("Chromium not found and TENSORSTATS_REQUIRE_BROWSER=1",
                    pytrace=False)
    pytest.skip("Chromium not installed (/usr/bin/chromium)", allow_module_level=True)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--disable-extensions", "--window-size=1280,2400"]

PROBE = """<script>
window.addEventListener("load", function () {
  var out = [];
  document.querySelectorAll("img").forEach(function (img) {
    out.push(img.complete && img.naturalWidth > 0 ? "ok" : "bad");
  });
  var pre = document.createElement("pre");
  pre.id = "img-status";
  pre.textContent = out.join(",");
  document.body.appendChild(pre);
});
</script>"""


def _chromium(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={cwd / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    rng = np.random.default_rng(0)
    paths = {}
    for name in ("a", "b"):
        with ts.Recorder(str(tmp / f"{name}.zarr")) as rec:
            for i, step in enumerate(range(0, 60, 10)):
                for j in range(3):
                    z = rng.normal(size=(16, 4, 5, 5)) * (1 + i * (j + 1) / 6)
                    rec.record("feature", f"layer{j}", z, step=step, channel_axis=1)
                rec.record_scalar("loss", 2.0 * 0.5 ** i, step=step)
        paths[name] = str(tmp / f"{name}.zarr")
    return write_report(paths, tmp / "report", per_page=2)


def test_every_image_loads_in_chromium(index, tmp_path):
    html = index.read_text(encoding="utf-8")
    n_images = html.count("<img ")
    assert n_images >= 8
    probe = tmp_path / "index.html"
    probe.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    out = _chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri(), cwd=tmp_path)
    m = re.search(r'<pre id="img-status">([^<]*)</pre>', out.stdout)
    assert m, f"the probe script did not run; stderr: {out.stderr[-2000:]}"
    status = m[1].split(",")
    assert len(status) == n_images
    assert status == ["ok"] * n_images


def test_screenshot_is_not_blank(index, tmp_path):
    shot = tmp_path / "shot.png"
    out = _chromium(f"--screenshot={shot}", index.as_uri(), cwd=tmp_path)
    assert shot.exists(), out.stderr[-2000:]
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1280)
    dark = (pixels < 0.5).any(axis=-1)
    assert dark.mean() > 0.01          # text and lines are drawn
    assert (pixels > 0.9).all(axis=-1).mean() > 0.3   # on a white page
    colour = np.ptp(pixels, axis=-1) > 0.2
    assert colour.mean() > 0.001       # the figures' coloured lines are there
    # the top of the page holds the title and the summary, not an error page
    assert dark[:600].mean() > 0.005
