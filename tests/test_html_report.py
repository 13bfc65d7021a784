"""report.html in a real browser (issue #22): headless Chromium opens a run's report with
no network, the verdict is on the page and every plot image rendered; a screenshot is
saved (``$CAPSIM_SCREENSHOT_DIR`` or the test's temporary folder) for a person to look at.

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it when missing); without
it the browser half of the test is skipped, saying so, and the file checks still run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import sim

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)

# Every request leaves through an unreachable proxy and every host name fails to resolve:
# the page can only show what the file itself holds.
NO_NETWORK = ["--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
              "--no-proxy-server=false"]

_PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  var out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = 'images=' + imgs.length + ' rendered=' + ok.length + ' sizes=' +
    imgs.map(function (i) { return i.naturalWidth + 'x' + i.naturalHeight; }).join(',');
  document.body.appendChild(out);
});
</script>"""


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    exp = sim.load_experiment("default", ["horizon=6h"], replications=3)
    folder = tmp_path_factory.mktemp("html") / "run"
    sim.run(exp, workers=1).write(folder)
    return folder


def _chromium(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Headless Chromium with a new, empty profile, no background traffic and no way out
    to the network."""
    profile = cwd / f"profile-{len(list(cwd.glob('profile-*')))}"
    profile.mkdir()
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                           "--hide-scrollbars", f"--user-data-dir={profile}", *NO_NETWORK,
                           *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_report_html_is_self_contained(run_folder):
    page = (run_folder / "report.html").read_text()
    pngs = sorted(p.name for p in run_folder.glob("*.png"))
    assert pngs, "the run wrote no plots"
    assert page.count('<img src="data:image/png;base64,') == len(pngs)
    # nothing is fetched: no URL in any src or href, and a policy forbidding loads
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "default-src 'none'" in page
    assert "Verdict" in page and "API-only on gpt-4o" in page
    assert "As given" in page and "As resolved" in page and "numpy" in page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install "
                    "chromium); the browser check of report.html did not run")
def test_report_html_renders_in_headless_chromium(run_folder, tmp_path):
    page = (run_folder / "report.html").read_text()
    # the probe script needs the page's policy to allow one inline script; images keep
    # the page's own rule (data: only)
    probed = page.replace("default-src 'none';", "default-src 'none'; script-src "
                          "'unsafe-inline';").replace("</body>", _PROBE + "</body>")
    probe_file = tmp_path / "probe.html"
    probe_file.write_text(probed)
    dom = _chromium(["--virtual-time-budget=5000", "--dump-dom", probe_file.as_uri()],
                    tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    match = re.search(r"images=(\d+) rendered=(\d+) sizes=([\dx,]*)", dom.stdout)
    assert match, dom.stdout[-2000:]
    images, rendered = int(match.group(1)), int(match.group(2))
    assert images == len(list(run_folder.glob("*.png"))) and rendered == images
    assert all(int(w) > 100 and int(h) > 100 for w, h in
               (s.split("x") for s in match.group(3).split(",")))
    text = re.sub(r"<[^>]+>", " ", dom.stdout)
    assert "Verdict" in text and "SLO" in text and "API-only on gpt-4o" in text
    # a screenshot of the report itself, for a person to look at
    shots = Path(os.environ.get("CAPSIM_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / "report.png"
    res = _chromium(["--window-size=1280,3000", f"--screenshot={shot}",
                     (run_folder / "report.html").as_uri()], tmp_path)
    assert res.returncode == 0 and shot.stat().st_size > 10_000, res.stderr[-2000:]
