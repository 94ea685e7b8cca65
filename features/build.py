"""Feature rows from monthly totals: lags, rolling statistics, shares, target, and the temporal split.

Point-in-time correctness: every feature of the row for month *t* is computed from months ≤ *t* of the same
series; only ``target`` (month *t+1*) looks ahead. Series are made dense from their first month to their
source's last month (missing months get a missing total), so a lag of *k* rows is a lag of *k* months.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from features.calendar import Calendar
from features.clean import CleaningCounts
from features.schema import LAGS, ROLLING_WINDOWS, conform
from features.signals import add_signals

SERIES = ["source", "id_product"]


def densify(totals: pl.DataFrame, counts: CleaningCounts) -> pl.DataFrame:
    """One row per month from each series' first month to its source's last month (gaps → missing total)."""
    source_end = totals.group_by("source").agg(source_end=pl.col("year_month").max())
    spans = (
        totals.group_by(SERIES)
        .agg(start=pl.col("year_month").min())
        .join(source_end, on="source")
        .with_columns(year_month=pl.date_ranges("start", "source_end", interval="1mo"))
        .explode("year_month")
        .select(*SERIES, "year_month")
    )
    attributes = totals.group_by(SERIES).agg(
        pl.col("calorie_category", "product_name", "producer", "unknown_key").first()
    )
    dense = (
        spans.join(
            totals.select(*SERIES, "year_month", "total_sales"), on=[*SERIES, "year_month"], how="left"
        )
        .join(attributes, on=SERIES, how="left")
        .sort([*SERIES, "year_month"])
    )
    counts.add("months_filled_missing", dense.height - totals.height)
    return dense


def build_features(dense: pl.DataFrame, calendars: Mapping[str, Calendar] | None = None) -> pl.DataFrame:
    """Feature rows (schema ``features.schema.FEATURE_STORE_SCHEMA``), one per (source, product, month).

    ``calendars`` maps a source to its reporting calendar (default: the settings'); see ``features.signals``.
    """
    if calendars is None:
        from features.settings import get_settings

        calendars = get_settings().calendars
    sales = pl.col("total_sales")
    over: dict[str, Any] = {"partition_by": SERIES, "order_by": "year_month"}
    lags = {f"lag_{k}": sales.shift(k - 1).over(**over) for k in LAGS}
    means = {
        f"rolling_mean_{w}": sales.rolling_mean(window_size=w, min_samples=1).over(**over)
        for w in ROLLING_WINDOWS
    }
    stds = {
        f"rolling_std_{w}": sales.rolling_std(window_size=w, min_samples=2).over(**over)
        for w in ROLLING_WINDOWS
    }
    category_total = sales.sum().over(["source", "calorie_category", "year_month"])
    rows = add_signals(dense.sort([*SERIES, "year_month"]), calendars).with_columns(
        target=sales.shift(-1).over(**over),
        target_month=pl.col("year_month").dt.offset_by("1mo"),
        **lags,
        **means,
        **stds,
        share_of_calorie_category=pl.when(category_total > 0).then(sales / category_total).otherwise(None),
        months_of_history=sales.is_not_null().cast(pl.Int32).cum_sum().over(**over),
    )
    rows = rows.with_columns(target_month_of_year=pl.col("target_month").dt.month().cast(pl.Int32))
    return conform(rows).sort([*SERIES, "year_month"])


def temporal_split(features: pl.DataFrame, test_months: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Labelled rows split by time: test = target month among the last ``test_months`` of its source."""
    labelled = features.filter(pl.col("target").is_not_null())
    last_target = labelled.group_by("source").agg(last_target=pl.col("target_month").max())
    flagged = labelled.join(last_target, on="source").with_columns(
        is_test=pl.col("target_month") > pl.col("last_target").dt.offset_by(f"-{test_months}mo")
    )
    order = [*SERIES, "year_month"]
    train = flagged.filter(~pl.col("is_test")).drop("last_target", "is_test").sort(order)
    test = flagged.filter(pl.col("is_test")).drop("last_target", "is_test").sort(order)
    return train, test


def latest_rows(features: pl.DataFrame) -> pl.DataFrame:
    """Each product's newest row (its target is the month to forecast)."""
    return features.sort([*SERIES, "year_month"]).group_by(SERIES, maintain_order=True).last()
