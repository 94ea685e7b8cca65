"""Point-in-time exponential smoothing of each series' weekly rate: statistical forecasts as features.

For every row (series, month *t*) two forecasts of the next period's sales, from months <= *t* only:

- ``ses_forecast``: simple exponential smoothing of ``log1p(rate)``; the smoothing weight is the one of
  ``ALPHAS`` with the smallest one-step-ahead squared error on the months up to *t* (re-chosen every month,
  so it never sees the future);
- ``theta_forecast``: the same level plus half the least-squares slope of the log rate up to *t* (the Theta
  method's drift with theta = 2).

Both are converted to sales of the target period (``x target_period_weeks``). A month without sales is
skipped (the level carries over). Cost: O(months x len(ALPHAS)) per series — milliseconds for the table.
"""

from __future__ import annotations

import numpy as np
import polars as pl

ALPHAS = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
MIN_ERRORS = 3  # one-step errors needed before the weight is chosen by error (before: ALPHAS' middle)


def smooth(log_rate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(SES level, Theta level) forecasts of the next value at every position, from values up to it (NaN ok)."""
    n = len(log_rate)
    ses, theta = np.full(n, np.nan), np.full(n, np.nan)
    level = np.full(len(ALPHAS), np.nan)
    sse = np.zeros(len(ALPHAS))
    errors = 0
    times, values = [], []
    for t, y in enumerate(log_rate):
        if np.isfinite(y):
            if np.isnan(level[0]):
                level[:] = y
            else:
                error = y - level
                sse += error**2
                errors += 1
                level += ALPHAS * error
            times.append(t)
            values.append(y)
        if not values:
            continue
        best = int(np.argmin(sse)) if errors >= MIN_ERRORS else len(ALPHAS) // 2
        ses[t] = level[best]
        slope = np.polyfit(times, values, 1)[0] if len(times) >= 3 else 0.0
        theta[t] = level[best] + slope / 2.0
    return ses, theta


def smoothing_columns(rows: pl.DataFrame) -> pl.DataFrame:
    """``ses_forecast`` and ``theta_forecast`` for ``rows`` (which hold ``rate`` and ``target_period_weeks``,
    sorted by series and month); returned in the same row order."""
    ses_all, theta_all = [], []
    for part in rows.partition_by(["source", "id_product"], maintain_order=True):
        log_rate = np.log1p(np.clip(part["rate"].cast(pl.Float64).fill_null(np.nan).to_numpy(), 0, None))
        ses, theta = smooth(log_rate)
        weeks = part["target_period_weeks"].to_numpy()
        ses_all.append(np.expm1(ses) * weeks)
        theta_all.append(np.clip(np.expm1(theta), 0, None) * weeks)
    return pl.DataFrame(
        {"ses_forecast": np.concatenate(ses_all), "theta_forecast": np.concatenate(theta_all)}
    ).fill_nan(None)
