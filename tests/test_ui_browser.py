"""The planners' page in a real browser: Debian's Chromium driven by Playwright, on the served bento.

Chromium is the system's (``.ci/run`` installs Debian's ``chromium``); Playwright drives it through
``executable_path`` and downloads no browser. The served bento is the session's (``tests.fixtures.serving``):
one build per session. The hostile-name test serves that same bento a second time, on a delivery whose
vendor product dimension names a product ``<img src=x onerror=alert(1)>`` (through the real ingest and
features flows, into buckets of its own).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.contract import PREDICT_ROUTE
from service.ui_render import figure
from tests.fixtures import serving
from tests.fixtures.prefect_server import stop_group

HOSTILE_NAME = "<img src=x onerror=alert(1)>"
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Headless Debian Chromium under Playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    assert executable, "Debian's chromium is not installed (apt-get install chromium; .ci/run does it)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


class Watched:
    """A page with everything that went wrong on it recorded: console errors, page errors, dialogs, requests
    that failed or went to another origin."""

    def __init__(self, browser, base_url: str, **context_options) -> None:
        self.base_url = base_url
        self.context = browser.new_context(**context_options)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        self.page.on("dialog", self._dialog)
        self.page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url}"))
        self.page.on("request", self._request)

    def _console(self, message) -> None:
        if message.type in ("error", "warning"):
            self.problems.append(f"console {message.type}: {message.text}")

    def _dialog(self, dialog) -> None:
        self.problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    def _request(self, request) -> None:
        if not request.url.startswith(self.base_url):
            self.problems.append(f"request to another origin: {request.url}")

    def goto(self, path: str) -> None:
        response = self.page.goto(f"{self.base_url}{path}")
        assert response is not None and response.status == 200, path
        self.page.wait_for_load_state("networkidle")

    def close(self) -> None:
        self.context.close()


def _api(url: str, product_id: str) -> dict:
    response = httpx.post(f"{url}{PREDICT_ROUTE}", json={"productid": product_id}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def _assert_detail_matches(page, want: dict) -> None:
    """The figures and the chart on the page are the API's answer."""
    for name, key in (("p10", "lower"), ("p50", "prediction"), ("p90", "upper")):
        shown = page.locator(f"#fc-{name}")
        assert float(shown.get_attribute("data-value")) == want[key]
        assert shown.inner_text() == figure(want[key])
    assert page.locator("#fc-month").inner_text() == want["forecast_month"]
    chart = page.locator("svg.chart")
    assert chart.is_visible()
    assert chart.get_attribute("data-forecast-month") == want["forecast_month"]
    drawn = [float(chart.get_attribute(f"data-{k}")) for k in ("p10", "p50", "p90")]
    assert drawn == [want["lower"], want["prediction"], want["upper"]]
    band, p50 = page.locator("svg.chart rect.band"), page.locator("svg.chart circle.p50")
    top, height = float(band.get_attribute("y")), float(band.get_attribute("height"))
    assert top - 0.1 <= float(p50.get_attribute("cy")) <= top + height + 0.1  # p50 drawn inside its band
    assert page.locator("svg.chart polyline.history").count() >= 1
    assert page.locator("svg.chart circle.month").count() >= 6


