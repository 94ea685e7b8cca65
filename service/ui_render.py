"""HTML and CSV of the planners' page (``service.ui_routes``): plain functions of the forecast table.

Product names come from the vendors' raw files, so every text reaches the page through ``html.escape`` (a
name like ``<img src=x onerror=alert(1)>`` shows as that text) and every CSV text cell that a spreadsheet
would read as a formula (``= + - @``, tab, carriage return first) is prefixed with ``'``. The page has no
inline script or style (its Content-Security-Policy allows only the service's own files).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from html import escape
from urllib.parse import quote

ASSET_PREFIX = "/ui"
PAGE_PATH = "/ui"
CSV_PATH = "/ui/forecasts.csv"
CSV_COLUMNS = (
    "productid",
    "source",
    "product_name",
    "calorie_category",
    "forecast_month",
    "p10",
    "p50",
    "p90",
    "features_as_of",
    "model_version",
)
MAX_LISTED = 1000
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """A CSV cell: None empty, numbers as is, text guarded against spreadsheet formula injection."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        text = str(value)
        return f"'{text}" if text.startswith(_FORMULA_START) else text
    return repr(float(value)) if isinstance(value, float) else str(value)


def render_csv(table: Sequence[dict]) -> str:
    """The forecast table as CSV (``CSV_COLUMNS``; p10/p50/p90 exactly as the API answers them)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in table:
        values = {**row, "p10": row["lower"], "p50": row["prediction"], "p90": row["upper"]}
        writer.writerow([csv_cell(values.get(c)) for c in CSV_COLUMNS])
    return out.getvalue()


def figure(value: float) -> str:
    """A forecast figure as the page shows it: whole units with thousands separators."""
    return f"{value:,.0f}"


def product_label(row: dict) -> str:
    """The name the page shows for a product (its id when the vendor gave none)."""
    return row.get("product_name") or f"Unnamed product {row['productid']}"


def product_href(product_id: str) -> str:
    """The page's URL for one product."""
    return f"{PAGE_PATH}?product={quote(product_id, safe='')}"


def matches(row: dict, query: str) -> bool:
    """True when ``query`` (case-insensitive) is part of the product's name or id."""
    needle = query.strip().lower()
    return not needle or needle in f"{row.get('product_name') or ''} {row['productid']}".lower()


def _search_text(row: dict) -> str:
    return f"{row.get('product_name') or ''} {row['productid']}".lower()


def render_list(table: Sequence[dict], query: str, chosen: str | None) -> str:
    """The searchable product table (rows matching ``query``; ``chosen`` highlighted)."""
    rows = [r for r in table if matches(r, query)]
    body = []
    for r in rows[:MAX_LISTED]:
        current = ' class="current" aria-current="page"' if r["productid"] == chosen else ""
        body.append(
            f'<tr data-productid="{escape(r["productid"])}" data-search="{escape(_search_text(r))}"{current}>'
            f'<td><a href="{escape(product_href(r["productid"]))}">{escape(product_label(r))}</a></td>'
            f'<td class="id">{escape(r["productid"])}</td><td>{escape(r.get("source") or "")}</td>'
            f'<td class="num p50">{figure(r["prediction"])}</td>'
            f'<td class="num band">{figure(r["lower"])} – {figure(r["upper"])}</td></tr>'
        )
    shown = min(len(rows), MAX_LISTED)
    note = f"{shown} of {len(table)} products" + (" (refine the search)" if len(rows) > MAX_LISTED else "")
    return (
        f'<p class="count" id="count">{escape(note)}</p>'
        '<div class="scroll"><table id="products"><thead><tr><th>Product</th><th>Id</th><th>Source</th>'
        '<th class="num">Next month p50</th><th class="num">p10 – p90</th></tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def render_detail(row: dict, chart_svg: str, accuracy_html: str = "") -> str:
    """The chosen product: its figures (exactly the API's, in ``data-value``), chart and accuracy panel."""

    def fig(name: str, key: str) -> str:
        return f'<b id="fc-{name}" data-value="{row[key]!r}">{figure(row[key])}</b>'

    facts = [
        ("Product id", row["productid"]),
        ("Source", row.get("source") or ""),
        ("Calorie category", row.get("calorie_category") or "unknown"),
        ("Features as of", row.get("features_as_of") or ""),
        ("Model version", row.get("model_version") or ""),
    ]
    dl = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in facts)
    return (
        f'<section id="detail" data-productid="{escape(row["productid"])}">'
        f'<h2 id="product-name">{escape(product_label(row))}</h2>'
        f'<p class="figures">Forecast for <b id="fc-month">{escape(str(row["forecast_month"]))}</b>: '
        f'{fig("p50", "prediction")} <span class="range">(p10 {fig("p10", "lower")} – p90 '
        f"{fig('p90', 'upper')})</span></p>"
        f'<figure class="chart-box">{chart_svg}<figcaption>Monthly sales (line) and the next-month forecast: '
        "p50 point, p10–p90 band.</figcaption></figure>"
        f'{accuracy_html}<dl class="facts">{dl}</dl></section>'
    )


def render_page(
    *,
    table: Sequence[dict],
    query: str = "",
    chosen: str | None = None,
    detail_html: str = "",
    message: str | None = None,
    model_version: str = "",
) -> str:
    """The whole page: header, an optional message, the chosen product's panel, the product list."""
    notice = f'<p class="message" id="message" role="alert">{escape(message)}</p>' if message else ""
    as_of = max((r.get("features_as_of") or "" for r in table), default="")
    meta = f"Model version {escape(model_version)} · features as of {escape(as_of)} · " if table else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Tamales forecasts</title>"
        f'<link rel="icon" href="{ASSET_PREFIX}/favicon.svg" type="image/svg+xml">'
        f'<link rel="stylesheet" href="{ASSET_PREFIX}/ui.css">'
        f'<script src="{ASSET_PREFIX}/ui.js" defer></script></head><body>'
        '<header><h1><a href="/ui">Next-month sales forecasts</a></h1>'
        f'<p class="meta">{meta}<a id="csv" href="{CSV_PATH}" download>Download all (CSV)</a> · '
        '<a href="/">API docs</a></p></header><main>'
        f"{notice}{detail_html}"
        '<section id="list"><form method="get" action="/ui" role="search">'
        '<label for="q">Search products</label> '
        f'<input id="q" name="q" type="search" value="{escape(query)}" autocomplete="off" '
        'placeholder="name or id"> <button type="submit">Search</button></form>'
        f"{render_list(table, query, chosen)}</section></main></body></html>"
    )
