"""Behaviour of the forecaster on the session's sample data (the real data chain's processed version).

No MLflow here: the model is fitted directly with ``training.model`` and scored with ``training.evaluate``,
the very functions the ``train`` flow calls.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from features.schema import FEATURE_COLUMNS, encode_row
from training import backtest, baselines, data, evaluate, forecast, model


@pytest.fixture(scope="module")
def splits(processed_version: str) -> dict:
    """Train and test rows of the sample data version."""
    return {
        "train": data.load_split(processed_version, "train_set"),
        "test": data.load_split(processed_version, "test_set"),
        "all": data.load_all(processed_version),
    }


@pytest.fixture(scope="module")
def fitted(splits: dict) -> model.FitResult:
    """The model as the flow fits it (default parameters)."""
    return model.tune_and_fit(splits["train"])


@pytest.fixture(scope="module")
def evaluation(fitted: model.FitResult, splits: dict) -> evaluate.Evaluation:
    """The fitted model and the baselines on the test split."""
    return evaluate.evaluate(fitted.booster, splits["test"])


def test_model_beats_every_baseline_on_the_test_months(evaluation: evaluate.Evaluation):
    wapes = evaluation.wapes()
    for name in baselines.BASELINES:
        assert wapes["model"] < wapes[name], wapes
    coverage = evaluation.metrics["model"]["coverage_p10_p90"]
    assert 0.6 <= coverage <= 0.98, coverage  # nominal 0.8: the interval is neither empty nor vacuous


def test_model_beats_every_baseline_in_the_rolling_origin_backtest(fitted: model.FitResult, splits: dict):
    result = backtest.rolling_origin(splits["all"], fitted.params, fitted.num_rounds, origins=3)
    assert [r["origin"] for r in result["origins"]] == [3, 2, 1]
    months = [r["target_months"] for r in result["origins"]]
    assert months == sorted(months)  # origins move forward in time
    for name, value in result["baseline_wape_mean"].items():
        assert result["wape_mean"] < value, (name, result)


def test_validation_folds_come_from_training_months_only(fitted: model.FitResult, splits: dict):
    first_test = splits["test"].group_by("source").agg(pl.col("target_month").min().alias("first_test"))
    folds = data.validation_folds(
        splits["train"], fitted.params["validation_months"], fitted.params["validation_folds"]
    )
    for fit_part, validation in folds:
        joined = validation.join(first_test, on="source")
        assert joined.height == validation.height
        assert (joined["target_month"] < joined["first_test"]).all()  # never the test months
        last_fit = fit_part.group_by("source").agg(pl.col("target_month").max().alias("last_fit"))
        joined = validation.join(last_fit, on="source")
        assert (joined["target_month"] > joined["last_fit"]).all()  # validates on later months than it fits
    assert all(len(s["folds"]) == len(folds) for s in fitted.search)


def test_quantiles_are_ordered_and_never_negative(fitted: model.FitResult, splits: dict):
    X = data.matrices(splits["test"]).X
    lag_idx = [i for i, c in enumerate(FEATURE_COLUMNS) if c.startswith(("lag_", "rolling_"))]
    extreme = np.vstack(
        [
            X,
            np.where(np.isin(np.arange(X.shape[1]), lag_idx), 0.0, X[:1]),  # a product that sold nothing
            np.where(np.isin(np.arange(X.shape[1]), lag_idx), np.nan, X[:1]),  # no history at all
            np.where(np.isin(np.arange(X.shape[1]), lag_idx), 5e8, X[:1]),  # far above anything seen
            np.where(np.isin(np.arange(X.shape[1]), lag_idx), -50.0, X[:1]),  # net returns
        ]
    ).astype(np.float32)
    q = forecast.predict_quantiles(fitted.booster, extreme)
    assert q.shape == (len(extreme), 3)
    assert np.isfinite(q).all() and (q >= 0).all()
    assert (q[:, 0] <= q[:, 1]).all() and (q[:, 1] <= q[:, 2]).all()


def test_raising_the_lags_raises_the_forecast(fitted: model.FitResult, splits: dict):
    X = data.matrices(splits["test"]).X
    base = forecast.predict_quantiles(fitted.booster, X)
    lags = [i for i, c in enumerate(FEATURE_COLUMNS) if c.startswith("lag_")]
    raised = X.copy()
    raised[:, lags] *= 1.2
    higher = forecast.predict_quantiles(fitted.booster, raised)
    assert (higher >= base).all()  # monotone: never lower, for every row and quantile
    assert np.median(higher[:, 1] / base[:, 1]) > 1.05
    # The whole history 50 % higher (lags and the rolling statistics computed from them): every row rises.
    history = [i for i, c in enumerate(FEATURE_COLUMNS) if c.startswith(("lag_", "rolling_"))]
    scaled = X.copy()
    scaled[:, history] *= 1.5
    assert (forecast.predict_quantiles(fitted.booster, scaled)[:, 1] > base[:, 1]).all()


def test_same_data_and_seed_give_the_same_model_and_metrics(fitted, evaluation, splits: dict):
    again = model.tune_and_fit(splits["train"])
    assert again.num_rounds == fitted.num_rounds and again.params == fitted.params
    assert bytes(again.booster.save_raw("ubj")) == bytes(fitted.booster.save_raw("ubj"))
    assert evaluate.evaluate(again.booster, splits["test"]).metrics == evaluation.metrics


def test_serving_row_encoding_gives_the_training_forecast(fitted: model.FitResult, splits: dict):
    test = splits["test"]
    batch = forecast.predict_quantiles(fitted.booster, data.matrices(test).X)
    for i, row in enumerate(test.head(5).iter_rows(named=True)):
        single = forecast.predict_quantiles(fitted.booster, encode_row(row))
        assert single.shape == (1, 3)
        np.testing.assert_allclose(single[0], batch[i], rtol=1e-6)
    assert forecast.booster_metadata(fitted.booster)["transform"] == forecast.TRANSFORM
