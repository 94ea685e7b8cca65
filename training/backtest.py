"""Rolling-origin backtest: refit at each of the last origins and forecast the following month."""

from __future__ import annotations

from typing import Any

import polars as pl

from training import baselines, data, forecast, metrics, model


def rolling_origin(
    rows: pl.DataFrame, params: dict[str, Any], num_rounds: int, origins: int = 3
) -> dict[str, Any]:
    """WAPE of the model (refit per origin with the chosen configuration ``params``, as in
    ``FitResult.params``) and of the baselines at each origin.

    Origin ``k`` (1 = the last target month of each source) trains on every row whose target month is earlier
    and forecasts the rows of that month. Returns ``{"origins": [...], "wape_mean": float,
    "baseline_wape_mean": {name: float}}``; each origin entry holds its month(s), row count and WAPEs.
    """
    results = []
    for origin in range(origins, 0, -1):
        fit_rows, holdout = data.origin_split(rows, origin)
        booster = model.fit_rounds(fit_rows, params, num_rounds)
        m = data.matrices(holdout)
        p50 = forecast.predict_quantiles(booster, m.X)[:, 1]
        months = sorted({d.isoformat() for d in holdout["target_month"].to_list()})
        results.append(
            {
                "origin": origin,
                "target_months": months,
                "rows": holdout.height,
                "wape": metrics.wape(m.y, p50),
                "baselines": {
                    name: metrics.wape(m.y, f) for name, f in baselines.all_baselines(holdout).items()
                },
            }
        )
    return {
        "origins": results,
        "wape_mean": sum(r["wape"] for r in results) / len(results),
        "baseline_wape_mean": {
            name: sum(r["baselines"][name] for r in results) / len(results) for name in baselines.BASELINES
        },
    }
