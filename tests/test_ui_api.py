"""The planners' page in-process (``TamalesForecast.to_asgi()`` + a test client): page, CSV and API agree.

Runs on the session's sample data (real features, training and packaging flows). The browser test
(``tests/test_ui_browser.py``) covers the served bento in Chromium.
"""

from __future__ import annotations

import csv
import io
import re
from html import unescape

import polars as pl
import pytest

from service.contract import BATCH_ROUTE, PREDICT_ROUTE
from service.routing import RouteTable
from service.ui_render import CSV_COLUMNS, figure
from service.ui_routes import CSP

_ROW = re.compile(
    r'<tr data-productid="([^"]*)"[^>]*>.*?<td class="num p50">([^<]*)</td>'
    r'<td class="num band">([^<]*) – ([^<]*)</td></tr>'
)


# ui_client reaches the served app through request.getfixturevalue (its settings must be set first), which
# the fixture-based lane marking cannot see.
pytestmark = pytest.mark.integration


@pytest.fixture
def ui_client(monkeypatch, request):
    """The in-process client, with a history budget that lets one test view every product (set before the
    service instance reads its settings)."""
    from features.settings import get_settings

    monkeypatch.setenv("TAMALES_UI_HISTORY_QUERIES_PER_SECOND", "1000")
    get_settings.cache_clear()
    return request.getfixturevalue("forecast_client")


def _api(client, product_ids: list[str]) -> dict[str, dict]:
    response = client.post(BATCH_ROUTE, json={"productids": product_ids})
    assert response.status_code == 200, response.text
    return {r["productid"]: r for r in response.json()["results"]}


