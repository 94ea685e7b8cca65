"""Forecast error metrics (plain numpy) and the per-model metric dictionaries logged to MLflow."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def wape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Weighted absolute percentage error: sum |y - ŷ| / sum |y| (the primary metric; volume-weighted)."""
    actual = np.asarray(actual, dtype=np.float64)
    denom = np.abs(actual).sum()
    if denom == 0:
        raise ValueError("WAPE is undefined when every actual value is 0")
    return float(np.abs(actual - np.asarray(forecast, dtype=np.float64)).sum() / denom)


def mae(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Mean absolute error in sales units."""
    return float(np.mean(np.abs(np.asarray(actual, np.float64) - np.asarray(forecast, np.float64))))


def rmse(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Root mean squared error in sales units."""
    return float(np.sqrt(np.mean((np.asarray(actual, np.float64) - np.asarray(forecast, np.float64)) ** 2)))


def bias(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Relative bias sum(ŷ - y) / sum(y): > 0 over-forecasts, < 0 under-forecasts."""
    actual = np.asarray(actual, dtype=np.float64)
    return float((np.asarray(forecast, np.float64) - actual).sum() / np.abs(actual).sum())


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of actual values inside [lower, upper] (for p10–p90 the nominal value is 0.8)."""
    actual = np.asarray(actual, dtype=np.float64)
    return float(np.mean((actual >= lower) & (actual <= upper)))


def point_metrics(actual: np.ndarray, forecast: np.ndarray, sources: Sequence[str]) -> dict[str, float]:
    """WAPE, MAE, RMSE, bias and WAPE per source (keys ``wape_<source>``) of a point forecast."""
    result = {
        "wape": wape(actual, forecast),
        "mae": mae(actual, forecast),
        "rmse": rmse(actual, forecast),
        "bias": bias(actual, forecast),
    }
    sources = np.asarray(sources)
    for source in sorted(set(sources.tolist())):
        mask = sources == source
        result[f"wape_{source}"] = wape(actual[mask], forecast[mask])
    return result


def quantile_metrics(actual: np.ndarray, quantiles: np.ndarray, sources: Sequence[str]) -> dict[str, float]:
    """``point_metrics`` of the median plus p10–p90 interval coverage, for a (n, 3) quantile forecast."""
    result = point_metrics(actual, quantiles[:, 1], sources)
    result["coverage_p10_p90"] = coverage(actual, quantiles[:, 0], quantiles[:, 2])
    return result
