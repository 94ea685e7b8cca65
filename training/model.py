"""Fit a recipe's quantile XGBoost model on feature rows.

One booster, ``objective="reg:quantileerror"`` with three quantile heads (p10/p50/p90), trained on the model
scale of ``training.forecast`` for the recipe's fixed number of rounds (the recipe — rounds included — is
chosen by the rolling-origin backtest, ``training.backtest``, not inside a fit). Seeds and the thread count
are fixed, so the same rows and recipe give the same booster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import xgboost as xgb

from features.schema import to_model_matrix
from training import forecast
from training.recipe import Recipe

RECIPE_ATTR = "tamales_recipe"


@dataclass(frozen=True)
class Matrices:
    """Encoded feature rows (``recipe.features``), actual next-month sales and the source of every row."""

    X: np.ndarray
    y: np.ndarray
    sources: np.ndarray


def labelled(rows: pl.DataFrame) -> pl.DataFrame:
    """The rows whose target (next month's sales) is known."""
    return rows.filter(pl.col("target").is_not_null() & pl.col("target").is_not_nan())


def matrices(rows: pl.DataFrame, recipe: Recipe) -> Matrices:
    """Model matrix, targets (NaN where unknown) and sources of ``rows``."""
    return Matrices(
        X=to_model_matrix(rows, recipe.features),
        y=rows["target"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
        sources=rows["source"].to_numpy().astype(str),
    )


def spec_of(recipe: Recipe) -> forecast.ModelSpec:
    """The (uncalibrated) model spec of a recipe."""
    return forecast.ModelSpec(recipe.features, recipe.base)


def sample_weights(X: np.ndarray, recipe: Recipe) -> np.ndarray | None:
    """Row weights: WAPE weighs products by volume, so larger products count more (``sqrt_level``)."""
    if recipe.weighting == "none":
        return None
    return np.sqrt(np.expm1(forecast.log_base(X, spec_of(recipe))) + 1.0)


def fit(rows: pl.DataFrame, recipe: Recipe) -> xgb.Booster:
    """Train ``recipe`` on the labelled ``rows``; the booster carries its spec and recipe as attributes."""
    train = labelled(rows)
    if train.is_empty():
        raise ValueError("no labelled rows to fit on")
    m = matrices(train, recipe)
    spec = spec_of(recipe)
    dtrain = xgb.DMatrix(
        forecast.model_inputs(m.X, spec),
        label=forecast.model_label(m.y, m.X, spec),
        weight=sample_weights(m.X, recipe),
        feature_names=list(recipe.features),
    )
    booster = xgb.train(recipe.booster_params(), dtrain, recipe.num_rounds, verbose_eval=False)
    forecast.attach_spec(booster, spec)
    booster.set_attr(**{RECIPE_ATTR: recipe.to_json()})
    return booster


def recipe_of(booster: xgb.Booster) -> Recipe:
    """The recipe a booster was trained with."""
    text = booster.attr(RECIPE_ATTR)
    if text is None:
        raise ValueError(f"booster lacks the {RECIPE_ATTR!r} attribute")
    return Recipe.from_json(text)


def with_calibration(booster: xgb.Booster, calibration: dict[str, tuple[float, float]]) -> xgb.Booster:
    """Store per-source interval factors in the booster's spec (in place); returns the booster."""
    spec = forecast.spec_of(booster)
    forecast.attach_spec(booster, forecast.ModelSpec(spec.features, spec.base, dict(calibration)))
    return booster
