"""Turn the booster's raw output into sales forecasts — shared by training (scoring) and the service.

The booster never sees sales in units (they span 1 to 10^7 across products). A model's ``ModelSpec``
(stored in the booster's ``tamales_spec`` attribute, so a loaded model always carries its own transform):

* ``features``: the feature-table columns, in order, that ``features.schema.encode_row`` encodes;
* ``base``: the column the label is relative to (a calendar-aware level or the common-factor forecast,
  ``features.signals``). The base enters as ``log1p(base)`` (the product's size); every other sales-valued
  feature as ``log1p(x) - log1p(base)``; the label is ``log1p(target) - log1p(base)``;
* ``calibration``: per source, factors that stretch the p10/p90 heads' distances from the p50 so that the
  interval covers ~80 % of the backtest's actuals (``training.calibration``).

``predict_quantiles`` inverts it: p10 <= p50 <= p90, non-negative, never NaN. Rows the model cannot judge —
fewer than ``MIN_HISTORY`` months of history, or no sales in the latest month(s) (a gap, or a product being
discontinued) — get the documented *fallback*: p50 = the base (the last known level per week x the target
period's weeks) and a band of at least ``FALLBACK_BAND`` around it, open down to 0 once ``STALE_MONTHS``
months passed without sales. Dependencies are numpy + xgboost + ``features.schema`` only: this is the
serving hot path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import xgboost as xgb

from features.schema import CATEGORIES, SALES_VALUED

TRANSFORM = "log1p-ratio-to-base/v2"
SPEC_ATTR = "tamales_spec"
QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)
REQUIRED_FEATURES = ("source", "level_forecast", "months_of_history", "months_since_sale")
MIN_HISTORY = 3
FALLBACK_BAND = (0.5, 1.6)  # fallback interval at least [p50 x 0.5, p50 x 1.6]
STALE_MONTHS = 3
MIN_LOG_WIDTH = 0.01  # a head distance below this is widened before calibration (never a zero-width band)


@dataclass(frozen=True)
class ModelSpec:
    """What a booster needs around it to forecast (see module docstring)."""

    features: tuple[str, ...]
    base: str
    calibration: dict[str, tuple[float, float]] = field(default_factory=dict)
    transform: str = TRANSFORM

    def __post_init__(self) -> None:
        missing = [c for c in (*REQUIRED_FEATURES, self.base) if c not in self.features]
        if missing:
            raise ValueError(f"model features lack required columns: {missing}")

    @cached_property
    def _index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.features)}

    @cached_property
    def sales_idx(self) -> np.ndarray:
        """Positions of the sales-valued features other than the base."""
        return np.array([i for i, c in enumerate(self.features) if c in SALES_VALUED and c != self.base], int)

    def column(self, X: np.ndarray, name: str) -> np.ndarray:
        """Column ``name`` of an encoded matrix."""
        return X[:, self._index[name]]

    def to_json(self) -> str:
        """Canonical JSON of the spec."""
        body: dict[str, Any] = {
            "features": list(self.features),
            "base": self.base,
            "transform": self.transform,
        }
        body["calibration"] = {s: list(v) for s, v in sorted(self.calibration.items())}
        return json.dumps(body, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        """The spec ``to_json`` wrote."""
        body = json.loads(text)
        calibration = {s: (float(lo), float(hi)) for s, (lo, hi) in body.get("calibration", {}).items()}
        return cls(tuple(body["features"]), body["base"], calibration, body.get("transform", TRANSFORM))


def attach_spec(booster: xgb.Booster, spec: ModelSpec) -> None:
    """Store ``spec`` in the booster (it travels inside the model file)."""
    booster.set_attr(**{SPEC_ATTR: spec.to_json()})


def spec_of(booster: xgb.Booster) -> ModelSpec:
    """The ``ModelSpec`` a booster was trained with (``ValueError`` if it has none)."""
    text = booster.attr(SPEC_ATTR)
    if text is None:
        raise ValueError(f"booster lacks the {SPEC_ATTR!r} attribute: not trained by training.model")
    spec = ModelSpec.from_json(text)
    if spec.transform != TRANSFORM:
        raise ValueError(f"booster uses transform {spec.transform!r}; this code applies {TRANSFORM!r}")
    return spec


def _log_sales(values: np.ndarray) -> np.ndarray:
    return np.log1p(np.clip(values.astype(np.float64), 0.0, None))


def log_base(X: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """``log1p`` of each row's base (the level forecast where the base is missing; 0 if both are)."""
    base = spec.column(X, spec.base)
    base = np.where(np.isnan(base), spec.column(X, "level_forecast"), base)
    return _log_sales(np.nan_to_num(base, nan=0.0))


