"""`dvc plots show` as a user opens it: the page of a tiny run in a real headless browser,
with the network cut. Every data plot must be drawn, nothing logged as an error, and the
temperature axis in numeric order (CSV values reach the page as text: 128 sorts before 32).
Chromium comes from the distribution's packages (.ci/run installs it); without it, skipped."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, run

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(b)), None)


def open_page(html) -> tuple[str, str]:
    """(the DOM after the scripts ran, the browser's console log), no network allowed."""
    res = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=30000",
         "--enable-logging=stderr", "--v=0", "--dump-dom", html.as_uri()],
        capture_output=True, text=True, timeout=300)
    return res.stdout, res.stderr


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None, reason="no Chromium (apt-get install chromium)")
def test_plots_page_draws_offline_in_numeric_order(project):
    run([sys.executable, "-m", "dvc", "repro"], project)
    run([sys.executable, "-m", "dvc", "plots", "show", "-o", "page"], project)
    html = project / "page" / "index.html"
    text = html.read_text(encoding="utf-8")
    assert '<meta charset="utf-8">' in text and "cdn.jsdelivr" not in text
    expected = len(re.findall(r"vegaEmbed\('#", text))
    assert expected >= 9  # the grids, the correlations and the curves as data

    dom, log = open_page(html)
    console = [line for line in log.splitlines() if "CONSOLE" in line]
    errors = [line for line in console if re.search(r"Error|Uncaught|failed", line)]
    assert not errors, errors
    assert dom.count('data-rendered="true"') == expected, (dom.count('data-rendered'), console)
    assert 'data-rendered="error"' not in dom

    # the phase map's axis labels, as drawn: batch size 32 left of 128, width 4 above 1
    start = dom.index("Phases")
    labels = re.findall(r'role-axis-label".*?</g>', dom[start:], flags=re.S)[:2]
    values = [[float(v) for v in re.findall(r">([0-9.e+-]+)</text>", g)] for g in labels]
    temperature = next(v for v in values if set(v) == {32.0, 128.0})
    load = next(v for v in values if set(v) == {1.0, 4.0})
    assert temperature == [32.0, 128.0] and load == [4.0, 1.0]
    assert "batch_size (temperature)" in dom and "width (load)" in dom


@pytest.mark.skipif(BROWSER is None, reason="no Chromium (apt-get install chromium)")
def test_a_plot_that_cannot_be_drawn_says_so(tmp_path):
    from landscape_taxonomy.report.plots_page import page

    bad = tmp_path / "index.html"
    div = ('<div id="p1"><script>vegaEmbed("#p1", {"$schema": '
           '"https://vega.github.io/schema/vega-lite/v5.json", "mark": "nonsense"});'
           '</script></div>')
    bad.write_text(page().replace("{plot_divs}", div).replace("{refresh_tag}", ""),
                   encoding="utf-8")
    dom, _ = open_page(bad)
    assert 'data-rendered="error"' in dom and "This plot could not be drawn" in dom


def test_the_committed_page_needs_no_network():
    # the template .dvc/config names: DVC's placeholders, the libraries inline, no CDN
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / ".dvc" / "config")
    page = (ROOT / ".dvc" / cfg.get("plots", "html_template")).read_text(encoding="utf-8")
    assert "{plot_divs}" in page and "{refresh_tag}" in page
    assert "{scripts}" not in page  # DVC's CDN script tags go there
    assert not re.search(r"<script[^>]+src=", page)
    assert '<meta charset="utf-8">' in page and "window.vegaEmbed" in page