def test_pick_a_product_in_chromium(browser, bento_server, feature_rows, session_dir: Path):
    watched = Watched(browser, bento_server.url, viewport={"width": 1100, "height": 900})
    page = watched.page
    try:
        watched.goto("/ui")
        rows = page.locator("#products tbody tr")
        assert rows.count() == len(feature_rows)
        product_id = max(feature_rows, key=lambda pid: (feature_rows[pid].get("product_name") or "", pid))
        name = feature_rows[product_id]["product_name"]
        page.fill("#q", product_id)  # filtered as typed (ui.js)
        visible = page.locator("#products tbody tr:not([hidden])")
        assert visible.count() >= 1 and page.locator("#count").inner_text().startswith(
            f"{visible.count()} of "
        )
        page.locator(f'#products tr[data-productid="{product_id}"] a').click()
        page.wait_for_load_state("networkidle")
        assert page.url.endswith(f"/ui?product={product_id}")
        assert page.locator("#product-name").inner_text() == name
        _assert_detail_matches(page, _api(bento_server.url, product_id))
        page.screenshot(path=str(session_dir / "ui.png"))
        csv = page.locator("#csv")
        assert csv.get_attribute("href") == "/ui/forecasts.csv"
        assert watched.problems == []
    finally:
        watched.close()
    # BentoML records a request's metrics after its response is sent, and /metrics may be answered by the
    # other worker first: poll briefly rather than race it.
    deadline = time.monotonic() + 20
    while 'endpoint="/ui"' not in httpx.get(f"{bento_server.url}/metrics", timeout=30).text:
        assert time.monotonic() < deadline, "the page's requests never appeared in /metrics under /ui"
        time.sleep(0.5)


def test_phone_sized_viewport(browser, bento_server, known_product_with_name):
    watched = Watched(browser, bento_server.url, viewport=PHONE, is_mobile=True, has_touch=True)
    page = watched.page
    try:
        watched.goto(f"/ui?product={known_product_with_name}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"the page scrolls sideways on a phone: {width} px"
        box = page.locator("svg.chart").bounding_box()
        assert box is not None and 300 <= box["width"] <= PHONE["width"]
        _assert_detail_matches(page, _api(bento_server.url, known_product_with_name))
        page.locator("#q").fill("no product has this text")
        assert page.locator("#products tbody tr:not([hidden])").count() == 0
        assert watched.problems == []
    finally:
        watched.close()


@pytest.fixture(scope="module")
def known_product_with_name(feature_rows) -> str:
    """A product of the sample whose vendor gave it a name."""
    return sorted(pid for pid, row in feature_rows.items() if row.get("product_name"))[0]


def _name_a_product(delivery: Path, name: str) -> str:
    """Rename the first product of the vendor's product dimension to ``name``; its id."""
    from features.synth import _csv_line

    part = sorted(delivery.rglob("product_dim/part-*.csv"))[0]
    lines = part.read_text(encoding="utf-8").splitlines(keepends=True)
    fields = lines[0].rstrip("\n").split(",")  # id, category, name, brand, producer (first line unquoted)
    assert len(fields) == 5, lines[0]
    fields[2] = name
    lines[0] = _csv_line(fields)
    part.write_text("".join(lines), encoding="utf-8")
    return fields[0]


@pytest.fixture
def hostile_server(packaged_bento, own_buckets: Path, prefect_harness) -> Iterator[tuple[str, str]]:
    """The session's bento served on a delivery naming a product ``HOSTILE_NAME``: (url, that id)."""
    from features.synth import generate
    from flows.features import features_flow
    from flows.ingest import ingest_flow

    delivery = own_buckets / "delivery"
    generate(delivery, seed=11, products=4)
    product_id = _name_a_product(delivery, HOSTILE_NAME)
    ingest_flow(source=str(delivery))
    features_flow()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    workdir = own_buckets / "serve"
    workdir.mkdir()
    server = serving.serve_bento(packaged_bento, env, workdir / "serve.log")
    try:
        yield server.url, product_id
    finally:
        stop_group(server.proc)


def test_vendor_product_name_is_shown_as_text_and_runs_nothing(browser, hostile_server):
    url, product_id = hostile_server
    watched = Watched(browser, url)
    page = watched.page
    try:
        watched.goto("/ui")
        link = page.locator(f'#products tr[data-productid="{product_id}"] a')
        assert link.inner_text() == HOSTILE_NAME
        watched.goto(f"/ui?product={product_id}")
        assert page.locator("#product-name").inner_text() == HOSTILE_NAME
        assert page.locator("img").count() == 0
        assert page.evaluate("document.querySelectorAll('[onerror]').length") == 0
        csv = httpx.get(f"{url}/ui/forecasts.csv", timeout=30).text
        assert HOSTILE_NAME in csv
        assert watched.problems == []  # no alert dialog, no failed image request, no CSP report
    finally:
        watched.close()
