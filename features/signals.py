"""Calendar-, rate- and source-aware features: what the forecast needs beyond plain lags.

All computed per series ordered by month, from months <= the row's month (point-in-time); the row's target is
the next month (the *target period*). Sales are compared per week of sales (``rate = total / period weeks``,
``features.calendar``), so a 5-week retail period is not mistaken for growth:

- ``period_weeks``, ``target_period_weeks``, ``target_period_in_quarter``: the reporting calendar;
- ``adj_lag_k``: the sales of lag *k* re-scaled to the target period's length (``rate x target weeks``);
- ``level_forecast``: the mean rate of the last 3 months x target weeks (the last known rate when none);
- ``months_since_sale``: months since the last month with reported sales (0 = this month);
- ``source_growth_1`` / ``source_growth_3``: log growth over 1 / 3 months of the source's chain-linked sales
  index (precision-weighted growth of the products selling in both months), the signal of a shock that
  hits every product at once;
- ``seasonal_step``: how the sources' indexes moved into the target month one and two years earlier, pooled
  over sources and years (a yearly season too short to learn per product, learnt from all of them);
  ``seasonal_forecast`` = ``common_factor_forecast`` x that step;
- ``common_factor_forecast``: the product's recent share of the source index (exponentially weighted over
  ``FACTOR_WINDOW`` months) x the index now x target weeks — it follows a common shock at once while
  smoothing the product's own noise;
- ``ses_forecast`` / ``theta_forecast``: exponential smoothing of the rate (``features.smoothing``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from features.calendar import Calendar, weeks_expr
from features.smoothing import smoothing_columns

SERIES = ["source", "id_product"]
ADJUSTED_LAGS = (1, 2, 3, 6, 12)
FACTOR_WINDOW, FACTOR_DECAY = 6, 0.7
SEASON_YEARS = (1, 2)
INDEX_WINDOW, MIN_GROWTH_SD, DEFAULT_GROWTH_SD = 12, 0.05, 0.5
_OVER: dict[str, Any] = {"partition_by": SERIES, "order_by": "year_month"}


def _by_source(expr_of: Mapping[str, pl.Expr], default: pl.Expr) -> pl.Expr:
    out = default
    for source, expr in expr_of.items():
        out = pl.when(pl.col("source") == source).then(expr).otherwise(out)
    return out


def period_columns(calendars: Mapping[str, Calendar], default: Calendar = "month") -> dict[str, pl.Expr]:
    """Weeks of the row's month and of its target month, and the target's position in its quarter."""
    this = pl.col("year_month")
    target = this.dt.offset_by("1mo")
    return {
        "period_weeks": _by_source(
            {s: weeks_expr(this, c) for s, c in calendars.items()}, weeks_expr(this, default)
        ),
        "target_period_weeks": _by_source(
            {s: weeks_expr(target, c) for s, c in calendars.items()}, weeks_expr(target, default)
        ),
        "target_period_in_quarter": ((target.dt.month().cast(pl.Int32) - 1) % 3 + 1),
    }


def rate_columns() -> dict[str, pl.Expr]:
    """Per-series columns from ``rate`` (sales per week) and ``target_period_weeks`` (see module doc)."""
    rate, weeks = pl.col("rate"), pl.col("target_period_weeks")
    last_rate = rate.forward_fill().over(**_OVER)
    mean_3 = rate.rolling_mean(window_size=3, min_samples=1).over(**_OVER)
    sold = pl.when(rate.is_not_null()).then(pl.col("month_number"))
    return {
        **{f"adj_lag_{k}": rate.shift(k - 1).over(**_OVER) * weeks for k in ADJUSTED_LAGS},
        "level_forecast": pl.coalesce(mean_3, last_rate) * weeks,
        "months_since_sale": (pl.col("month_number") - sold.forward_fill().over(**_OVER)).cast(pl.Int32),
    }


def source_index(rows: pl.DataFrame) -> pl.DataFrame:
    """Per (source, year_month): ``log_index``, the source's chain-linked log sales index.

    Each month's step is the precision-weighted mean log growth of the weekly rate over the products that sold
    in both that month and the one before, each weighted by the inverse variance of its own past growths
    (``INDEX_WINDOW`` months before, floor ``MIN_GROWTH_SD``): steady products say more about what the whole
    market did than noisy ones, one large product cannot move it alone, and products that start, stop or
    skip a month do not move it at all.
    """
    rate = pl.col("rate")
    prev = rate.shift(1).over(**_OVER)
    growth = pl.when((rate > 0) & (prev > 0)).then((rate / prev).log())
    rows = rows.with_columns(growth=growth)
    past_var = (
        pl.col("growth")
        .shift(1)
        .rolling_var(window_size=INDEX_WINDOW, min_samples=3)
        .over(**_OVER)
        .fill_null(DEFAULT_GROWTH_SD**2)
    )
    weight = 1.0 / pl.max_horizontal(past_var, pl.lit(MIN_GROWTH_SD**2))
    steps = (
        rows.with_columns(weight=pl.when(pl.col("growth").is_not_null()).then(weight))
        .group_by("source", "year_month")
        .agg(
            step=((pl.col("growth") * pl.col("weight")).sum() / pl.col("weight").sum())
            .fill_nan(0.0)
            .fill_null(0.0)
        )
        .sort("source", "year_month")
    )
    return steps.select("source", "year_month", log_index=pl.col("step").cum_sum().over("source"))


def seasonal_steps(index: pl.DataFrame, years: tuple[int, ...] = SEASON_YEARS) -> pl.DataFrame:
    """Per year_month *t*: ``seasonal_step``, how the sources' indexes moved from the month *t* to the next one
    a year (and two years) earlier, averaged over every source and year available — a pooled, point-in-time
    estimate of the seasonal change into the target month (null before a year of history)."""
    month, steps = pl.col("year_month"), []
    for y in years:
        later = index.select("source", year_month=month.dt.offset_by(f"{12 * y - 1}mo"), later="log_index")
        earlier = index.select("source", year_month=month.dt.offset_by(f"{12 * y}mo"), earlier="log_index")
        steps.append(
            later.join(earlier, on=["source", "year_month"]).select(
                "year_month", step=pl.col("later") - pl.col("earlier")
            )
        )
    return pl.concat(steps).group_by("year_month").agg(seasonal_step=pl.col("step").mean())


def source_columns() -> dict[str, pl.Expr]:
    """Source growth and the common-factor forecast, from ``log_index`` joined onto the rows."""
    index = pl.col("log_index")
    relative = pl.col("rate") / index.exp()
    weighted = [relative.shift(j).over(**_OVER) for j in range(FACTOR_WINDOW)]
    weights = [FACTOR_DECAY**j for j in range(FACTOR_WINDOW)]
    num = pl.sum_horizontal([(w * x).fill_null(0.0) for w, x in zip(weights, weighted, strict=True)])
    den = pl.sum_horizontal(
        [pl.when(x.is_not_null()).then(w).otherwise(0.0) for w, x in zip(weights, weighted, strict=True)]
    )
    last_relative = relative.forward_fill().over(**_OVER)
    share = pl.when(den > 0).then(num / den).otherwise(last_relative)
    common_factor = share * index.exp() * pl.col("target_period_weeks")
    return {
        "source_growth_1": index - index.shift(1).over(**_OVER),
        "source_growth_3": index - index.shift(3).over(**_OVER),
        "common_factor_forecast": common_factor,
        "seasonal_forecast": common_factor * pl.col("seasonal_step").fill_null(0.0).exp(),
    }


def add_signals(dense: pl.DataFrame, calendars: Mapping[str, Calendar]) -> pl.DataFrame:
    """``dense`` (one row per series-month, sorted) with every column of the module docstring."""
    rows = dense.with_columns(**period_columns(calendars)).with_columns(
        rate=pl.col("total_sales") / pl.col("period_weeks"),
        month_number=pl.col("year_month").dt.year() * 12 + pl.col("year_month").dt.month(),
    )
    rows = rows.with_columns(**rate_columns())
    rows = rows.hstack(smoothing_columns(rows))
    index = source_index(rows)
    rows = rows.join(index, on=["source", "year_month"], how="left")
    rows = rows.join(seasonal_steps(index), on="year_month", how="left")
    return rows.with_columns(**source_columns()).drop("rate", "month_number", "log_index")