def _csv(client) -> dict[str, dict]:
    response = client.get("/ui/forecasts.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    reader = csv.DictReader(io.StringIO(response.text))
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    return {row["productid"]: row for row in reader}


def _detail_value(html: str, name: str) -> float:
    found = re.search(rf'<b id="fc-{name}" data-value="([^"]+)">([^<]*)</b>', html)
    assert found, f"no figure {name} on the page"
    assert found.group(2) == figure(float(found.group(1)))
    return float(found.group(1))


def test_page_csv_and_api_agree_for_every_product(ui_client, feature_rows):
    ids = sorted(feature_rows)
    api = _api(ui_client, ids)
    assert all(api[pid]["status"] == 200 for pid in ids)
    page = ui_client.get("/ui")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CSP
    listed = {pid: (p50, lo, hi) for pid, p50, lo, hi in _ROW.findall(page.text)}
    assert set(map(unescape, listed)) == set(ids)
    table = _csv(ui_client)
    assert set(table) == set(ids)
    for pid in ids:
        want = api[pid]
        assert listed[pid] == (figure(want["prediction"]), figure(want["lower"]), figure(want["upper"]))
        row = table[pid]
        assert (float(row["p10"]), float(row["p50"]), float(row["p90"])) == (
            want["lower"],
            want["prediction"],
            want["upper"],
        )
        assert row["forecast_month"] == want["forecast_month"]
        assert row["features_as_of"] == want["features_as_of"]
        assert row["model_version"] == want["model_version"]
        assert row["source"] == feature_rows[pid]["source"]
        detail = ui_client.get("/ui", params={"product": pid})
        assert detail.status_code == 200
        got = {k: _detail_value(detail.text, k) for k in ("p10", "p50", "p90")}
        assert got == {"p10": want["lower"], "p50": want["prediction"], "p90": want["upper"]}
        chart = re.search(
            r'<svg class="chart"[^>]*data-p10="([^"]+)" data-p50="([^"]+)" data-p90="([^"]+)"', detail.text
        )
        assert chart and tuple(map(float, chart.groups())) == (
            want["lower"],
            want["prediction"],
            want["upper"],
        )
        assert "History unavailable" not in detail.text


def test_single_predict_equals_the_page(ui_client, known_product):
    want = ui_client.post(PREDICT_ROUTE, json={"productid": known_product}).json()
    detail = ui_client.get("/ui", params={"product": known_product}).text
    assert _detail_value(detail, "p50") == want["prediction"]
    assert f'data-forecast-month="{want["forecast_month"]}"' in detail
    # the chart shows the product's months up to its latest feature month
    months = int(re.search(r'data-months="(\d+)"', detail).group(1))
    assert months >= 6
    assert f"<title>{want['features_as_of']}:" in detail


@pytest.mark.parametrize(
    ("product", "message"),
    [
        ("no-such-product", "Unknown product"),
        ("", "not a valid product id"),
        ("x" * 65, "not a valid product id"),
        ("bad\x01id", "not a valid product id"),
        ("<script>alert(1)</script>", "Unknown product"),
        ("ñandú", "not a valid product id"),
    ],
)
def test_bad_product_parameters_get_the_pages_own_message(ui_client, product, message):
    response = ui_client.get("/ui", params={"product": product})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<p class="message" id="message" role="alert">' in response.text
    assert message in response.text
    assert "<script>alert" not in response.text
    assert 'id="products"' in response.text  # the list is still there to pick from


def test_search_filters_the_list(ui_client, feature_rows, known_product):
    response = ui_client.get("/ui", params={"q": known_product})
    ids = {unescape(pid) for pid, *_ in _ROW.findall(response.text)}
    assert known_product in ids
    assert all(
        known_product in pid or known_product.lower() in unescape(response.text).lower() for pid in ids
    )
    assert len(ids) < len(feature_rows)
    nothing = ui_client.get("/ui", params={"q": "zzz-no-product-has-this"})
    assert _ROW.findall(nothing.text) == [] and f"0 of {len(feature_rows)} products" in nothing.text


def test_assets_and_unknown_ui_paths(ui_client):
    js, css = ui_client.get("/ui/ui.js"), ui_client.get("/ui/ui.css")
    assert js.status_code == css.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")
    assert css.headers["content-type"].startswith("text/css")
    assert ui_client.get("/ui/favicon.svg").headers["content-type"] == "image/svg+xml"
    for path in ("/ui/", "/ui/nope.js", "/ui/forecasts.json", "/uix"):
        response = ui_client.get(path)
        assert response.status_code == 404 and response.json() == {"error": "Not Found"}, path
    assert ui_client.post("/ui").status_code == 405
    assert ui_client.get("/").status_code == 200  # Swagger stays at /


def test_ui_routes_have_their_own_metric_labels(forecast_app):
    table = RouteTable(forecast_app.router.routes)
    for path in ("/ui", "/ui/forecasts.csv", "/ui/ui.js", "/ui/ui.css", "/ui/favicon.svg"):
        scope = {"type": "http", "path": path, "method": "GET", "root_path": ""}
        assert table.template(scope) == path
    assert table.template({"type": "http", "path": "/ui/other", "method": "GET", "root_path": ""}) is None
    assert table.template({"type": "http", "path": PREDICT_ROUTE, "method": "POST", "root_path": ""}) == (
        PREDICT_ROUTE
    )


@pytest.fixture
def realized_client(monkeypatch, request, feature_rows):
    """The in-process client with realized accuracy known for every product: a past forecast of each
    product's latest month (p10/p50/p90 = 0.9/1.05/1.2 × the actual), joined by ``training.realized`` and
    published in a ``realized`` table of this test's own."""
    from features.forecast_schema import REALIZED
    from features.forecast_tables import get_forecast_tables
    from features.settings import get_settings
    from training.realized import actuals, realized_table

    monkeypatch.setenv("TAMALES_BQ_REALIZED_TABLE", "realized_ui_test")
    monkeypatch.setenv("TAMALES_BQ_FORECASTS_TABLE", "forecasts_ui_test")
    get_settings.cache_clear()
    latest = actuals().sort("forecast_month").group_by(["productid", "source"]).last()
    forecasts = latest.select(
        "productid",
        "source",
        "forecast_month",
        (pl.col("actual") * 0.9).alias("p10"),
        (pl.col("actual") * 1.05).alias("p50"),
        (pl.col("actual") * 1.2).alias("p90"),
        model_name=pl.lit("tamales-sales-forecaster"),
        model_version=pl.lit("1"),
        data_version=pl.lit("ui-test"),
    )
    realized = realized_table(
        forecasts, actuals(), "ui-test-actuals", {("tamales-sales-forecaster", "1"): {}}
    )
    tables = get_forecast_tables()
    tables.publish(REALIZED, realized)
    path = get_settings().local_table_path("realized_ui_test")
    try:
        yield request.getfixturevalue("forecast_client"), latest, path
    finally:
        path.unlink(missing_ok=True)


def test_realized_accuracy_panel(realized_client, feature_rows):
    client, latest, path = realized_client
    row = latest.filter(pl.col("productid") == sorted(feature_rows)[0]).to_dicts()[0]
    html = client.get("/ui", params={"product": row["productid"]}).text
    panel = html[html.index('<section class="accuracy"') :]
    assert f"<td>{row['forecast_month']}</td>" in panel
    assert f'<td class="num">{figure(row["actual"])}</td><td class="num">+5.0%</td><td>yes</td>' in panel
    assert "realized WAPE 5.0%" in panel and "bias 5.0%" in panel and "coverage 100.0%" in panel
    path.write_bytes(b"PAR1 this is not parquet PAR1")  # unreadable table: the panel goes, the page stays
    other = sorted(feature_rows)[1]
    response = client.get("/ui", params={"product": other})
    assert response.status_code == 200 and 'id="fc-p50"' in response.text
    assert 'class="accuracy"' not in response.text


def test_no_realized_accuracy_yet_means_no_panel(ui_client, known_product):
    html = ui_client.get("/ui", params={"product": known_product}).text
    assert 'id="fc-p50"' in html and 'class="accuracy"' not in html
