"""Fit the quantile XGBoost model: a small grid tuned on time-ordered validation folds, then a refit.

One booster, ``objective="reg:quantileerror"`` with ``quantile_alpha=QUANTILES`` (three outputs; p50 is the
point forecast), trained on the model scale of ``training.forecast``. Validation folds are the last blocks
of ``validation_months`` target months of each source *within the training split* (never test data). On
each fold, early stopping on the p50's WAPE fixes the number of rounds; the configuration with the best mean
validation WAPE wins and is refit on the whole training split with the mean number of rounds. Seeds and the
thread count are fixed, so the same data and parameters give the same booster.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import xgboost as xgb

from features.schema import FEATURE_COLUMNS
from training import data, forecast, metrics

# Business prior: more recent sales (relative to the level) or a larger level never lower the forecast.
_INCREASING = tuple(1 if c.startswith("lag_") or c == forecast.LEVEL_FEATURE else 0 for c in FEATURE_COLUMNS)

BOOSTER_PARAMS: dict[str, Any] = {
    "objective": "reg:quantileerror",
    "quantile_alpha": list(forecast.QUANTILES),
    "tree_method": "hist",
    "learning_rate": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 10.0,
    "reg_lambda": 1.0,
    "monotone_constraints": "(" + ",".join(map(str, _INCREASING)) + ")",
    # One thread: on a busy 2-core machine two OpenMP threads spin against each other and a fit gets
    # 10-20x slower; this data is far too small for threads to pay off. Results do not depend on it.
    "nthread": 1,
    "seed": 42,
}
TRAINING_DEFAULTS: dict[str, Any] = {
    "max_rounds": 1000,
    "early_stopping_rounds": 50,
    "validation_months": 3,
    "validation_folds": 2,
    # Weight of the seasonal naive value in the base the trees correct (training.forecast). Fixed, not tuned:
    # the validation months rarely contain the seasonal peak the test months may hold, so they would pick
    # the level-only base that then misses the peak.
    "seasonal_weight": 0.5,
}
SEARCH_GRID: tuple[dict[str, Any], ...] = ({"max_depth": 2}, {"max_depth": 3})


@dataclass
class FitResult:
    """The refit booster, the chosen configuration and what the search saw on the validation folds."""

    booster: xgb.Booster
    params: dict[str, Any]
    num_rounds: int
    validation_wape: float
    search: list[dict[str, Any]] = field(default_factory=list)


def resolve_params(overrides: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Merge ``overrides`` into the defaults: (fixed params incl. training settings, grid of tuned params).

    A key that appears in the grid and in ``overrides`` is pinned to the override (the grid shrinks).
    """
    overrides = dict(overrides or {})
    tunable = {k for g in SEARCH_GRID for k in g}
    unknown = set(overrides) - set(BOOSTER_PARAMS) - set(TRAINING_DEFAULTS) - tunable
    if unknown:
        raise ValueError(f"unknown training parameters: {sorted(unknown)}")
    fixed = {**BOOSTER_PARAMS, **TRAINING_DEFAULTS}
    fixed.update({k: v for k, v in overrides.items() if k not in tunable})
    grid: list[dict[str, Any]] = []
    for candidate in SEARCH_GRID:
        pinned = {**candidate, **{k: v for k, v in overrides.items() if k in candidate}}
        if pinned not in grid:
            grid.append(pinned)
    return fixed, grid


def _dmatrix(m: data.Matrices, config: dict[str, Any]) -> xgb.DMatrix:
    return xgb.DMatrix(
        forecast.model_inputs(m.X),
        label=forecast.model_label(m.y, m.X, config["seasonal_weight"]),
        feature_names=list(FEATURE_COLUMNS),
    )


def _train(config: dict[str, Any], dtrain: xgb.DMatrix, num_rounds: int, **kwargs: Any) -> xgb.Booster:
    params = {k: v for k, v in config.items() if k not in TRAINING_DEFAULTS}
    if "custom_metric" in kwargs:
        params["disable_default_eval_metric"] = 1
    booster = xgb.train(params, dtrain, num_rounds, verbose_eval=False, **kwargs)
    # The transform travels inside the model file, so whoever loads it scores it the same way.
    metadata = forecast.model_metadata(config["seasonal_weight"])
    booster.set_attr(**{k: json.dumps(v) for k, v in metadata.items()})
    return booster


def fit_rounds(train: pl.DataFrame, config: dict[str, Any], num_rounds: int) -> xgb.Booster:
    """Train a booster on ``train`` with a known number of rounds (the refit and the backtest use this)."""
    return _train(config, _dmatrix(data.matrices(train), config), num_rounds)


def _wape_metric(val: data.Matrices, config: dict[str, Any]) -> Callable[..., tuple[str, float]]:
    """Early-stopping metric: WAPE of the p50 in sales units (what the selection and the gate look at)."""
    base = forecast.log_base(val.X, config["seasonal_weight"])

    def metric(predt: np.ndarray, _: xgb.DMatrix) -> tuple[str, float]:
        median = np.median(predt.reshape(len(val.y), -1), axis=1)  # = p50 after sorting the three heads
        return "wape", metrics.wape(val.y, np.clip(np.expm1(median + base), 0.0, None))

    return metric


def _validate(config: dict[str, Any], fit_m: data.Matrices, val_m: data.Matrices) -> tuple[int, float]:
    booster = _train(
        config,
        _dmatrix(fit_m, config),
        int(config["max_rounds"]),
        evals=[(_dmatrix(val_m, config), "validation")],
        early_stopping_rounds=int(config["early_stopping_rounds"]),
        custom_metric=_wape_metric(val_m, config),
    )
    return booster.best_iteration + 1, float(booster.best_score)


def tune_and_fit(train: pl.DataFrame, overrides: dict[str, Any] | None = None) -> FitResult:
    """Pick the configuration and number of rounds on the validation folds, then refit on all of ``train``."""
    fixed, grid = resolve_params(overrides)
    folds = [
        (data.matrices(fit_part), data.matrices(validation))
        for fit_part, validation in data.validation_folds(
            train, int(fixed["validation_months"]), int(fixed["validation_folds"])
        )
    ]
    search = []
    for tuned in grid:
        results = [_validate({**fixed, **tuned}, fit_m, val_m) for fit_m, val_m in folds]
        search.append(
            {
                **tuned,
                "num_rounds": int(round(float(np.mean([r for r, _ in results])))),
                "validation_wape": float(np.mean([w for _, w in results])),
                "folds": [{"num_rounds": r, "wape": w} for r, w in results],
            }
        )
    best = min(search, key=lambda r: (r["validation_wape"], r["num_rounds"]))
    config = {**fixed, **{k: best[k] for k in grid[0]}}
    return FitResult(
        booster=fit_rounds(train, config, best["num_rounds"]),
        params=config,
        num_rounds=best["num_rounds"],
        validation_wape=best["validation_wape"],
        search=search,
    )
