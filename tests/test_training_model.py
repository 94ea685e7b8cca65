"""Behaviour of the forecaster on the session's sample data (the real data chain's processed version).

No MLflow here: the recipe is backtested and fitted directly with ``training.backtest`` / ``training.model``,
the very functions the ``train`` flow calls, and compared with the baselines of ``training.reference``.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from features.schema import encode_row
from features.settings import get_settings
from training import backtest, evaluate, forecast, model, reference
from training.data import load_rows
from training.recipe import Recipe


@pytest.fixture(scope="module")
def rows(processed_version: str) -> pl.DataFrame:
    """Every feature row of the sample data version."""
    return load_rows(processed_version)


@pytest.fixture(scope="module")
def recipe() -> Recipe:
    return Recipe(calendars=get_settings().calendars)


@pytest.fixture(scope="module")
def result(rows: pl.DataFrame, recipe: Recipe) -> backtest.Backtest:
    return backtest.run(rows, recipe, get_settings().backtest_origins)


@pytest.fixture(scope="module")
def comparison(rows: pl.DataFrame, result: backtest.Backtest) -> evaluate.Comparison:
    baselines = reference.baseline_forecasts(rows, result.origins, get_settings().calendars)
    return evaluate.compare(result.predictions, baselines)


@pytest.fixture(scope="module")
def fitted(rows: pl.DataFrame, recipe: Recipe, result: backtest.Backtest):
    return model.with_calibration(model.fit(rows, recipe), result.factors)


def test_origins_are_each_sources_last_months_in_time_order(result: backtest.Backtest, rows: pl.DataFrame):
    n = get_settings().backtest_origins
    for source, months in result.origins.items():
        labelled = rows.filter((pl.col("source") == source) & pl.col("target").is_not_null())
        assert months == sorted(labelled["target_month"].unique().to_list())[-n:]
        scored = result.predictions.filter(pl.col("source") == source)
        assert sorted(scored["target_month"].unique().to_list()) == months


def test_the_model_beats_every_baseline_in_the_rolling_origin_backtest(comparison: evaluate.Comparison):
    wapes = comparison.wapes()
    for name in reference.BASELINES:
        assert wapes["model"] < wapes[name], wapes
    coverage = comparison.scores["model"]["coverage_p10_p90"]
    assert 0.6 <= coverage <= 0.95, coverage  # nominal 0.8, calibrated out of sample


def test_quantiles_are_ordered_finite_and_never_negative(fitted, rows: pl.DataFrame, recipe: Recipe):
    X = model.matrices(rows, recipe).X
    sales = [i for i, c in enumerate(recipe.features) if c in recipe.sales_features]
    extreme = np.vstack(
        [
            X,
            np.where(np.isin(np.arange(X.shape[1]), sales), 0.0, X[:1]),  # a product that sold nothing
            np.where(np.isin(np.arange(X.shape[1]), sales), np.nan, X[:1]),  # no history at all
            np.where(np.isin(np.arange(X.shape[1]), sales), 5e8, X[:1]),  # far above anything seen
            np.where(np.isin(np.arange(X.shape[1]), sales), -50.0, X[:1]),  # net returns
        ]
    ).astype(np.float32)
    q = forecast.predict_quantiles(fitted, extreme)
    assert q.shape == (len(extreme), 3) and np.isfinite(q).all() and (q >= 0).all()
    assert (q[:, 0] <= q[:, 1]).all() and (q[:, 1] <= q[:, 2]).all()


def test_scaling_a_products_history_scales_its_forecast(fitted, rows: pl.DataFrame, recipe: Recipe):
    X = model.matrices(rows.filter(pl.col("months_of_history") >= 3), recipe).X
    sales = [i for i, c in enumerate(recipe.features) if c in recipe.sales_features]
    scaled = X.copy()
    scaled[:, sales] *= 10.0
    ratio = forecast.predict_quantiles(fitted, scaled)[:, 1] / np.maximum(
        forecast.predict_quantiles(fitted, X)[:, 1], 1e-9
    )
    big = np.expm1(forecast.log_base(X, forecast.spec_of(fitted))) > 1000  # log1p is scale-free away from 0
    # Every sales input is relative to the base; only the base's own size is a feature, so ten times the
    # history gives about ten times the forecast.
    assert np.median(ratio[big]) == pytest.approx(10.0, rel=0.02) and np.all(
        (ratio[big] > 7) & (ratio[big] < 14)
    )


def test_same_data_and_recipe_give_the_same_model_and_backtest(
    rows, recipe, result: backtest.Backtest, fitted
):
    again = backtest.run(rows, recipe, get_settings().backtest_origins)
    assert again.predictions.equals(result.predictions) and again.factors == result.factors
    refit = model.with_calibration(model.fit(rows, recipe), again.factors)
    assert bytes(refit.save_raw("ubj")) == bytes(fitted.save_raw("ubj"))


def test_serving_row_encoding_gives_the_training_forecast(fitted, rows: pl.DataFrame, recipe: Recipe):
    latest = rows.filter(pl.col("target").is_null())
    batch = forecast.predict_quantiles(fitted, model.matrices(latest, recipe).X)
    for i, row in enumerate(latest.head(5).iter_rows(named=True)):
        single = forecast.predict_quantiles(fitted, encode_row(row, recipe.features))
        np.testing.assert_allclose(single[0], batch[i], rtol=1e-6)
