"""Turn the model's raw output into sales forecasts — shared by training (scoring) and the service.

The booster never sees sales in units: they span 10^3–10^7 across products. On the model scale

* every sales-valued input (lags, rolling means and standard deviations) is ``log1p(x) - log1p(level)``, where
  the *level* is the 3-month mean (else the last value); the level column itself carries ``log1p(level)``
  so the model still knows the product's size;
* the label is ``log1p(target) - base``: the log growth over a *base* forecast,
  ``w * log1p(lag_12) + (1 - w) * log1p(level)`` (the level alone when there is no ``lag_12``). With strong
  seasonality and a short history, starting from that blend leaves the trees only corrections to learn;
  from the level alone (w = 0) they must rebuild the seasonal swing. ``w`` is a training parameter
  (``training.model``) stored in the booster itself (attribute ``seasonal_weight``), so a loaded model
  always carries its own transform.

``predict_quantiles`` adds the base back and inverts the log: one output per quantile of ``QUANTILES``.
Dependencies are deliberately numpy + xgboost + ``features.schema`` only: this module is on the serving hot
path (one row per request).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import xgboost as xgb

from features.schema import FEATURE_COLUMNS

QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)
TRANSFORM = "log1p-growth-over-geomean(rolling_mean_3,lag_12)/v1"
LEVEL_FEATURE = "rolling_mean_3"
FALLBACK_LEVEL_FEATURE = "lag_1"
SEASONAL_FEATURE = "lag_12"
SEASONAL_WEIGHT_ATTR = "seasonal_weight"  # booster attribute: weight of log1p(lag_12) in the base
_SALES_PREFIXES = ("lag_", "rolling_mean_", "rolling_std_")

_SALES_IDX = np.array(
    [i for i, c in enumerate(FEATURE_COLUMNS) if c.startswith(_SALES_PREFIXES)], dtype=np.intp
)
_LEVEL_IDX = FEATURE_COLUMNS.index(LEVEL_FEATURE)
_FALLBACK_IDX = FEATURE_COLUMNS.index(FALLBACK_LEVEL_FEATURE)
_SEASONAL_IDX = FEATURE_COLUMNS.index(SEASONAL_FEATURE)

# What the packaging step records next to the model so that a consumer knows how to read its raw output.
MODEL_METADATA_KEYS = (
    "transform",
    "quantiles",
    "level_feature",
    "seasonal_feature",
    SEASONAL_WEIGHT_ATTR,
    "feature_columns",
)


def model_metadata(seasonal_weight: float) -> dict[str, Any]:
    """Description of the model-scale transform (values for ``MODEL_METADATA_KEYS``), JSON-serialisable."""
    return {
        "transform": TRANSFORM,
        "quantiles": list(QUANTILES),
        "level_feature": LEVEL_FEATURE,
        "seasonal_feature": SEASONAL_FEATURE,
        SEASONAL_WEIGHT_ATTR: float(seasonal_weight),
        "feature_columns": list(FEATURE_COLUMNS),
    }


def booster_metadata(booster: xgb.Booster) -> dict[str, Any]:
    """The transform description stored in a trained booster's attributes (keys ``MODEL_METADATA_KEYS``)."""
    return {
        key: json.loads(value) for key, value in booster.attributes().items() if key in MODEL_METADATA_KEYS
    }


def seasonal_weight(booster: xgb.Booster) -> float:
    """The base's seasonal weight a booster was trained with (its ``seasonal_weight`` attribute)."""
    value = booster.attr(SEASONAL_WEIGHT_ATTR)
    if value is None:
        raise ValueError(
            f"booster lacks the {SEASONAL_WEIGHT_ATTR!r} attribute: not trained by training.model"
        )
    return float(value)


def _log_sales(values: np.ndarray) -> np.ndarray:
    return np.log1p(np.clip(values.astype(np.float64), 0.0, None))


def log_level(X: np.ndarray) -> np.ndarray:
    """``log1p`` of each row's recent level (3-month mean, else last value, else 0), shape (n,)."""
    level = np.where(np.isnan(X[:, _LEVEL_IDX]), X[:, _FALLBACK_IDX], X[:, _LEVEL_IDX])
    return _log_sales(np.nan_to_num(level, nan=0.0))


def log_base(X: np.ndarray, weight: float, lvl: np.ndarray | None = None) -> np.ndarray:
    """``log`` of each row's base forecast for seasonal weight ``weight`` (module docstring), shape (n,)."""
    lvl = log_level(X) if lvl is None else lvl
    seasonal = _log_sales(X[:, _SEASONAL_IDX])
    return np.where(np.isnan(seasonal), lvl, weight * seasonal + (1.0 - weight) * lvl)


def _prepare(X: np.ndarray, weight: float) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != len(FEATURE_COLUMNS):
        raise ValueError(f"expected a (n, {len(FEATURE_COLUMNS)}) feature matrix, got shape {X.shape}")
    lvl = log_level(X)
    Z = X.astype(np.float64)
    # NaN (missing lag) stays NaN: XGBoost routes it down the learned default branch.
    Z[:, _SALES_IDX] = _log_sales(Z[:, _SALES_IDX]) - lvl[:, None]
    Z[:, _LEVEL_IDX] = lvl
    return Z.astype(np.float32), log_base(X, weight, lvl)


def model_inputs(X: np.ndarray) -> np.ndarray:
    """The booster's input matrix for raw feature rows ``X`` (from ``to_model_matrix``/``encode_row``)."""
    return _prepare(X, 0.0)[0]


def model_label(target: np.ndarray, X: np.ndarray, weight: float) -> np.ndarray:
    """Training label on the model scale: log growth of ``target`` over the base forecast."""
    return _log_sales(np.asarray(target)) - log_base(np.asarray(X, dtype=np.float32), weight)


def predict_quantiles(booster: xgb.Booster, X: np.ndarray) -> np.ndarray:
    """Forecast next month's sales: array (n, 3) of p10, p50, p90 in sales units, non-negative and ordered."""
    Z, base = _prepare(X, seasonal_weight(booster))
    raw = np.asarray(booster.inplace_predict(Z), dtype=np.float64).reshape(Z.shape[0], len(QUANTILES))
    # Independent quantile heads may cross; sorting restores p10 <= p50 <= p90 (monotone transform below).
    raw.sort(axis=1)
    return np.clip(np.expm1(raw + base[:, None]), 0.0, None)