def model_inputs(X: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """The booster's input matrix for encoded feature rows ``X`` (columns ``spec.features``)."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[1] != len(spec.features):
        raise ValueError(f"expected a (n, {len(spec.features)}) feature matrix, got shape {X.shape}")
    lb = log_base(X, spec)
    Z = X.astype(np.float64)
    # NaN (a missing lag) stays NaN: XGBoost routes it down the learned default branch.
    Z[:, spec.sales_idx] = _log_sales(Z[:, spec.sales_idx]) - lb[:, None]
    Z[:, spec.features.index(spec.base)] = lb
    return Z.astype(np.float32)


def model_label(target: np.ndarray, X: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Training label on the model scale: log growth of ``target`` over the base."""
    return _log_sales(np.asarray(target)) - log_base(np.asarray(X, dtype=np.float32), spec)


def source_names(X: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Each row's source name (from its encoded ``source`` column; '' if unknown)."""
    codes = spec.column(X, "source")
    names = np.array([*CATEGORIES["source"], ""], dtype=object)
    idx = np.where(np.isnan(codes), len(names) - 1, np.nan_to_num(codes)).astype(int)
    return names[idx]


def raw_quantiles(booster: xgb.Booster, X: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """(n, 3) sorted p10/p50/p90 on the model scale, before calibration."""
    Z = model_inputs(X, spec)
    try:
        out = booster.inplace_predict(Z)
    except xgb.core.XGBoostError:  # a linear booster has no in-place prediction
        out = booster.predict(xgb.DMatrix(Z, feature_names=list(spec.features)))
    raw = np.asarray(out, dtype=np.float64).reshape(Z.shape[0], len(QUANTILES))
    raw.sort(axis=1)  # independent quantile heads may cross
    return raw


def calibrate(
    raw: np.ndarray, sources: np.ndarray, calibration: dict[str, tuple[float, float]]
) -> np.ndarray:
    """Stretch each row's head distances from the p50 by its source's factors (unknown source: 1, 1)."""
    out = raw.copy()
    low = np.maximum(raw[:, 1] - raw[:, 0], MIN_LOG_WIDTH)
    high = np.maximum(raw[:, 2] - raw[:, 1], MIN_LOG_WIDTH)
    factors = np.array([calibration.get(s, (1.0, 1.0)) for s in sources], dtype=np.float64).reshape(-1, 2)
    out[:, 0] = raw[:, 1] - factors[:, 0] * low
    out[:, 2] = raw[:, 1] + factors[:, 1] * high
    return out


def fallback_rows(X: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Boolean mask of the rows that get the fallback forecast (short history or no recent sales)."""
    history = np.nan_to_num(spec.column(X, "months_of_history"), nan=0.0)
    since = np.nan_to_num(spec.column(X, "months_since_sale"), nan=float(STALE_MONTHS))
    return (history < MIN_HISTORY) | (since > 0)


def to_sales(raw: np.ndarray, X: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Calibrated p10/p50/p90 in sales units from model-scale ``raw`` quantiles, with the fallback rows."""
    lb = log_base(X, spec)
    out = calibrate(raw, source_names(X, spec), spec.calibration) + lb[:, None]
    quantiles = np.clip(np.expm1(out), 0.0, None)
    fallback = fallback_rows(X, spec)
    if fallback.any():
        base = np.expm1(lb[fallback])
        q = quantiles[fallback]
        q[:, 1] = base
        q[:, 0] = np.minimum(q[:, 0], base * FALLBACK_BAND[0])
        q[:, 2] = np.maximum(q[:, 2], base * FALLBACK_BAND[1])
        stale = np.nan_to_num(spec.column(X[fallback], "months_since_sale"), nan=STALE_MONTHS) >= STALE_MONTHS
        q[stale, 0] = 0.0
        quantiles[fallback] = np.sort(q, axis=1)
    return np.nan_to_num(quantiles, nan=0.0, posinf=0.0)


def predict_quantiles(booster: xgb.Booster, X: np.ndarray, spec: ModelSpec | None = None) -> np.ndarray:
    """Forecast next month's sales: (n, 3) p10, p50, p90 in sales units — ordered, non-negative, finite."""
    spec = spec or spec_of(booster)
    X = np.asarray(X, dtype=np.float32)
    return to_sales(raw_quantiles(booster, X, spec), X, spec)


def model_metadata(spec: ModelSpec) -> dict[str, Any]:
    """What packaging records next to the model so a consumer knows how to read its raw output."""
    return {"transform": spec.transform, "quantiles": list(QUANTILES), "spec": json.loads(spec.to_json())}
