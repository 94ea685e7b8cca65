"""Calendar-, rate- and source-aware features (features.signals, features.smoothing, features.calendar):
definitions on hand-made series, and point-in-time correctness of every new column."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import polars as pl
import pytest

from features.build import build_features, densify
from features.calendar import period_weeks
from features.clean import CleaningCounts
from features.schema import FEATURE_STORE_SCHEMA, SIGNAL_SCHEMA
from features.smoothing import smooth
from tests.fixtures.frames import totals_frame

CALENDARS = {"erp": "month", "teinvento": "4-4-5"}
NEW_COLUMNS = tuple(SIGNAL_SCHEMA)


def series(values: dict[str, list[float | None]], source: str = "teinvento", start=(2019, 1)) -> pl.DataFrame:
    """Monthly totals of several products of one source from ``start`` (None = a missing month)."""
    rows = []
    for product, sales in values.items():
        for i, value in enumerate(sales):
            year, month = start[0] + (start[1] - 1 + i) // 12, (start[1] - 1 + i) % 12 + 1
            if value is not None or i > 0:  # a leading None: the product starts later
                rows.append((source, product, date(year, month, 1), value))
    return totals_frame(rows)


def features(values: dict[str, list[float | None]], source: str = "teinvento") -> pl.DataFrame:
    return build_features(densify(series(values, source), CleaningCounts()), CALENDARS)


def row(f: pl.DataFrame, product: str, month: date) -> dict:
    return f.filter((pl.col("id_product") == product) & (pl.col("year_month") == month)).row(0, named=True)


def test_retail_and_calendar_month_lengths():
    assert [period_weeks(2020, m, "4-4-5") for m in range(1, 13)] == [4, 4, 5] * 4
    assert [period_weeks(2020, m, "5-4-4") for m in (1, 2, 3)] == [5, 4, 4]
    assert period_weeks(2020, 2, "month") == pytest.approx(29 / 7) and period_weeks(2019, 2, "month") == 4.0
    with pytest.raises(ValueError):
        period_weeks(2020, 1, "4-4-4")


def test_flat_weekly_demand_is_flat_once_compared_per_week():
    # Flat demand of 100 a week reported in 4-4-5 periods: every third month holds 500, the others 400.
    sales = [500.0 if m % 3 == 0 else 400.0 for m in range(1, 25)]
    f = features({"p": sales})
    june = row(f, "p", date(2020, 6, 1))  # a 5-week month; its target July has 4 weeks
    assert june["period_weeks"] == 5 and june["target_period_weeks"] == 4
    assert june["target_period_in_quarter"] == 1
    assert june["adj_lag_1"] == pytest.approx(400.0)  # June's 500 re-scaled to July's 4 weeks
    assert june["level_forecast"] == pytest.approx(400.0)
    assert june["common_factor_forecast"] == pytest.approx(400.0)
    assert june["ses_forecast"] == pytest.approx(400.0) and june["theta_forecast"] == pytest.approx(400.0)
    may = row(f, "p", date(2020, 5, 1))  # its target June has 5 weeks
    assert may["target_period_weeks"] == 5 and may["level_forecast"] == pytest.approx(500.0)


def test_source_growth_trusts_steady_products_more_than_noisy_ones():
    weeks = [period_weeks(2019 + i // 12, i % 12 + 1, "4-4-5") for i in range(15)]
    steady = [100.0 * 1.01**i for i in range(14)]  # +1 % a week-rate every month
    noisy = [100.0 * (1.5 if i % 2 else 0.7) for i in range(14)]  # jumps around
    rates = {"steady": [*steady, steady[-1] * 0.5], "noisy": [*noisy, noisy[-1] * 3.0]}
    f = features({p: [r * w for r, w in zip(v, weeks, strict=True)] for p, v in rates.items()})
    last = row(f, "steady", date(2020, 3, 1))
    assert last["source_growth_1"] == pytest.approx(math.log(0.5), abs=0.02)  # the steady product's halving
    assert row(f, "noisy", date(2020, 3, 1))["source_growth_1"] == last["source_growth_1"]  # one per source
    assert row(f, "steady", date(2019, 1, 1))["source_growth_1"] is None  # the first month: no step yet
    assert row(f, "steady", date(2019, 3, 1))["source_growth_3"] is None  # three months of index not there


def test_seasonal_step_is_last_years_move_into_the_target_month_pooled_over_sources():
    # Both sources double their weekly rate every December, flat otherwise (per week).
    def sales(source: str, months: int) -> list[float]:
        out = []
        for i in range(months):
            year, month = 2019 + i // 12, i % 12 + 1
            rate = 200.0 if month == 12 else 100.0
            out.append(rate * period_weeks(year, month, CALENDARS[source]))
        return out

    both = pl.concat(
        [
            series({"t": sales("teinvento", 26)}),
            series({"e": sales("erp", 26), "e2": sales("erp", 26)}, "erp"),
        ]
    )
    f = build_features(densify(both, CleaningCounts()), CALENDARS)
    nov = row(f, "t", date(2020, 11, 1))  # target December 2020: a year earlier the index doubled
    assert nov["seasonal_step"] == pytest.approx(math.log(2.0))
    assert nov["seasonal_forecast"] == pytest.approx(2.0 * nov["common_factor_forecast"])
    assert row(f, "e", date(2020, 11, 1))["seasonal_step"] == nov["seasonal_step"]
    assert row(f, "t", date(2019, 11, 1))["seasonal_step"] is None  # no year of history yet


def test_common_factor_follows_a_shock_shared_by_the_whole_source():
    before = [1000.0] * 12
    f = features({"a": [*before, 600.0], "b": [*before, 600.0], "c": [*before, 600.0]}, "erp")
    last = row(f, "a", date(2020, 1, 1))
    weeks_ratio = period_weeks(2020, 2, "month") / period_weeks(2020, 1, "month")
    assert last["common_factor_forecast"] == pytest.approx(600.0 * weeks_ratio)  # the new level at once
    assert last["level_forecast"] > 800.0  # a 3-month mean still remembers the old level
    assert last["source_growth_1"] == pytest.approx(math.log(0.6))


def test_months_since_sale_and_the_last_known_level_carry_over_gaps():
    f = features({"p": [400.0, 400.0, 500.0, None, None]})
    gap = row(f, "p", date(2019, 5, 1))
    assert gap["months_since_sale"] == 2 and gap["total_sales"] is None
    assert gap["level_forecast"] == pytest.approx(100.0 * gap["target_period_weeks"])  # 100 a week


def test_smoothing_chooses_its_weight_from_the_past_only():
    values = np.log1p(np.array([100.0, 110.0, 90.0, 105.0, 95.0, 400.0]))
    ses, theta = smooth(values)
    again, _ = smooth(values[:-1])
    assert np.allclose(ses[:-1], again)  # the last value changes nothing before it
    assert np.isfinite(theta).all() and np.isnan(smooth(np.array([np.nan, 1.0]))[0][0])


@pytest.mark.parametrize("product_changed", ["a", "b"])
def test_changing_a_future_month_of_any_product_never_changes_past_features(product_changed: str):
    """Point in time for every column, including the source-wide ones that read other products."""
    rng = np.random.default_rng(3)
    values = {p: list(rng.uniform(100, 1000, 24)) for p in ("a", "b", "c")}
    base = features(values)
    cut = 18
    changed = {p: list(v) for p, v in values.items()}
    changed[product_changed][cut] *= 7.0
    after = features(changed)
    month = date(2019 + cut // 12, cut % 12 + 1, 1)
    columns = [c for c in FEATURE_STORE_SCHEMA if c not in ("target", "share_of_calorie_category")]
    past_before = base.filter(pl.col("year_month") < month).select(columns)
    past_after = after.filter(pl.col("year_month") < month).select(columns)
    assert past_before.equals(past_after)
    at_cut = after.filter(pl.col("year_month") == month)
    assert set(NEW_COLUMNS) <= set(columns)
    moved = [c for c in NEW_COLUMNS if not at_cut[c].equals(base.filter(pl.col("year_month") == month)[c])]
    assert "source_growth_1" in moved  # ... and the month itself does see the change
