"""Naive forecasts the model must beat, computed from the same feature rows.

Lags are counted from the target month, so ``lag_1`` is the last observed value, ``rolling_mean_3`` the mean of
the last three months and ``lag_12`` the target month one year before (seasonal naive).
"""

from __future__ import annotations

import numpy as np
import polars as pl

BASELINES = ("last_value", "mean_3", "seasonal_naive")


def baseline_forecast(name: str, df: pl.DataFrame) -> np.ndarray:
    """Point forecast of baseline ``name`` (one of ``BASELINES``) for every row of ``df``."""
    if name == "last_value":
        expr = pl.col("lag_1")
    elif name == "mean_3":
        expr = pl.col("rolling_mean_3").fill_null(pl.col("lag_1"))
    elif name == "seasonal_naive":
        expr = pl.col("lag_12").fill_null(pl.col("lag_1"))
    else:
        raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINES}")
    # A product without any observed value (cannot happen for a feature row, but never emit NaN) -> 0.
    return df.select(expr.cast(pl.Float64).fill_null(0.0).fill_nan(0.0)).to_series().to_numpy()


def all_baselines(df: pl.DataFrame) -> dict[str, np.ndarray]:
    """Every baseline's forecast for ``df``, keyed by name."""
    return {name: baseline_forecast(name, df) for name in BASELINES}
