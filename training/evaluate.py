"""Score the model and the baselines on the test split (one table of predictions, one dict of metrics)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import xgboost as xgb

from features.schema import KEY_COLUMNS
from training import baselines, data, forecast, metrics

MODEL = "model"


@dataclass
class Evaluation:
    """Per-row predictions (keys, actual, p10/p50/p90, baselines) and metrics per forecaster."""

    predictions: pl.DataFrame
    metrics: dict[str, dict[str, float]]

    def wapes(self) -> dict[str, float]:
        """Test WAPE of every forecaster (the model and each baseline)."""
        return {name: m["wape"] for name, m in self.metrics.items()}


def score_booster(booster: xgb.Booster, test: pl.DataFrame) -> tuple[np.ndarray, dict[str, float]]:
    """Quantile forecasts of ``booster`` for ``test`` and their metrics (also used to re-score the champion)."""
    m = data.matrices(test)
    quantiles = forecast.predict_quantiles(booster, m.X)
    return quantiles, metrics.quantile_metrics(m.y, quantiles, m.sources)


def evaluate(booster: xgb.Booster, test: pl.DataFrame) -> Evaluation:
    """The model's and the baselines' forecasts and metrics on ``test``."""
    quantiles, model_metrics = score_booster(booster, test)
    y, sources = test["target"].to_numpy(), test["source"].to_numpy().astype(str)
    naive = baselines.all_baselines(test)
    scores = {MODEL: model_metrics}
    scores.update({name: metrics.point_metrics(y, f, sources) for name, f in naive.items()})
    predictions = test.select(*KEY_COLUMNS, "target_month", "product_name", pl.col("target").alias("actual"))
    predictions = predictions.with_columns(
        p10=pl.Series(quantiles[:, 0]),
        p50=pl.Series(quantiles[:, 1]),
        p90=pl.Series(quantiles[:, 2]),
        **{name: pl.Series(f) for name, f in naive.items()},
    )
    return Evaluation(predictions=predictions, metrics=scores)


def flat_metrics(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """MLflow metric names: ``test_<m>`` for the model, ``<forecaster>_test_<m>`` for baselines/champion."""
    flat = {}
    for name, values in scores.items():
        prefix = "test_" if name == MODEL else f"{name}_test_"
        flat.update({prefix + key: float(value) for key, value in values.items()})
    return flat
