"""Unit tests of the training building blocks on small hand-made inputs: metrics, recipes, the gate rule, the
forecast transform and its fallback, interval calibration and the report. No data chain, no MLflow."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest
import xgboost as xgb

from features.schema import FEATURE_STORE_SCHEMA, conform, encode_row, to_model_matrix
from training import calibration, forecast, gate, metrics, model, report
from training.recipe import DEFAULT_FEATURES, Recipe
from training.results import TrainResult


def _rows(n_months: int = 8, source: str = "erp", product: str = "P1", scale: float = 1.0) -> list[dict]:
    rows = []
    for i in range(n_months):
        month = dt.date(2023 + i // 12, i % 12 + 1, 1)
        target_month = dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)
        row = dict.fromkeys(FEATURE_STORE_SCHEMA)
        level = (100.0 + i) * scale
        row |= {
            "id_product": product,
            "source": source,
            "year_month": month,
            "target_month": target_month,
            "total_sales": level,
            "target": level * 1.01,
            "lag_1": level,
            "adj_lag_1": level,
            "level_forecast": level * 0.99,
            "common_factor_forecast": level,
            "target_month_of_year": target_month.month,
            "months_of_history": i + 1,
            "months_since_sale": 0,
            "calorie_category": "Regular",
            "producer": "Tamales Inc",
        }
        rows.append(row)
    return rows


def _frame(rows: list[dict]) -> pl.DataFrame:
    return conform(pl.DataFrame(rows, schema=FEATURE_STORE_SCHEMA))


def test_metrics_on_hand_computed_values():
    actual, fc = np.array([100.0, 200.0]), np.array([110.0, 180.0])
    assert metrics.wape(actual, fc) == pytest.approx(30 / 300)
    assert metrics.bias(actual, fc) == pytest.approx(-10 / 300)
    assert metrics.coverage(actual, np.array([90.0, 210.0]), np.array([120.0, 230.0])) == 0.5
    with pytest.raises(ValueError):
        metrics.wape(np.zeros(2), fc)


def test_recipe_round_trips_validates_and_takes_overrides():
    recipe = Recipe(calendars={"erp": "month"})
    assert Recipe.from_json(recipe.to_json()) == recipe
    assert recipe.fingerprint() == Recipe.from_dict(recipe.to_dict()).fingerprint()
    tuned = recipe.with_overrides({"max_depth": 3, "num_rounds": 20, "base": "level_forecast"})
    assert tuned.params["max_depth"] == 3 and tuned.num_rounds == 20 and tuned.base == "level_forecast"
    assert tuned.fingerprint() != recipe.fingerprint() and recipe.params["max_depth"] == 2
    linear = recipe.with_overrides({"booster": "gblinear"})
    assert "max_depth" not in linear.params and linear.booster_params()["objective"] == "reg:quantileerror"
    with pytest.raises(ValueError, match="unknown features"):
        Recipe(features=("nope", "source"))
    with pytest.raises(ValueError, match="source"):
        Recipe(features=tuple(f for f in DEFAULT_FEATURES if f != "source"))
    with pytest.raises(ValueError, match="fixed"):
        recipe.with_overrides({"objective": "reg:squarederror"})


def test_gate_promotes_only_a_recipe_that_beats_every_baseline_including_statistical_ones():
    baselines = {"last_value": 0.30, "AutoETS(cycle)": 0.20, "AutoARIMA(12)": 0.25}
    loses = gate.decide(gate.RecipeScore("candidate", "abc", 0.21), None, baselines)
    assert not loses.promote and loses.candidate_alias == gate.CHALLENGER
    assert "no XGBoost recipe beats the best statistical baseline" in loses.reason
    assert "AutoETS(cycle) 0.2000" in loses.reason and loses.best_baseline == "AutoETS(cycle)"
    first = gate.decide(gate.RecipeScore("candidate", "abc", 0.15), None, baselines)
    assert first.promote and first.candidate_alias == gate.CHAMPION and "first champion" in first.reason


def test_gate_compares_recipes_and_refreshes_the_winner():
    baselines = {"mean_3": 0.30}
    same = gate.RecipeScore("incumbent", "abc", 0.20, "4")
    refresh = gate.decide(gate.RecipeScore("candidate", "abc", 0.21), same, baselines)
    assert refresh.promote and refresh.winner == "candidate" and "refreshed" in refresh.reason
    worse = gate.decide(gate.RecipeScore("candidate", "new", 0.25), same, baselines)
    assert worse.promote and worse.winner == "incumbent" and worse.candidate_alias == gate.CHALLENGER
    assert "loses to the champion's recipe abc" in worse.reason
    better = gate.decide(gate.RecipeScore("candidate", "new", 0.18), same, baselines)
    assert better.promote and better.winner == "candidate" and better.candidate_alias == gate.CHAMPION
    neither = gate.decide(
        gate.RecipeScore("candidate", "new", 0.35), gate.RecipeScore("incumbent", "abc", 0.31), baselines
    )
    assert not neither.promote and neither.winner == "incumbent" and "no XGBoost recipe" in neither.reason


def test_transform_is_scale_free_and_matches_serving_encoding():
    recipe = Recipe()
    spec = model.spec_of(recipe)
    small, large = _rows(2), _rows(2, scale=1e5)
    X = to_model_matrix(_frame(small), recipe.features)
    assert np.array_equal(np.vstack([encode_row(r, recipe.features) for r in small]), X, equal_nan=True)
    X_large = to_model_matrix(_frame(large), recipe.features)
    Z, Z_large = forecast.model_inputs(X, spec), forecast.model_inputs(X_large, spec)
    relative = list(spec.sales_idx)
    # Sales inputs are relative to the base: scaling a product's history leaves them (nearly) unchanged ...
    assert np.allclose(Z[:, relative], Z_large[:, relative], atol=1e-2, equal_nan=True)
    base = recipe.features.index(recipe.base)
    assert np.all(Z_large[:, base] > Z[:, base])  # ... and only the base column carries the size.
    label = forecast.model_label(np.array([101.0, 102.0]), X, spec)
    assert np.allclose(np.expm1(label + forecast.log_base(X, spec)), [101.0, 102.0])
    with pytest.raises(ValueError, match="feature matrix"):
        forecast.model_inputs(X[:, :-1], spec)


def _tiny_booster(recipe: Recipe) -> xgb.Booster:
    rows = _frame([*_rows(12, product="a"), *_rows(12, product="b", scale=50.0)])
    return model.fit(rows, recipe.with_overrides({"num_rounds": 5}))


def test_fit_stores_spec_and_recipe_and_predicts_ordered_finite_quantiles():
    recipe = Recipe()
    booster = _tiny_booster(recipe)
    assert model.recipe_of(booster).fingerprint() == recipe.with_overrides({"num_rounds": 5}).fingerprint()
    spec = forecast.spec_of(booster)
    X = to_model_matrix(_frame(_rows(12, product="a")), spec.features)
    q = forecast.predict_quantiles(booster, X)
    assert np.all(np.isfinite(q)) and np.all(q >= 0) and np.all(np.diff(q, axis=1) >= 0)


def test_short_or_stale_series_get_the_documented_fallback():
    booster = _tiny_booster(Recipe())
    spec = forecast.spec_of(booster)
    new, stale, gone = _rows(1)[0], _rows(8)[-1], _rows(8)[-1]
    stale |= {"months_since_sale": 1, "total_sales": None}
    gone |= {"months_since_sale": forecast.STALE_MONTHS, "total_sales": None}
    X = np.vstack([encode_row(r, spec.features) for r in (new, stale, gone)])
    q = forecast.predict_quantiles(booster, X)
    base = np.expm1(forecast.log_base(X, spec))
    assert np.allclose(q[:, 1], base)  # p50 = the last known level for the target period
    assert np.all(q[:, 0] <= base * forecast.FALLBACK_BAND[0] + 1e-9)
    assert np.all(q[:, 2] >= base * forecast.FALLBACK_BAND[1] - 1e-9)
    assert q[2, 0] == 0.0 and q[1, 0] > 0  # no sales for STALE_MONTHS: possibly discontinued
    empty = encode_row({"source": "erp"}, spec.features)  # nothing known at all: 0, never NaN
    q_empty = forecast.predict_quantiles(booster, empty)
    assert np.all(np.isfinite(q_empty)) and q_empty[0, 0] == q_empty[0, 1] == 0.0


def test_calibration_factors_make_the_band_cover_the_backtest():
    rng = np.random.default_rng(0)
    n = 400
    # heads 0.1 apart on the model scale, actual spread 3x as wide: factors ~3 on both sides
    raw = pl.DataFrame({"raw_p10": -0.1 * np.ones(n), "raw_p50": np.zeros(n), "raw_p90": 0.1 * np.ones(n)})
    frame = raw.with_columns(
        log_actual=pl.Series(rng.normal(0, 0.3 / 1.2816, n)),
        source=pl.lit("erp"),
        fallback=pl.lit(False),
        target_month=pl.Series([dt.date(2024, 1 + i % 6, 1) for i in range(n)]),
    )
    factors = calibration.fit_factors(calibration.scores(frame))
    low, high = factors["erp"]
    assert 2.4 < low < 3.6 and 2.4 < high < 3.6
    out = forecast.calibrate(
        frame.select("raw_p10", "raw_p50", "raw_p90").to_numpy(), np.array(["erp"] * n), factors
    )
    inside = (frame["log_actual"].to_numpy() >= out[:, 0]) & (frame["log_actual"].to_numpy() <= out[:, 2])
    assert 0.75 <= inside.mean() <= 0.85
    assert set(calibration.leave_one_origin_out(calibration.scores(frame))) == set(frame["target_month"])


def test_report_renders_the_table_and_the_decision():
    scores = {
        "model": {"wape": 0.05, "wape_erp": 0.04, "bias": 0.01, "coverage_p10_p90": 0.8},
        "mean_3": {"wape": 0.07},
    }
    result = TrainResult(
        status="registered", data_version="v1", model_name="m", model_version="3", alias="champion",
        promoted=True, reason="better", recipe_fingerprint="abc", run_id="r", champion_version="3",
        backtest_wape=0.05, scores=scores,
    )  # fmt: skip
    text = report.markdown(result, origins=6)
    assert "| model | 0.0500 | 0.0400 | 0.0100 | 0.8000 |" in text
    assert "| mean_3 | 0.0700 |  |  |  |" in text
    assert "**Decision:** promoted to `@champion` — better." in text and "last 6 months" in text
    assert math.isclose(result.summary()["backtest_wape"], 0.05) and "scores" not in result.summary()
