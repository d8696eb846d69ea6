"""The dashboard in a real browser: headless Debian Chromium driven by Playwright.

``spy-assets dashboard`` runs as a subprocess on a free 127.0.0.1 port over the shared data
folder; the test opens every page, picks a session and a contract with the widgets, and checks
what is drawn: the charts' traces, the scan events shaded on the contract chart, the report's
figures against ``spy-assets report``, the health page's failed check. A screenshot of each
page is saved under pytest's temporary folder (the paths are printed).
"""

import datetime as dt
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from spy_assets import cli
from spy_assets.dashboard import queries
from spy_assets.dashboard.figures import EVENT_SHAPE
from spy_assets.storage import Storage, dataset
from spy_assets_tests.dashboard.conftest import FAILED_DATASET, FAILED_RULE, FAILED_SESSION

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Chart traces and layout, as plotly.js holds them in the page.
CHARTS_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(g => ({
    traces: g.data.map(t => t.name),
    shaded: (g.layout.shapes || []).filter(s => s.name === 'SHAPE').length,
}))""".replace("SHAPE", EVENT_SHAPE)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium; CI does)",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def dashboard(dash_data_root, request, tmp_path_factory):
    """``spy-assets dashboard`` on a free port over the shared data folder (it starts while
    the folder is being built)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env["SPY_ASSETS_DATA_DIR"] = str(dash_data_root)
    log = tmp_path_factory.mktemp("dashboard-server") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spy_assets.cli", "dashboard", "--port", str(port)],
            cwd=log.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        request.getfixturevalue("dash_data")
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the dashboard did not start within 90 s"
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser_page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def _open(page, url: str, charts: int = 0) -> None:
    page.goto(url)
    page.wait_for_selector('[data-testid="stApp"]')
    _settle(page, charts)


def _settle(page, charts: int = 0) -> None:
    """Wait until the page's title and ``charts`` drawn plotly charts are there and the
    script run is over."""
    page.wait_for_function(
        """n => document.querySelector('[data-testid="stMainBlockContainer"] h1')
            && document.querySelectorAll('.js-plotly-plot .main-svg').length >= n
            && !document.querySelector('[data-testid="stStatusWidget"]')""",
        arg=charts,
    )


def _chart_when(page, condition: str, count: int = 1) -> list[dict]:
    """The charts once there are ``count`` of them (a rerun may briefly show the old one
    beside the new) and the first satisfies ``condition`` (a JS function of it)."""
    page.wait_for_function(
        f"() => {{ const cs = ({CHARTS_JS})(); "
        f"return cs.length === {count} && ({condition})(cs[0]); }}"
    )
    return page.evaluate(CHARTS_JS)


def _shot(page, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def test_every_page_in_chromium(dashboard, browser_page, dash_data, tmp_path, monkeypatch, capsys):
    page, storage = browser_page, Storage(dash_data)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # Session view: open 2025-11-26 by URL, then pick 2025-11-25 with the date widget.
    _open(page, f"{dashboard}/?session=2025-11-26", charts=1)
    day = page.locator('[data-testid="stDateInput"] [role="spinbutton"][aria-label^="day"]')
    day.click()
    page.keyboard.type("25")
    page.locator("h1").first.click()  # the field commits when it loses focus
    page.wait_for_function("() => location.search.includes('session=2025-11-25')")
    _settle(page, charts=1)
    view = queries.session_view(storage, "SPY", dt.date(2025, 11, 25))
    [chart] = _chart_when(page, f"c => c.traces.includes('open {view.open_price:.2f}')")
    strikes = [f"{'C' if t == 'call' else 'P'} {k:g}" for t, k in view.strikes.values[:, 1:3]]
    assert chart["traces"] == ["SPY close", f"open {view.open_price:.2f}", *strikes, "VIX"]
    page.get_by_text("News (").wait_for()
    _shot(page, shots, "session")

    # Contract view: pick the contract with the most scan events in the select box.
    session = dt.date(2025, 11, 26)
    events = storage.read(dataset("SPY", "scan_events"), session)
    busiest = events["contract"].value_counts().index[0]
    _open(page, f"{dashboard}/contract?session={session}", charts=1)
    page.locator('[data-testid="stSelectbox"]').click()
    page.locator('[role="option"]', has_text=busiest).click()
    page.wait_for_function(f"() => location.search.includes('{busiest.replace(':', '%3A')}')")
    _settle(page, charts=1)
    n_events = int((events["contract"] == busiest).sum())
    page.get_by_text(f"{n_events} scan events", exact=False).first.wait_for()
    [chart] = _chart_when(page, f"c => c.shaded === {n_events}")
    assert chart["shaded"] == n_events > 0
    features = storage.read(dataset("SPY", "features"), session)
    has_nan = bool(features.loc[features["contract"] == busiest, "iv"].isna().any())
    expected = ["close", "running session low (reference)", "trigger level (+20%)"]
    expected += ["event peak", "IV"] + (["IV NaN (iv_status)"] if has_nan else [])
    assert chart["traces"] == [*expected, "delta", "gamma", "theta"]
    _shot(page, shots, "contract")

    # Scan report: the figures table equals `spy-assets report` over the same range.
    _open(page, f"{dashboard}/report?start=2025-11-25&end=2025-11-28", charts=2)
    table = page.locator('[data-testid="stMarkdown"] table').first
    shown = dict(r.split("\t") for r in table.inner_text().splitlines()[1:])
    monkeypatch.setenv("SPY_ASSETS_DATA_DIR", str(dash_data))
    assert cli.main(["report", "--start", "2025-11-25", "--end", "2025-11-28"]) == 0
    lines = capsys.readouterr().out.splitlines()
    figures = lines[lines.index(next(x for x in lines if "Contract-days" in x)) :][:8]
    printed = dict(re.split(r"\s{2,}", line.strip()) for line in figures)
    assert len(shown) == 8 and shown == printed
    assert len(_chart_when(page, "c => c.traces.length === 1", count=2)) == 2
    page.get_by_text("Download the events as CSV").wait_for()
    _shot(page, shots, "report")

    # Data health: the failed schema check with its rule and failing rows.
    _open(page, f"{dashboard}/health")
    page.get_by_text(f"{FAILED_DATASET} {FAILED_SESSION}: schema check failed").wait_for()
    page.get_by_text(FAILED_RULE).first.wait_for()
    page.get_by_text("Schema drift is checked on the vendor datasets").wait_for()
    _shot(page, shots, "health")

    # A date that is not a session is explained on the page.
    _open(page, f"{dashboard}/?session=2025-11-27")
    page.get_by_text("is not an NYSE trading session", exact=False).wait_for()
    assert page.locator(".js-plotly-plot").count() == 0
    assert not errors, errors
