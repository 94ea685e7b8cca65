"""The planners' page, mounted on the forecast service: ``GET /ui``, ``/ui/forecasts.csv``, its JS, CSS and icon.

``/ui`` lists every product of the service's feature snapshot with its next-month p50 and p10–p90 (``?q=``
filters by name or id), and for ``?product=ID`` shows its figures, a chart of its monthly history with the
forecast band (``service.ui_chart``) and, when known, the realized accuracy of its past forecasts
(``service.ui_accuracy``). ``/ui/forecasts.csv`` is the same table.

The figures are the service's own: the snapshot's rows, encoded and scored exactly as ``predict_batch``
does (one model call for the table, recomputed only when the snapshot or the model changes), so the page, the
CSV and the API agree. The page never queries the store for the list; the chart's history is read through
``service.history`` (cached per series, rate-bounded). An unknown or malformed product parameter, or a
snapshot not loaded yet, is the page's own message (status 200), never an error page. Every response
carries a Content-Security-Policy that allows only the service's own files (no inline script or style).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import anyio.to_thread
import bentoml
import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from features.feature_store import get_feature_store
from features.forecast_tables import get_forecast_tables
from features.schema import encode_row
from features.settings import get_settings
from service import contract, ui_render
from service.forecaster import Forecaster
from service.history import HistoryCache, HistoryUnavailable
from service.ui_accuracy import AccuracyPanel
from service.ui_chart import render_chart

logger = logging.getLogger("bentoml.tamales.ui")

ASSETS = Path(__file__).parent / "ui_assets"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
_ASSET_TYPES = {
    "ui.js": "text/javascript; charset=utf-8",
    "ui.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


def _asset(name: str) -> bytes:
    return (ASSETS / name).read_bytes()


ASSET_BYTES = {name: _asset(name) for name in _ASSET_TYPES}


def valid_product_id(value: str) -> bool:
    """True for what the predict route accepts as a product id (1–64 printable ASCII characters)."""
    return 0 < len(value) <= contract.MAX_PRODUCT_ID_LENGTH and all(" " <= c <= "~" for c in value)


class PlannersView:
    """What the page needs from one service instance's forecaster core: the scored table (cached) and the
    history cache."""

    def __init__(self, core: Forecaster) -> None:
        self.core = core
        settings = get_settings()
        rate = settings.ui_history_queries_per_second
        self.history = HistoryCache(get_feature_store(settings), rate)
        self.accuracy = AccuracyPanel(get_forecast_tables(settings), rate, settings.feature_cache_ttl_seconds)
        self._lock = threading.Lock()
        self._key: tuple[int, int, str] | None = None
        self._rows: dict | None = None  # keeps the keyed snapshot alive (its id stays unique)
        self._table: list[dict] = []
        self._by_id: dict[str, dict] = {}

    def table(self) -> tuple[list[dict], dict[str, dict]]:
        """Every product of the snapshot with its forecast (largest p50 first), and the same by id."""
        rows = self.core.cache.snapshot()
        model = self.core.model
        key = (id(rows), len(rows), model.version)
        with self._lock:
            if key != self._key:
                self._table, self._by_id = self._score(dict(rows))
                self._key, self._rows = key, rows
            return self._table, self._by_id

    def _score(self, rows: dict[str, dict]) -> tuple[list[dict], dict[str, dict]]:
        ids = sorted(rows)
        if not ids:
            return [], {}
        model = self.core.model
        X = np.vstack([encode_row(rows[pid], model.spec.features) for pid in ids])
        table = []
        for pid, quantiles in zip(ids, self.core.predict_rows(X), strict=True):
            row = rows[pid]
            table.append(
                {
                    **contract.prediction_body(pid, row, quantiles, model.version),
                    "source": row.get("source"),
                    "product_name": row.get("product_name"),
                    "calorie_category": row.get("calorie_category"),
                }
            )
        table.sort(key=lambda r: (-r["prediction"], r["productid"]))
        return table, {r["productid"]: r for r in table}

    def detail(self, row: dict) -> str:
        """The chosen product's panel (chart without history, and a note, when the history is unavailable)."""
        label = f"Monthly sales and forecast of {ui_render.product_label(row)}"
        try:
            points = self.history.points(row["productid"], row["source"] or "", row["features_as_of"] or "")
            chart = render_chart(points, row, label)
        except HistoryUnavailable:
            chart = render_chart((), row, label, missing_history="History unavailable right now: retry later")
        return ui_render.render_detail(row, chart, self.accuracy.panel(row))


_VIEWS: dict[int, PlannersView] = {}
_VIEWS_LOCK = threading.Lock()


def view() -> PlannersView | None:
    """The view of the running service instance (None before it exists)."""
    try:
        service = bentoml.get_current_service()
    except Exception:  # noqa: BLE001 - BentoML raises its own exception before the instance exists
        return None
    with _VIEWS_LOCK:
        core = getattr(service, "core", None)  # None while the instance is still being built
        if core is None:
            return None
        found = _VIEWS.get(id(core))
        if found is None or found.core is not core:
            found = _VIEWS[id(core)] = PlannersView(core)
        return found


def _html(body: str) -> Response:
    return Response(body, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


def _page(planners: PlannersView | None, params: Any) -> str:
    query = params.get("q", "")[:200]
    raw_product = params.get("product")
    if planners is None or not planners.core.cache.loaded:
        return ui_render.render_page(
            table=[], query=query, message="Forecasts are not loaded yet: retry later."
        )
    table, by_id = planners.table()
    version = planners.core.model.version
    detail, message, chosen = "", None, None
    if raw_product is not None:
        product = raw_product.strip()
        if not valid_product_id(product):
            message = "That product parameter is not a valid product id (1–64 printable characters)."
        elif product not in by_id:
            message = f"Unknown product {product!r}: no forecast for this id. Pick one from the list."
        else:
            chosen = product
            detail = planners.detail(by_id[product])
    return ui_render.render_page(
        table=table, query=query, chosen=chosen, detail_html=detail, message=message, model_version=version
    )


async def page(request: Request) -> Response:
    """``GET /ui``: the page (see the module docstring)."""
    return _html(await anyio.to_thread.run_sync(_page, view(), request.query_params))


async def forecasts_csv(request: Request) -> Response:
    """``GET /ui/forecasts.csv``: every product's forecast (empty table before the snapshot is loaded)."""
    planners = view()
    table: list[dict] = []
    if planners is not None and planners.core.cache.loaded:
        table, _ = await anyio.to_thread.run_sync(planners.table)
    headers = {**SECURITY_HEADERS, "content-disposition": 'attachment; filename="forecasts.csv"'}
    return Response(ui_render.render_csv(table), media_type="text/csv; charset=utf-8", headers=headers)


async def asset(request: Request) -> Response:
    """``GET /ui/ui.js``, ``/ui/ui.css``, ``/ui/favicon.svg``: the page's own script, style sheet and icon."""
    name = request.url.path.rsplit("/", 1)[-1]
    headers = {**SECURITY_HEADERS, "cache-control": "public, max-age=300"}
    return Response(ASSET_BYTES[name], media_type=_ASSET_TYPES[name], headers=headers)


ROUTES = [
    Route(ui_render.PAGE_PATH, page),
    Route(ui_render.CSV_PATH, forecasts_csv),
    Route(f"{ui_render.ASSET_PREFIX}/ui.js", asset),
    Route(f"{ui_render.ASSET_PREFIX}/ui.css", asset),
    Route(f"{ui_render.ASSET_PREFIX}/favicon.svg", asset),
]
app = Starlette(routes=ROUTES)
