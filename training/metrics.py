"""Forecast error metrics (plain numpy)."""

from __future__ import annotations

import numpy as np


def wape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Weighted absolute percentage error: sum |y - ŷ| / sum |y| (the primary metric; volume-weighted)."""
    actual = np.asarray(actual, dtype=np.float64)
    denom = np.abs(actual).sum()
    if denom == 0:
        raise ValueError("WAPE is undefined when every actual value is 0")
    return float(np.abs(actual - np.asarray(forecast, dtype=np.float64)).sum() / denom)


def bias(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Relative bias sum(ŷ - y) / sum(|y|): > 0 over-forecasts, < 0 under-forecasts."""
    actual = np.asarray(actual, dtype=np.float64)
    return float((np.asarray(forecast, np.float64) - actual).sum() / np.abs(actual).sum())


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of actual values inside [lower, upper] (for p10–p90 the nominal value is 0.8)."""
    actual = np.asarray(actual, dtype=np.float64)
    return float(np.mean((actual >= lower) & (actual <= upper)))
