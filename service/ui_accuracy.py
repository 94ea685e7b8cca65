"""The planners' page panel "How past forecasts did": realized accuracy from the ``realized`` planner table.

The pipeline joins published forecasts to the actuals a later delivery brings (``features.forecast_tables``,
``features.forecast_schema``). For the chosen product the panel lists its past forecast months (p50, band,
actual, error, whether the actual fell in the band) and the realized WAPE, bias and p10–p90 coverage of all
products of its source in the latest such month, next to the model's backtest WAPE.

Reads are cached (``ttl`` seconds per product and for the per-source summaries) and bounded like the chart's
history: at most ``rate`` table reads per second per worker. The panel is left out — the rest of the page is
unaffected — while nothing is known yet, the tables are unreachable (``ForecastTablesUnavailable``), or the
budget is spent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from html import escape
from typing import Any

import polars as pl

from features.forecast_schema import ALL_PRODUCTS, REALIZED
from features.forecast_tables import ForecastTablesUnavailable
from service.limits import TokenBucket
from service.ui_render import figure

logger = logging.getLogger("bentoml.tamales.ui")
MAX_MONTHS = 12


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}%"


def _newest(frame: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """One row per ``by`` group: the most recently computed."""
    return frame.sort("computed_at", descending=True).unique(by, keep="first", maintain_order=True)


def render_panel(product: pl.DataFrame, summary: pl.DataFrame, source: str) -> str:
    """The panel's HTML from the product's ``realized`` rows and the per-source summary rows ("" if none)."""
    rows = _newest(product.filter(pl.col("source") == source), ["forecast_month"])
    if rows.is_empty():
        return ""
    rows = rows.sort("forecast_month", descending=True).head(MAX_MONTHS)
    body = []
    for r in rows.to_dicts():
        actual, p50 = r["actual"], r["p50"]
        inside = actual is not None and r["p10"] <= actual <= r["p90"]
        error = "–" if not actual else f"{100 * (p50 - actual) / actual:+.1f}%"
        body.append(
            f'<tr><td>{escape(r["forecast_month"])}</td><td class="num">{figure(p50)}</td>'
            f'<td class="num">{figure(r["p10"])} – {figure(r["p90"])}</td>'
            f'<td class="num">{"–" if actual is None else figure(actual)}</td><td class="num">{error}</td>'
            f"<td>{'yes' if inside else 'no'}</td></tr>"
        )
    note = ""
    month = rows["forecast_month"][0]
    agg = _newest(
        summary.filter((pl.col("source") == source) & (pl.col("forecast_month") == month)), ["source"]
    )
    if not agg.is_empty():
        a = agg.to_dicts()[0]
        note = (
            f'<p class="summary">All {escape(source)} products, {escape(month)}: realized WAPE '
            f"{_pct(a['wape'])} (backtest {_pct(a['backtest_wape'])}), bias {_pct(a['bias'])}, "
            f"p10–p90 coverage {_pct(a['coverage'])} of {a['n_products'] or 0} products.</p>"
        )
    return (
        '<section class="accuracy" id="accuracy"><h3>How past forecasts did</h3><div class="scroll"><table>'
        '<thead><tr><th>Month</th><th class="num">Forecast p50</th><th class="num">p10 – p90</th>'
        '<th class="num">Actual</th><th class="num">Error</th><th>In band</th></tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>{note}</section>"
    )


class AccuracyPanel:
    """Cached, rate-bounded reads of the ``realized`` table for the page (thread-safe)."""

    def __init__(
        self, tables: Any, rate: float, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._tables = tables
        self._budget = TokenBucket(rate, max(1.0, rate), clock)
        self._clock = clock
        self.ttl = ttl
        self._cache: dict[str, tuple[float, pl.DataFrame]] = {}
        self._lock = threading.Lock()
        self.reads = 0

    def _read(self, productid: str) -> pl.DataFrame | None:
        now = self._clock()
        with self._lock:
            found = self._cache.get(productid)
        if found is not None and now - found[0] < self.ttl:
            return found[1]
        if not self._budget.take():
            return found[1] if found is not None else None  # a stale answer beats none
        self.reads += 1
        try:
            frame = self._tables.read(REALIZED, productid=productid)
        except ForecastTablesUnavailable as exc:
            logger.warning("realized accuracy unavailable: %s", exc)
            return None
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[productid] = (now, frame)
        return frame

    def panel(self, row: dict) -> str:
        """The panel for the page's chosen product (an API prediction body plus ``source``), or ""."""
        product = self._read(row["productid"])
        if product is None or product.is_empty():
            return ""
        summary = self._read(ALL_PRODUCTS)
        return render_panel(
            product, summary if summary is not None else product.clear(), row.get("source") or ""
        )
