"""The one definition of the feature table: its columns, types and model encoding.

The features flow builds rows with exactly these columns, the feature store (local parquet or BigQuery) is
created from ``FEATURE_STORE_SCHEMA``, training selects ``FEATURE_COLUMNS`` and the service encodes a stored row
with ``encode_row`` — so the model always sees the same vector in training and in serving.

A row is one (source, product, month) with the product's national monthly total; its target is the next
month's total. Lags are counted from the *target* month: ``lag_1`` is this row's own month (the last value),
``lag_12`` is the target month one year earlier (seasonal naive).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

# Sources: a series is keyed by (source, id_product); ids of the two sources never collide in practice
# (ERP codes vs TeInvento int64 ids) and lookups accept either.
SOURCE_ERP = "erp"
SOURCE_TEINVENTO = "teinvento"
SOURCES = (SOURCE_ERP, SOURCE_TEINVENTO)

LAGS = (1, 2, 3, 6, 12)
ROLLING_WINDOWS = (3, 6, 12)

# Known category values and their codes. Unknown values encode as NaN (XGBoost's missing value), so a new
# category never crashes the service; extend the tuples (append only) when the business adds one.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "source": SOURCES,
    "calorie_category": ("Regular", "Low-Calorie", "Light", "Zero"),
    "producer": ("Tamales Inc", "Tamaleria Factory", "OTROS FABRICANTES"),
}

ADJUSTED_LAGS = (1, 2, 3, 6, 12)
# Sales-valued signal columns (in sales units of the target period; see features.signals).
SIGNAL_SALES_FEATURES: tuple[str, ...] = (
    *(f"adj_lag_{k}" for k in ADJUSTED_LAGS),
    "level_forecast",
    "common_factor_forecast",
    "ses_forecast",
    "theta_forecast",
    "seasonal_forecast",
)
# Every column features.signals adds, with its type.
SIGNAL_SCHEMA: dict[str, pl.DataType] = {
    **{name: pl.Float64() for name in SIGNAL_SALES_FEATURES},
    "period_weeks": pl.Float64(),
    "target_period_weeks": pl.Float64(),
    "target_period_in_quarter": pl.Int32(),
    "months_since_sale": pl.Int32(),
    "source_growth_1": pl.Float64(),
    "source_growth_3": pl.Float64(),
    "seasonal_step": pl.Float64(),
}
NUMERIC_FEATURES: tuple[str, ...] = (
    *(f"lag_{k}" for k in LAGS),
    *(f"rolling_mean_{w}" for w in ROLLING_WINDOWS),
    *(f"rolling_std_{w}" for w in ROLLING_WINDOWS),
    "target_month_of_year",
    "share_of_calorie_category",
    "months_of_history",
    *SIGNAL_SCHEMA,
)
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(CATEGORIES)
FEATURE_COLUMNS: tuple[str, ...] = (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES)

KEY_COLUMNS = ("source", "id_product", "year_month")

FEATURE_STORE_SCHEMA: dict[str, pl.DataType] = {
    "id_product": pl.String(),
    "source": pl.String(),
    "year_month": pl.Date(),
    "target_month": pl.Date(),
    "product_name": pl.String(),
    "calorie_category": pl.String(),
    "producer": pl.String(),
    "unknown_key": pl.Boolean(),
    "total_sales": pl.Float64(),
    "target": pl.Float64(),
    **{f"lag_{k}": pl.Float64() for k in LAGS},
    **{f"rolling_mean_{w}": pl.Float64() for w in ROLLING_WINDOWS},
    **{f"rolling_std_{w}": pl.Float64() for w in ROLLING_WINDOWS},
    "target_month_of_year": pl.Int32(),
    "share_of_calorie_category": pl.Float64(),
    "months_of_history": pl.Int32(),
    **SIGNAL_SCHEMA,
}

_BQ_TYPES = {
    pl.String: "STRING",
    pl.Date: "DATE",
    pl.Boolean: "BOOL",
    pl.Float64: "FLOAT64",
    pl.Int32: "INT64",
}


def bigquery_schema() -> list[tuple[str, str]]:
    """(name, BigQuery type) pairs of the feature table, derived from ``FEATURE_STORE_SCHEMA``."""
    return [(name, _BQ_TYPES[type(dtype)]) for name, dtype in FEATURE_STORE_SCHEMA.items()]


def conform(df: pl.DataFrame) -> pl.DataFrame:
    """Select and cast ``df`` to the feature-store schema, in its column order (raises on missing columns)."""
    missing = set(FEATURE_STORE_SCHEMA) - set(df.columns)
    if missing:
        raise ValueError(f"feature table lacks columns: {sorted(missing)}")
    return df.select(pl.col(name).cast(dtype) for name, dtype in FEATURE_STORE_SCHEMA.items())


SALES_VALUED: frozenset[str] = frozenset(
    c for c in NUMERIC_FEATURES if c.startswith(("lag_", "rolling_mean_", "rolling_std_", "adj_lag_"))
) | frozenset(SIGNAL_SALES_FEATURES)


def _code(column: str, value: Any) -> float:
    try:
        return float(CATEGORIES[column].index(value))
    except ValueError:
        return math.nan


def _check_columns(columns: Sequence[str]) -> None:
    unknown = [c for c in columns if c not in FEATURE_COLUMNS]
    if unknown:
        raise ValueError(f"not feature columns: {unknown}")


def to_model_matrix(df: pl.DataFrame, columns: Sequence[str] = FEATURE_COLUMNS) -> np.ndarray:
    """Encode feature-table rows as a float32 matrix of ``columns`` (categories as codes, missing as NaN)."""
    _check_columns(columns)
    exprs = []
    for column in columns:
        if column in CATEGORIES:
            mapping = {v: float(i) for i, v in enumerate(CATEGORIES[column])}
            exprs.append(pl.col(column).replace_strict(mapping, default=None, return_dtype=pl.Float64))
        else:
            exprs.append(pl.col(column).cast(pl.Float64))
    return df.select(exprs).fill_null(math.nan).to_numpy().astype(np.float32)


def encode_row(row: Mapping[str, Any], columns: Sequence[str] = FEATURE_COLUMNS) -> np.ndarray:
    """Encode one stored row (a dict) exactly like ``to_model_matrix`` — the serving hot path, no data frames."""
    values = [
        _code(c, row.get(c)) if c in CATEGORIES else (math.nan if row.get(c) is None else float(row[c]))
        for c in columns
    ]
    return np.asarray([values], dtype=np.float32)
