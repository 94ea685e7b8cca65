"""Units of the planners' page: HTML/CSV rendering, the SVG chart, the history cache on a real local store."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest

from features.feature_store import FeatureStoreUnavailable, LocalFeatureStore
from features.schema import FEATURE_STORE_SCHEMA
from service.history import HistoryCache, HistoryUnavailable, Point
from service.ui_chart import compact, render_chart
from service.ui_render import csv_cell, render_csv, render_detail, render_page
from service.ui_routes import valid_product_id

HOSTILE = "<img src=x onerror=alert(1)>"
FORECAST = {
    "productid": "P1",
    "prediction": 1500.5,
    "lower": 1000.25,
    "upper": 2100.75,
    "forecast_month": "2025-02",
    "model_version": "3",
    "features_as_of": "2025-01",
    "source": "teinvento",
    "product_name": HOSTILE,
    "calorie_category": None,
}


class _Tags(HTMLParser):
    """Start tags and text of a document, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


def test_vendor_names_are_text_not_markup():
    html = render_page(
        table=[FORECAST], query=HOSTILE, chosen="P1", detail_html=render_detail(FORECAST, "<svg/>")
    )
    parsed = _parse(html)
    assert not [t for t, _ in parsed.tags if t == "img"]
    assert not [a for _, a in parsed.tags if any(k.startswith("on") for k in a)]
    assert "".join(parsed.text).count(HOSTILE) == 2  # the list's link and the detail heading
    search = next(a for t, a in parsed.tags if t == "input")
    assert search["value"] == HOSTILE  # the query echoed back as an attribute value, not markup
    assert not [t for t, a in parsed.tags if t == "script" and "src" not in a]  # no inline script
    assert not [a for _, a in parsed.tags if "style" in a]  # no inline style (the CSP forbids them)


def test_detail_figures_carry_the_exact_api_values():
    html = render_detail(FORECAST, "<svg/>")
    assert '<b id="fc-p50" data-value="1500.5">1,500</b>' in html  # whole units (round half to even)
    assert '<b id="fc-p10" data-value="1000.25">1,000</b>' in html
    assert '<b id="fc-p90" data-value="2100.75">2,101</b>' in html
    assert "<dd>unknown</dd>" in html  # no calorie category


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("Tamal mix", "Tamal mix"),
        (None, ""),
        (3.25, "3.25"),
        (7, "7"),
    ],
)
def test_csv_cells_guard_spreadsheet_formulas(value, cell):
    assert csv_cell(value) == cell


def test_csv_has_every_row_and_the_exact_quantiles():
    rows = [FORECAST, {**FORECAST, "productid": "P2", "product_name": '=1+1, "quoted"'}]
    parsed = list(csv.DictReader(io.StringIO(render_csv(rows))))
    assert [r["productid"] for r in parsed] == ["P1", "P2"]
    assert parsed[1]["product_name"] == '\'=1+1, "quoted"'
    assert (float(parsed[0]["p10"]), float(parsed[0]["p50"]), float(parsed[0]["p90"])) == (
        1000.25,
        1500.5,
        2100.75,
    )


def test_chart_draws_history_band_and_p50_in_scale():
    points = [Point(f"2024-{m:02d}", 1000.0 + 50 * m) for m in range(1, 13)] + [Point("2025-01", None)]
    svg = render_chart(points, FORECAST, label=HOSTILE)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<img" not in svg and "&lt;img" in svg  # the label is escaped
    assert 'data-p10="1000.25" data-p50="1500.5" data-p90="2100.75"' in svg
    assert svg.count('<circle class="month"') == 12  # the unreported month is a gap, not a zero
    band = re.search(r'<rect class="band" x="[^"]+" y="([^"]+)" width="14" height="([^"]+)"', svg)
    p50 = re.search(r'<circle class="p50" cx="[^"]+" cy="([^"]+)"', svg)
    top, height, cy = float(band.group(1)), float(band.group(2)), float(p50.group(1))
    assert top < cy < top + height
    # y is linear in the value: (p90 - p10) / (p50 - p10) in value equals the ratio in pixels
    assert abs((top + height - top) / (top + height - cy) - (2100.75 - 1000.25) / (1500.5 - 1000.25)) < 0.01
    assert "style" not in svg


