"""Feature construction: lags, rolling windows, shares, target, densification and the temporal split."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from features.build import build_features, densify, latest_rows, temporal_split
from features.clean import CleaningCounts
from features.schema import FEATURE_STORE_SCHEMA
from tests.fixtures.frames import totals_frame


def totals(
    months: int, source: str = "erp", product: str = "p1", start: int = 1, gap: int | None = None, k=1.0
):
    """Monthly totals 100, 200, ... for one series (optionally with one missing month)."""
    rows = []
    for i in range(months):
        if gap is not None and i == gap:
            continue
        year, month = 2023 + (start - 1 + i) // 12, (start - 1 + i) % 12 + 1
        rows.append((source, product, date(year, month, 1), 100.0 * (i + 1) * k))
    return totals_frame(rows)


def test_lags_count_from_the_target_month_and_use_only_the_past():
    f = build_features(densify(totals(14), CleaningCounts()))
    row = f.filter(pl.col("year_month") == date(2024, 2, 1)).row(0, named=True)  # 14th month, sales 1400
    assert row["lag_1"] == 1400 and row["lag_2"] == 1300 and row["lag_3"] == 1200 and row["lag_6"] == 900
    assert row["lag_12"] == 300  # March 2023 = target month (March 2024) a year earlier
    assert row["rolling_mean_3"] == pytest.approx((1400 + 1300 + 1200) / 3)
    assert row["target"] is None and row["target_month"] == date(2024, 3, 1)
    assert row["target_month_of_year"] == 3 and row["months_of_history"] == 14
    first = f.row(0, named=True)
    assert first["lag_2"] is None and first["target"] == 200 and first["rolling_std_3"] is None


def test_changing_a_future_month_never_changes_past_features():
    base = build_features(densify(totals(14), CleaningCounts()))
    changed_input = totals(14).with_columns(
        total_sales=pl.when(pl.col("year_month") == date(2024, 2, 1))
        .then(1e9)
        .otherwise(pl.col("total_sales"))
    )
    changed = build_features(densify(changed_input, CleaningCounts()))
    feature_cols = [c for c in FEATURE_STORE_SCHEMA if c not in ("target", "share_of_calorie_category")]
    past = pl.col("year_month") < date(2024, 2, 1)
    assert base.filter(past).select(feature_cols).equals(changed.filter(past).select(feature_cols))


def test_missing_month_is_densified_as_missing_not_zero():
    counts = CleaningCounts()
    f = build_features(densify(totals(6, gap=2), counts))
    assert f.height == 6 and counts.as_dict()["months_filled_missing"] == 1
    gap_row = f.filter(pl.col("year_month") == date(2023, 3, 1)).row(0, named=True)
    assert gap_row["total_sales"] is None
    assert f.filter(pl.col("year_month") == date(2023, 4, 1))["lag_2"][0] is None


def test_share_of_calorie_category_sums_to_one_per_month():
    both = pl.concat([totals(3, product="a"), totals(3, product="b", k=3.0)])
    f = build_features(densify(both, CleaningCounts()))
    shares = f.group_by("year_month").agg(pl.col("share_of_calorie_category").sum())
    assert shares["share_of_calorie_category"].to_list() == pytest.approx([1.0] * 3)
    assert f.filter(pl.col("id_product") == "a")["share_of_calorie_category"][0] == pytest.approx(0.25)


def test_split_is_temporal_per_source_and_keeps_latest_rows_out():
    both = pl.concat(
        [totals(20, source="erp"), totals(29, source="teinvento", product="85899345920", start=1)]
    )
    f = build_features(densify(both, CleaningCounts()))
    train, test = temporal_split(f, 3)
    for source, months in (("erp", 20), ("teinvento", 29)):
        t = test.filter(pl.col("source") == source)
        assert t.height == 3
        assert train.filter(pl.col("source") == source).height == months - 1 - 3
        assert train.filter(pl.col("source") == source)["target_month"].max() < t["target_month"].min()
    assert train["target"].null_count() == 0 and test["target"].null_count() == 0
    latest = latest_rows(f)
    assert latest.height == 2 and latest["target"].null_count() == 2


def test_output_has_exactly_the_feature_store_schema():
    f = build_features(densify(totals(5), CleaningCounts()))
    assert dict(f.schema) == FEATURE_STORE_SCHEMA
