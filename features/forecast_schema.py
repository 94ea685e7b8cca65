"""The one definition of the two planner tables: published batch forecasts and their realized accuracy.

``forecasts`` — one row per (run, product): the champion's next-month p10/p50/p90 for every product of the
feature store, exactly as the service answers it. A run is keyed by ``model_name``, ``model_version`` and
``data_version``; re-publishing a run replaces its rows (``FORECAST_KEYS``), so re-runs never duplicate.

``realized`` — published forecasts joined to the actuals a later delivery brought. Two kinds of rows share the
table: one per product (``productid`` = the product) and one per source and month (``productid`` =
``ALL_PRODUCTS``) whose ``wape``/``bias``/``coverage`` are the aggregates planners and alerts read:

* ``wape`` = sum |actual − p50| / sum actual; ``bias`` = sum (p50 − actual) / sum actual (> 0: over-forecast);
* ``coverage`` = share of products whose actual lies in [p10, p90] (the band aims at 0.8);
* ``backtest_wape`` = the model's own backtest WAPE for that source (what the realized WAPE is compared to).

Months are ``YYYY-MM`` strings, as the API answers them.
"""

from __future__ import annotations

import polars as pl

FORECASTS = "forecasts"
REALIZED = "realized"
ALL_PRODUCTS = "*"  # productid of the per-source-and-month summary rows of ``realized``

_TIMESTAMP = pl.Datetime("us", "UTC")

FORECAST_SCHEMA: dict[str, pl.DataType] = {
    "productid": pl.String(),
    "source": pl.String(),
    "name": pl.String(),
    "calorie_category": pl.String(),
    "forecast_month": pl.String(),
    "p10": pl.Float64(),
    "p50": pl.Float64(),
    "p90": pl.Float64(),
    "model_name": pl.String(),
    "model_version": pl.String(),
    "data_version": pl.String(),
    "features_as_of": pl.String(),
    "published_at": _TIMESTAMP,
}
FORECAST_KEYS = ("model_name", "model_version", "data_version", "productid", "forecast_month")

REALIZED_SCHEMA: dict[str, pl.DataType] = {
    "model_name": pl.String(),
    "model_version": pl.String(),
    "data_version": pl.String(),  # the data version the forecasts were made from
    "actuals_version": pl.String(),  # the data version that brought the actuals
    "source": pl.String(),
    "forecast_month": pl.String(),
    "productid": pl.String(),
    "n_products": pl.Int64(),
    "actual": pl.Float64(),
    "p10": pl.Float64(),
    "p50": pl.Float64(),
    "p90": pl.Float64(),
    "abs_error": pl.Float64(),
    "wape": pl.Float64(),
    "bias": pl.Float64(),
    "coverage": pl.Float64(),
    "backtest_wape": pl.Float64(),
    "computed_at": _TIMESTAMP,
}
REALIZED_KEYS = ("model_name", "model_version", "data_version", "source", "productid", "forecast_month")

SCHEMAS: dict[str, dict[str, pl.DataType]] = {FORECASTS: FORECAST_SCHEMA, REALIZED: REALIZED_SCHEMA}
KEYS: dict[str, tuple[str, ...]] = {FORECASTS: FORECAST_KEYS, REALIZED: REALIZED_KEYS}
SORT: dict[str, tuple[str, ...]] = {
    FORECASTS: ("model_name", "model_version", "data_version", "productid", "forecast_month"),
    REALIZED: ("model_name", "model_version", "data_version", "source", "forecast_month", "productid"),
}

_BQ_TYPES = {
    pl.String: "STRING",
    pl.Float64: "FLOAT64",
    pl.Int64: "INT64",
    pl.Datetime: "TIMESTAMP",
}


def check_table(table: str) -> str:
    """``table`` if it is one of the planner tables (``FORECASTS``, ``REALIZED``); ``ValueError`` otherwise."""
    if table not in SCHEMAS:
        raise ValueError(f"unknown planner table {table!r}: expected one of {sorted(SCHEMAS)}")
    return table


def bigquery_schema(table: str) -> list[tuple[str, str]]:
    """(name, BigQuery type) pairs of ``table``, derived from its polars schema."""
    return [(name, _BQ_TYPES[type(dtype)]) for name, dtype in SCHEMAS[check_table(table)].items()]


def conform(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` selected and cast to ``table``'s schema, in its column order (raises on missing columns or
    on null keys)."""
    schema = SCHEMAS[check_table(table)]
    missing = set(schema) - set(frame.columns)
    if missing:
        raise ValueError(f"{table} frame lacks columns: {sorted(missing)}")
    out = frame.select(pl.col(name).cast(dtype) for name, dtype in schema.items())
    null_keys = [k for k in KEYS[table] if out[k].null_count()]
    if null_keys:
        raise ValueError(f"{table} rows with null key columns: {null_keys}")
    return out


def empty(table: str) -> pl.DataFrame:
    """An empty frame with ``table``'s schema."""
    return pl.DataFrame(schema=SCHEMAS[check_table(table)])
