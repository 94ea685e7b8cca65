"""Rolling-origin backtest of a recipe: 1-step-ahead, refit at every origin, the last N months of each source.

Origin *T* of a source is one of its last ``n_origins`` target months: the recipe is fit on every labelled row
whose target month is before *T* (both sources: the feature rows only use months <= their own) and forecasts
that source's rows whose target month is *T*. Origins that share a month share one fit. The p10–p90 band of
each origin is calibrated with factors fitted on the *other* origins (``training.calibration``), so the
coverage reported is out-of-sample; the factors fitted on all origins are what the final model ships with.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from features.schema import KEY_COLUMNS
from training import calibration, forecast, model
from training.recipe import Recipe

PREDICTION_COLUMNS = (*KEY_COLUMNS, "target_month", "product_name", "actual", "p10", "p50", "p90", "fallback")


@dataclass(frozen=True)
class Backtest:
    """Per-row backtest forecasts of one recipe and the interval factors fitted on all its origins."""

    recipe: Recipe
    predictions: pl.DataFrame  # PREDICTION_COLUMNS, sorted by (source, target_month, id_product)
    factors: calibration.Factors
    origins: dict[str, list[dt.date]]


def origin_months(rows: pl.DataFrame, n_origins: int) -> dict[str, list[dt.date]]:
    """Each source's last ``n_origins`` target months among labelled ``rows`` (oldest first)."""
    lab = model.labelled(rows)
    out = {}
    for (source,), part in lab.group_by("source"):
        months = sorted(part["target_month"].unique().to_list())
        if len(months) <= n_origins:
            raise ValueError(f"{source}: {len(months)} labelled months, need more than {n_origins} origins")
        out[str(source)] = months[-n_origins:]
    return dict(sorted(out.items()))


def _holdout(rows: pl.DataFrame, month: dt.date, sources: list[str]) -> pl.DataFrame:
    return rows.filter((pl.col("target_month") == month) & pl.col("source").is_in(sources))


def run(rows: pl.DataFrame, recipe: Recipe, n_origins: int) -> Backtest:
    """Backtest ``recipe`` on the feature ``rows`` (see module docstring)."""
    lab = model.labelled(rows)
    origins = origin_months(lab, n_origins)
    spec = model.spec_of(recipe)
    fits, parts = {}, []
    for month in sorted({m for months in origins.values() for m in months}):
        sources = [s for s, months in origins.items() if month in months]
        fits[month] = model.fit(lab.filter(pl.col("target_month") < month), recipe)
        hold = _holdout(lab, month, sources)
        m = model.matrices(hold, recipe)
        raw = forecast.raw_quantiles(fits[month], m.X, spec)
        lb = forecast.log_base(m.X, spec)
        parts.append(
            hold.with_columns(
                raw_p10=pl.Series(raw[:, 0]),
                raw_p50=pl.Series(raw[:, 1]),
                raw_p90=pl.Series(raw[:, 2]),
                log_actual=pl.Series(np.log1p(np.clip(m.y, 0, None)) - lb),
                fallback=pl.Series(forecast.fallback_rows(m.X, spec)),
            )
        )
    scored = calibration.scores(pl.concat(parts))
    loo = calibration.leave_one_origin_out(scored)
    finished = []
    for (month,), part in scored.group_by("target_month", maintain_order=True):
        m = model.matrices(part, recipe)
        q = forecast.to_sales(
            part.select("raw_p10", "raw_p50", "raw_p90").to_numpy(),
            m.X,
            forecast.ModelSpec(recipe.features, recipe.base, loo[month]),
        )
        finished.append(
            part.with_columns(
                actual=pl.col("target"),
                p10=pl.Series(q[:, 0]),
                p50=pl.Series(q[:, 1]),
                p90=pl.Series(q[:, 2]),
            ).select(PREDICTION_COLUMNS)
        )
    predictions = pl.concat(finished).sort("source", "target_month", "id_product")
    return Backtest(recipe, predictions, calibration.fit_factors(scored), origins)
