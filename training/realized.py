"""Realized accuracy: published forecasts joined to the actuals a later delivery brought.

The actuals are the feature store's monthly totals (``total_sales`` of each (source, product, month) row) as
the newest features run published them. A forecast is *realized* once its ``forecast_month`` has an actual
for its product. Per product and per (source, month) — see ``features.forecast_schema`` for the columns —
``wape`` = sum |actual − p50| / sum actual, ``bias`` = sum (p50 − actual) / sum actual and ``coverage`` =
share of actuals inside [p10, p90]; ``backtest_wape`` is the model's own backtest WAPE for that source.
The rows are upserted into the ``realized`` table, so computing them again after the same delivery changes
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import polars as pl

from features.feature_store import get_feature_store
from features.forecast_schema import ALL_PRODUCTS, FORECASTS, REALIZED, REALIZED_SCHEMA, conform, empty
from features.forecast_tables import get_forecast_tables
from features.settings import Settings, get_settings

RUN_KEYS = ["model_name", "model_version", "data_version"]
# (model_name, model_version) -> source -> that model's backtest WAPE
BacktestWapes = Mapping[tuple[str, str], Mapping[str, float]]


def actuals(settings: Settings | None = None) -> pl.DataFrame:
    """Monthly actuals from the feature store: productid, source, forecast_month (``YYYY-MM``), actual."""
    frame = get_feature_store(settings or get_settings()).read_all()
    return frame.select(
        pl.col("id_product").alias("productid"),
        "source",
        pl.col("year_month").dt.strftime("%Y-%m").alias("forecast_month"),
        pl.col("total_sales").alias("actual"),
    ).filter(pl.col("actual").is_not_null())


def _ratio(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    return pl.when(denominator > 0).then(numerator / denominator).otherwise(None)


def realized_table(
    forecasts: pl.DataFrame,
    actual: pl.DataFrame,
    actuals_version: str,
    backtest: BacktestWapes,
    computed_at: datetime | None = None,
) -> pl.DataFrame:
    """Product rows and per-(source, month) summary rows of every forecast that has an actual."""
    joined = forecasts.join(actual, on=["productid", "source", "forecast_month"], how="inner")
    if joined.is_empty():
        return empty(REALIZED)
    joined = joined.with_columns(
        abs_error=(pl.col("actual") - pl.col("p50")).abs(),
        inside=((pl.col("actual") >= pl.col("p10")) & (pl.col("actual") <= pl.col("p90"))).cast(pl.Float64),
    )
    products = joined.select(
        *RUN_KEYS,
        "source",
        "forecast_month",
        "productid",
        pl.lit(1, pl.Int64).alias("n_products"),
        "actual",
        "p10",
        "p50",
        "p90",
        "abs_error",
        _ratio(pl.col("abs_error"), pl.col("actual")).alias("wape"),
        _ratio(pl.col("p50") - pl.col("actual"), pl.col("actual")).alias("bias"),
        pl.col("inside").alias("coverage"),
    )
    summary = (
        joined.group_by([*RUN_KEYS, "source", "forecast_month"])
        .agg(
            pl.len().cast(pl.Int64).alias("n_products"),
            *(pl.col(c).sum() for c in ("actual", "p10", "p50", "p90", "abs_error")),
            pl.col("inside").mean().alias("coverage"),
        )
        .with_columns(
            productid=pl.lit(ALL_PRODUCTS),
            wape=_ratio(pl.col("abs_error"), pl.col("actual")),
            bias=_ratio(pl.col("p50") - pl.col("actual"), pl.col("actual")),
        )
    )
    rows = pl.concat([products, summary.select(products.columns)])
    lookup = pl.DataFrame(
        [
            {"model_name": name, "model_version": version, "source": source, "backtest_wape": value}
            for (name, version), by_source in backtest.items()
            for source, value in by_source.items()
        ],
        schema={
            "model_name": pl.String,
            "model_version": pl.String,
            "source": pl.String,
            "backtest_wape": pl.Float64,
        },
    )
    rows = rows.join(lookup, on=["model_name", "model_version", "source"], how="left").with_columns(
        actuals_version=pl.lit(actuals_version),
        computed_at=pl.lit(computed_at or datetime.now(UTC), REALIZED_SCHEMA["computed_at"]),
    )
    return conform(REALIZED, rows)


def summary_rows(realized: pl.DataFrame) -> pl.DataFrame:
    """The per-(source, month) rows of a realized table, sorted by run, source and month."""
    rows = realized.filter(pl.col("productid") == ALL_PRODUCTS)
    return rows.sort([*RUN_KEYS, "source", "forecast_month"])


def compute_realized(
    actuals_version: str, backtest: BacktestWapes, settings: Settings | None = None
) -> pl.DataFrame:
    """Join every published forecast to the feature store's actuals, upsert the ``realized`` table and
    return the rows computed (empty when no published forecast has an actual yet)."""
    settings = settings or get_settings()
    tables = get_forecast_tables(settings)
    forecasts = tables.read(FORECASTS)
    realized = realized_table(forecasts, actuals(settings), actuals_version, backtest)
    if not realized.is_empty():
        tables.publish(REALIZED, realized)
    return realized


def forecast_runs(settings: Settings | None = None) -> list[tuple[str, str]]:
    """(model_name, model_version) of every published forecast run."""
    forecasts = get_forecast_tables(settings or get_settings()).read(FORECASTS)
    pairs = forecasts.select("model_name", "model_version").unique().sort(["model_name", "model_version"])
    return [tuple(row) for row in pairs.iter_rows()]
