"""Conformal calibration of the p10–p90 interval from rolling-origin residuals, per source.

On the model scale each backtest row has a p50 and two head distances (p50 − p10, p90 − p50). Its score on a
side is how many of those distances the actual lies beyond the p50; the 90 % quantile of a source's scores on
each side is the factor that makes that side miss ~10 % of actuals, so the p10–p90 band covers ~80 %. The
factors are stored in the model's spec and applied by the service (``training.forecast.calibrate``).

Coverage is reported honestly with *leave-one-origin-out* factors: each origin's rows are scored with factors
fitted on the other origins only. Fallback rows (``training.forecast.fallback_rows``) keep their own band and
are left out of the fit.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from training.forecast import MIN_LOG_WIDTH

TAIL = 0.1  # each side of the p10–p90 band
MIN_SCORES = 5  # fewer scores than this for a source: leave its heads as they are (factor 1)
FACTOR_RANGE = (0.2, 10.0)

Factors = dict[str, tuple[float, float]]


def scores(preds: pl.DataFrame) -> pl.DataFrame:
    """Per row: ``score_low``/``score_high`` from model-scale columns ``raw_p10/raw_p50/raw_p90`` and ``log_actual``
    (all relative to the base)."""
    low = pl.max_horizontal(pl.col("raw_p50") - pl.col("raw_p10"), pl.lit(MIN_LOG_WIDTH))
    high = pl.max_horizontal(pl.col("raw_p90") - pl.col("raw_p50"), pl.lit(MIN_LOG_WIDTH))
    return preds.with_columns(
        score_low=(pl.col("raw_p50") - pl.col("log_actual")) / low,
        score_high=(pl.col("log_actual") - pl.col("raw_p50")) / high,
    )


def _factor(values: np.ndarray) -> float:
    if len(values) < MIN_SCORES:
        return 1.0
    level = min(1.0, np.ceil((len(values) + 1) * (1 - TAIL)) / len(values))  # finite-sample conformal
    return float(np.clip(np.quantile(values, level, method="higher"), *FACTOR_RANGE))


def fit_factors(scored: pl.DataFrame) -> Factors:
    """Per-source (low, high) factors from scored non-fallback rows."""
    factors = {}
    for (source,), part in scored.filter(~pl.col("fallback")).group_by("source"):
        factors[str(source)] = (_factor(part["score_low"].to_numpy()), _factor(part["score_high"].to_numpy()))
    return dict(sorted(factors.items()))


def leave_one_origin_out(scored: pl.DataFrame) -> dict[object, Factors]:
    """For each origin (``target_month``), the factors fitted on every other origin's rows."""
    return {
        origin: fit_factors(scored.filter(pl.col("target_month") != origin))
        for origin in scored["target_month"].unique().sort().to_list()
    }