def test_chart_without_history_shows_the_forecast_and_the_reason():
    svg = render_chart((), FORECAST, missing_history="History unavailable right now: retry later")
    assert '<rect class="band"' in svg and "History unavailable right now" in svg
    assert "<polyline" not in svg


def test_axis_labels_are_compact():
    assert [compact(v) for v in (0, 950, 120_000, 3_500_000, 2e9)] == ["0", "950", "120k", "3.5M", "2B"]


@pytest.mark.parametrize(
    ("value", "ok"),
    [("206050084", True), ("a b", True), ("", False), ("x" * 65, False), ("é", False), ("\x00", False)],
)
def test_product_parameter_validation_matches_the_api(value, ok):
    assert valid_product_id(value) is ok


def _store(tmp_path: Path) -> LocalFeatureStore:
    rows = [
        {"id_product": "P1", "source": "erp", "year_month": dt.date(2024, m, 1), "total_sales": 10.0 * m}
        for m in range(1, 7)
    ] + [{"id_product": "P1", "source": "teinvento", "year_month": dt.date(2024, 1, 1), "total_sales": 99.0}]
    rows += [{"id_product": "P2", "source": "erp", "year_month": dt.date(2024, 6, 1), "total_sales": None}]
    store = LocalFeatureStore(tmp_path / "features.parquet")
    store.write(pl.DataFrame(rows, schema=FEATURE_STORE_SCHEMA))
    return store


def test_feature_store_history_is_every_month_of_one_product(tmp_path):
    store = _store(tmp_path)
    history = store.history("P1")
    assert history.columns == ["source", "year_month", "total_sales"]
    assert history.filter(pl.col("source") == "erp")["total_sales"].to_list() == [
        10.0 * m for m in range(1, 7)
    ]
    assert store.history("nope").height == 0
    assert store.history("' OR 1=1 --").height == 0
    with pytest.raises(TypeError):
        store.history(1)  # type: ignore[arg-type]


def test_history_cache_caches_per_series_and_bounds_queries(tmp_path):
    now = [0.0]
    cache = HistoryCache(_store(tmp_path), rate=1.0, clock=lambda: now[0])
    first = cache.points("P1", "erp", "2024-06")
    assert [p.month for p in first] == [f"2024-{m:02d}" for m in range(1, 7)] and cache.queries == 1
    assert cache.points("P1", "erp", "2024-06") is first and cache.queries == 1  # cached: no query
    with pytest.raises(HistoryUnavailable):  # a second series within the second: over budget, not asked
        cache.points("P2", "erp", "2024-06")
    assert cache.queries == 1
    now[0] = 1.0
    assert cache.points("P2", "erp", "2024-06") == (Point("2024-06", None),)
    now[0] = 2.0
    assert cache.points("P1", "teinvento", "2024-01") == (Point("2024-01", 99.0),)  # its own series
    assert cache.queries == 3


def test_history_cache_turns_store_failures_into_unavailable(tmp_path):
    store = LocalFeatureStore(tmp_path / "missing.parquet")
    with pytest.raises(FeatureStoreUnavailable):
        store.history("P1")
    with pytest.raises(HistoryUnavailable):
        HistoryCache(store, rate=5.0).points("P1", "erp", "2024-06")
    (tmp_path / "corrupt.parquet").write_bytes(b"PAR1 not a parquet file PAR1")
    with pytest.raises(HistoryUnavailable):
        HistoryCache(LocalFeatureStore(tmp_path / "corrupt.parquet"), rate=5.0).points("P1", "erp", "2024-06")


def test_the_page_modules_import_neither_mlflow_nor_prefect():
    import ast

    root = Path(__file__).resolve().parents[1] / "service"
    for path in [root / "history.py", *root.glob("ui_*.py")]:
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module.split(".")[0])
        assert not names & {"mlflow", "prefect"}, path.name
        assert len(path.read_text().splitlines()) < 300, path.name
