"""Unit tests of the training building blocks on small hand-made frames: metrics, baselines, folds, the gate
rule, parameter resolution, the forecast transform and the report. No data chain, no MLflow."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from features.schema import FEATURE_COLUMNS, FEATURE_STORE_SCHEMA, conform, encode_row, to_model_matrix
from training import baselines, data, forecast, gate, metrics, model, report


def _rows(
    n_months: int = 8, source: str = "erp", product: str = "P1", start=dt.date(2023, 1, 1)
) -> list[dict]:
    rows = []
    for i in range(n_months):
        month = dt.date(start.year + (start.month - 1 + i) // 12, (start.month - 1 + i) % 12 + 1, 1)
        target_month = dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)
        row = dict.fromkeys(FEATURE_STORE_SCHEMA)
        row |= {
            "id_product": product,
            "source": source,
            "year_month": month,
            "target_month": target_month,
            "total_sales": 100.0 + i,
            "target": 101.0 + i,
            "lag_1": 100.0 + i,
            "rolling_mean_3": 99.0 + i,
            "target_month_of_year": target_month.month,
            "calorie_category": "Regular",
            "producer": "Tamales Inc",
        }
        rows.append(row)
    return rows


def _frame(rows: list[dict]) -> pl.DataFrame:
    return conform(pl.DataFrame(rows, schema=FEATURE_STORE_SCHEMA))


def test_metrics_on_hand_computed_values():
    y = np.array([100.0, 200.0, 300.0])
    f = np.array([110.0, 180.0, 300.0])
    assert metrics.wape(y, f) == pytest.approx(30 / 600)
    assert metrics.mae(y, f) == pytest.approx(10.0)
    assert metrics.rmse(y, f) == pytest.approx(math.sqrt((100 + 400) / 3))
    assert metrics.bias(y, f) == pytest.approx(-10 / 600)
    assert metrics.coverage(y, f - 15, f + 15) == pytest.approx(2 / 3)
    by_source = metrics.point_metrics(y, f, ["erp", "teinvento", "erp"])
    assert by_source["wape_erp"] == pytest.approx(10 / 400)
    assert by_source["wape_teinvento"] == pytest.approx(20 / 200)
    with pytest.raises(ValueError, match="undefined"):
        metrics.wape(np.zeros(2), np.ones(2))


def test_baselines_read_the_lags_with_their_fallbacks():
    rows = _rows(3)
    rows[0] |= {"lag_12": 80.0}
    rows[1] |= {"rolling_mean_3": None}
    df = _frame(rows)
    assert baselines.baseline_forecast("last_value", df).tolist() == [100.0, 101.0, 102.0]
    assert baselines.baseline_forecast("mean_3", df).tolist() == [99.0, 101.0, 101.0]  # falls back to lag_1
    seasonal = baselines.baseline_forecast("seasonal_naive", df)
    assert seasonal.tolist() == [80.0, 101.0, 102.0]  # lag_12, else lag_1
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.baseline_forecast("oracle", df)


def test_folds_and_origins_are_time_ordered_per_source():
    # erp ends in Sept 2023, teinvento a year earlier: each source's own last months form the folds.
    df = _frame(_rows(8) + _rows(8, source="teinvento", product="T1", start=dt.date(2022, 1, 1)))
    folds = data.validation_folds(df, n_months=2, n_folds=2)
    for k, (fit, val) in enumerate(folds, start=1):
        for source in ("erp", "teinvento"):
            fit_months = fit.filter(pl.col("source") == source)["target_month"]
            val_months = val.filter(pl.col("source") == source)["target_month"]
            assert val_months.n_unique() == 2
            assert fit_months.max() < val_months.min()  # never trains on the months it validates
        assert fit.height + val.height == df.height - 4 * (k - 1)
    assert folds[0][1]["target_month"].max() == df["target_month"].max()
    fit, holdout = data.origin_split(df, origin=1)
    assert holdout.height == 2 and fit.height == df.height - 2
    with pytest.raises(ValueError, match="not enough months"):
        data.validation_folds(df, n_months=4, n_folds=2)


def test_gate_rule():
    naive = {"last_value": 0.20, "mean_3": 0.25, "seasonal_naive": 0.10}
    first = gate.decide(0.08, naive, None)
    assert first.promote and first.alias == gate.CHAMPION and "seasonal_naive" in first.reason
    loses_to_baseline = gate.decide(0.10, naive, None)  # a tie is not a win
    assert not loses_to_baseline.promote and loses_to_baseline.alias == gate.CHALLENGER
    assert "does not beat baseline seasonal_naive" in loses_to_baseline.reason
    worse = gate.decide(0.08, naive, gate.ChampionScore("3", wape=0.07))
    assert not worse.promote and "does not beat champion v3" in worse.reason
    better = gate.decide(0.06, naive, gate.ChampionScore("3", wape=0.07))
    assert better.promote and better.alias == gate.CHAMPION and "v3" in better.reason
    unscorable = gate.decide(0.01, naive, gate.ChampionScore("3", error="OSError: gone"))
    assert not unscorable.promote and "could not be re-scored" in unscorable.reason


def test_params_overrides_pin_the_grid_and_reject_typos():
    fixed, grid = model.resolve_params({"max_depth": 4, "seed": 7})
    assert grid == [{"max_depth": 4}] and fixed["seed"] == 7
    fixed, grid = model.resolve_params(None)
    assert len(grid) == len(model.SEARCH_GRID) and fixed["objective"] == "reg:quantileerror"
    assert fixed["quantile_alpha"] == [0.1, 0.5, 0.9]
    with pytest.raises(ValueError, match="unknown training parameters"):
        model.resolve_params({"max_dept": 4})


def test_transform_is_scale_free_and_matches_serving_encoding():
    rows = _rows(2)
    rows[0] |= {"lag_12": 90.0, "rolling_std_3": 5.0}
    X = to_model_matrix(_frame(rows))
    assert np.array_equal(np.vstack([encode_row(r) for r in rows]), X, equal_nan=True)
    Z = forecast.model_inputs(X * 100)  # sales of ~10^4 ...
    Z_scaled = forecast.model_inputs(X * 100_000)  # ... and of ~10^7
    level = FEATURE_COLUMNS.index(forecast.LEVEL_FEATURE)
    relative = [i for i, c in enumerate(FEATURE_COLUMNS) if c.startswith(("lag_", "rolling_std_"))]
    # Sales inputs are relative to the level: scaling a product's history leaves them (nearly: log1p) unchanged
    assert np.allclose(Z[:, relative], Z_scaled[:, relative], atol=1e-2, equal_nan=True)
    # and only the level column carries the size.
    assert np.all(Z_scaled[:, level] > Z[:, level])
    label = forecast.model_label(np.array([101.0, 102.0]), X, 0.5)
    base = forecast.log_base(X, 0.5)
    assert base[0] == pytest.approx(0.5 * np.log1p(90.0) + 0.5 * np.log1p(99.0))  # geometric blend
    assert base[1] == pytest.approx(np.log1p(100.0))  # no lag_12: the level alone
    assert np.allclose(np.expm1(label + base), [101.0, 102.0])
    with pytest.raises(ValueError, match="feature matrix"):
        forecast.model_inputs(X[:, :-1])


def test_report_renders_the_table_and_the_decision():
    scores = {
        "model": {
            "wape": 0.05,
            "mae": 10,
            "rmse": 12,
            "bias": 0.01,
            "coverage_p10_p90": 0.8,
            "wape_erp": 0.04,
        },
        "seasonal_naive": {"wape": 0.07, "mae": 14.0, "rmse": 15.0, "bias": 0.0, "wape_erp": 0.06},
        "champion": {"wape": 0.06, "mae": 11.0, "rmse": 13.0, "bias": 0.0, "coverage_p10_p90": 0.7},
    }
    backtest = {
        "origins": [{"target_months": ["2024-12-01"], "wape": 0.05}],
        "wape_mean": 0.05,
        "baseline_wape_mean": {"seasonal_naive": 0.07},
    }
    text = report.markdown(
        {
            "status": "registered",
            "data_version": "v1",
            "scores": scores,
            "champion_version": "2",
            "backtest": backtest,
            "version": "3",
            "alias": "champion",
            "reason": "better",
            "run_id": "abc",
        }
    )
    assert "| model | 0.0500 | 10 | 12 | 0.0100 | 0.8000 | 0.0400 |" in text
    assert "| champion v2 (re-scored) | 0.0600 |" in text
    assert "v3 → `@champion` — better" in text
