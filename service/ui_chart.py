"""The planners' page chart: a product's monthly history and its next-month forecast band, as inline SVG.

Rendered by the service (no JavaScript library, nothing fetched): a line of the monthly totals, the p10–p90
band and the p50 point at the forecast month, a dashed segment from the last month to the p50, a few y grid
lines. Styling is by class only (``ui_assets/ui.css``): the page's Content-Security-Policy forbids inline
styles. The root element carries the figures it draws (``data-p10``/``data-p50``/``data-p90``,
``data-forecast-month``) so a test can compare them with the API's answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from service.history import Point

WIDTH, HEIGHT = 720.0, 300.0
LEFT, RIGHT, TOP, BOTTOM = 64.0, 24.0, 16.0, 36.0
GRID_LINES = 4


def compact(value: float) -> str:
    """A short axis label: 3.5M, 120k, 950."""
    magnitude = abs(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def _nice_step(span: float) -> float:
    raw = span / GRID_LINES
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def _num(value: float) -> str:
    return f"{value:.1f}"


def render_chart(
    points: Sequence[Point], forecast: dict, label: str = "", missing_history: str | None = None
) -> str:
    """SVG of ``points`` (oldest first) and ``forecast`` (an API prediction body); ``label`` names it for
    screen readers; ``missing_history`` (a reason) draws the forecast alone with that note."""
    lower, p50, upper = (float(forecast[k]) for k in ("lower", "prediction", "upper"))
    months = [p.month for p in points] + [str(forecast["forecast_month"])]
    values = [p.sales for p in points if p.sales is not None and math.isfinite(p.sales)]
    top = max([*values, upper, p50, 1.0])
    step = _nice_step(top)
    y_max = step * math.ceil(top / step)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (plot_w * i / (len(months) - 1) if len(months) > 1 else plot_w / 2)

    def y(v: float) -> float:
        return TOP + plot_h * (1 - max(v, 0.0) / y_max)

    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH:.0f} {HEIGHT:.0f}" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg" data-forecast-month="{escape(months[-1])}" '
        f'data-p10="{lower!r}" data-p50="{p50!r}" data-p90="{upper!r}" data-months="{len(points)}">'
    ]
    for k in range(GRID_LINES + 1):
        v = step * k
        if v > y_max + 1e-9:
            break
        gy = _num(y(v))
        out.append(f'<line class="grid" x1="{LEFT:.0f}" x2="{WIDTH - RIGHT:.0f}" y1="{gy}" y2="{gy}"/>')
        out.append(f'<text class="axis" x="{LEFT - 6:.0f}" y="{gy}" text-anchor="end">{compact(v)}</text>')
    ticks = sorted({0, len(months) - 1, *range(0, len(months) - 1, max(1, len(months) // 6))})
    for i in ticks:
        if i < len(months) - 1 and len(months) - 1 - i < max(1, len(months) // 12):
            continue  # too close to the forecast month's label
        out.append(
            f'<text class="axis" x="{_num(x(i))}" y="{HEIGHT - 12:.0f}" text-anchor="middle">'
            f"{escape(months[i])}</text>"
        )
    segments: list[list[str]] = [[]]
    for i, p in enumerate(points):
        if p.sales is None or not math.isfinite(p.sales):
            segments.append([])  # a gap where a month was not reported
            continue
        segments[-1].append(f"{_num(x(i))},{_num(y(p.sales))}")
        out.append(
            f'<circle class="month" cx="{_num(x(i))}" cy="{_num(y(p.sales))}" r="2.5">'
            f"<title>{escape(p.month)}: {p.sales:,.0f}</title></circle>"
        )
    for seg in segments:
        if len(seg) > 1:
            out.append(f'<polyline class="history" points="{" ".join(seg)}"/>')
    fx = x(len(months) - 1)
    last = next(((i, p) for i, p in reversed(list(enumerate(points))) if p.sales is not None), None)
    if last is not None and math.isfinite(last[1].sales or math.nan):
        i, p = last
        out.append(
            f'<line class="link" x1="{_num(x(i))}" y1="{_num(y(p.sales or 0.0))}" '
            f'x2="{_num(fx)}" y2="{_num(y(p50))}"/>'
        )
    band_top, band_bottom = y(upper), y(lower)
    out.append(
        f'<rect class="band" x="{_num(fx - 7)}" y="{_num(band_top)}" width="14" '
        f'height="{_num(max(band_bottom - band_top, 1.0))}"><title>p10–p90: {lower:,.0f} – {upper:,.0f}'
        "</title></rect>"
    )
    out.append(
        f'<circle class="p50" cx="{_num(fx)}" cy="{_num(y(p50))}" r="5">'
        f"<title>{escape(months[-1])} forecast (p50): {p50:,.0f}</title></circle>"
    )
    if missing_history:
        out.append(
            f'<text class="note" x="{LEFT + plot_w / 2:.0f}" y="{TOP + plot_h / 2:.0f}" '
            f'text-anchor="middle">{escape(missing_history)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
