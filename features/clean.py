"""Cleaning and homologation of both sources into one shape: national monthly totals per product.

Input frames are the raw tables as strings (``features.raw_csv.parse_raw_csv``); output of ``monthly_totals``
is one row per (source, id_product, year_month) with ``total_sales`` and the product's attributes. Every rule
that changes or sets aside data is counted in a ``CleaningCounts`` so the data-quality report can show it.

Rules (each has a unit test in tests/test_clean.py):
- residue: |sales| below ``RESIDUE_ABS`` is floating-point dust from the ERP's fragment export → 0;
- fragments and returns: all fragments of a (product, region, category, month) are netted by summing, so a
  return (negative fragment) reduces its month's total;
- missing: the TeInvento quoted empty string ``""`` (and unparseable numbers) → missing, never 0; a month
  whose fragments are all missing has a missing total, and a national total is missing when any of its
  regions is (counted as ``product_months_partially_reported``: a partial sum would look like a drop);
- out of range: a non-finite value or one beyond ±``MAX_ABS_SALES`` (ingest quarantines such files; this
  catches files ingested before that check) → missing, counted as ``sales_out_of_range``;
- unknown keys: facts whose product or region is absent from its dimension, or named ``""``, are kept and
  flagged (``unknown_key``) instead of being dropped;
- a product code seen under two calorie categories stays one series; its category is the one with most sales.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import polars as pl

from features.raw_layout import ERP_REGION_FOLDERS, MAX_ABS_SALES, MONTHS, TABLES
from features.schema import SOURCE_ERP, SOURCE_TEINVENTO

ERP_COLUMNS = TABLES["erp_sales"].columns

RESIDUE_ABS = 1e-6
# Netting is done in integer micro-units: integer sums do not depend on the order in which a multi-threaded
# group-by adds fragments, so the same input always yields bit-identical totals (and parquet bytes). A value is
# at most MAX_ABS_SALES * MICROS = 1e18 micro-units (fits int64); sums are taken in int128, which no realistic
# number of fragments can overflow (int64 sums wrapped around: two fragments of 5e12 netted to -8.45e12).
MICROS = 1_000_000
NET_DTYPE = pl.Int128
ERP_PRODUCER = "Tamales Inc"
UNKNOWN_REGION = "(unknown)"  # the region of TeInvento facts whose region is unknown or unnamed
_MONTH_NUMBER = {name: i + 1 for i, name in enumerate(MONTHS)}


@dataclass
class CleaningCounts:
    """How many rows each cleaning rule touched (keys are stable names used in the data-quality report)."""

    counts: Counter = field(default_factory=Counter)

    def add(self, rule: str, n: int) -> None:
        """Add ``n`` to a rule's count."""
        self.counts[rule] += int(n)

    def as_dict(self) -> dict[str, int]:
        """Sorted plain dict (deterministic JSON)."""
        return dict(sorted(self.counts.items()))


def _year_month(year: pl.Expr, month: pl.Expr) -> pl.Expr:
    """Date of the first of the month from a year string and a ``Jan``..``Dec`` string (null if invalid)."""
    month_number = month.str.strip_chars().replace_strict(_MONTH_NUMBER, default=None, return_dtype=pl.Int8)
    return pl.date(year.str.strip_chars().cast(pl.Int32, strict=False), month_number, 1)


def _parse_sales(sales: pl.Expr) -> pl.Expr:
    return sales.str.strip_chars().cast(pl.Float64, strict=False)


def _count_and_apply_common(df: pl.DataFrame, counts: CleaningCounts, prefix: str) -> pl.DataFrame:
    """Shared row rules: invalid month, missing/unparseable/out-of-range sales, residue, exact zeros, returns."""
    counts.add(f"{prefix}.rows_read", df.height)
    sales = pl.col("sales")
    in_range = sales.abs() <= MAX_ABS_SALES  # false for NaN and ±inf too
    stats = df.select(
        invalid_month=pl.col("year_month").is_null().sum(),
        missing_sales=(sales.is_null() & (pl.col("sales_raw").is_null() | (pl.col("sales_raw") == ""))).sum(),
        unparseable_sales=(sales.is_null() & (pl.col("sales_raw").str.strip_chars() != "")).sum(),
        sales_out_of_range=(sales.is_not_null() & ~in_range).sum(),
        residue_to_zero=((sales.abs() < RESIDUE_ABS) & (sales != 0)).sum(),
        exact_zero=(sales == 0).sum(),
        returns_netted=((sales <= -RESIDUE_ABS) & in_range).sum(),
    ).row(0, named=True)
    for rule, n in stats.items():
        counts.add(f"{prefix}.{rule}", n or 0)
    # Rows without a valid month cannot be placed in a series; they are counted above and set aside here.
    return df.filter(pl.col("year_month").is_not_null()).with_columns(
        sales=pl.when(in_range).then(sales),  # out of range → missing
        sales_micros=pl.when(~in_range)
        .then(None)
        .when(sales.abs() < RESIDUE_ABS)
        .then(0)
        .otherwise((sales * MICROS).round())
        .cast(pl.Int64),
    )


def _net(micros: pl.Expr) -> list[pl.Expr]:
    """Net sum of fragments (missing when every fragment is missing), as micro-units and as a float."""
    total = pl.when(micros.is_null().all()).then(None).otherwise(micros.cast(NET_DTYPE).sum())
    return [total.alias("sales_micros"), (total / MICROS).alias("sales")]


def clean_erp(raw: pl.LazyFrame, counts: CleaningCounts) -> pl.DataFrame:
    """ERP fragments → one netted row per (product, category, region, month) with attributes."""
    df = raw.select(
        year_month=_year_month(pl.col("year"), pl.col("month")),
        id_product=pl.col("product_code").str.strip_chars(),
        calorie_category=pl.col("calorie_category").str.strip_chars(),
        region=pl.col("zone").str.strip_chars(),
        product_name=pl.concat_str(
            [pl.col("product_name").str.strip_chars(), pl.col("flavor").str.strip_chars()], separator=" "
        ),
        sales_raw=pl.col("sales"),
        sales=_parse_sales(pl.col("sales")),
    ).collect()
    df = _count_and_apply_common(df, counts, "erp")
    counts.add(
        "erp.rows_unknown_region",
        df.filter(~pl.col("region").is_in(list(ERP_REGION_FOLDERS.values()))).height,
    )
    netted = df.group_by("id_product", "calorie_category", "region", "year_month").agg(
        *_net(pl.col("sales_micros")), product_name=pl.col("product_name").min()
    )
    return netted.with_columns(
        source=pl.lit(SOURCE_ERP), producer=pl.lit(ERP_PRODUCER), unknown_key=pl.lit(False)
    )


def combine_netted(parts: list[pl.DataFrame], counts: CleaningCounts) -> pl.DataFrame:
    """Net ERP series-months cleaned file by file into one frame (a series split across files adds up)."""
    keys = ["source", "id_product", "calorie_category", "region", "year_month"]
    if not parts:
        parts = [clean_erp(pl.LazyFrame(schema=dict.fromkeys(ERP_COLUMNS, pl.String)), CleaningCounts())]
    combined = (
        pl.concat(parts)
        .group_by(keys)
        .agg(
            *_net(pl.col("sales_micros")),
            pl.col("product_name").min(),
            pl.col("producer").first(),
            pl.col("unknown_key").any(),
        )
        .sort(keys)
    )
    counts.add("erp.series_months_after_netting", combined.height)
    return combined


def _dedupe_dim(dim: pl.DataFrame, key: str, counts: CleaningCounts, name: str) -> pl.DataFrame:
    deduped = dim.unique(subset=[key], keep="first", maintain_order=True)
    counts.add(f"teinvento.{name}_duplicate_keys", dim.height - deduped.height)
    return deduped


def clean_teinvento(
    fact: pl.LazyFrame, products: pl.LazyFrame, regions: pl.LazyFrame, counts: CleaningCounts
) -> pl.DataFrame:
    """TeInvento star schema → one row per (product, region, month) with product attributes joined."""
    df = fact.select(
        year_month=_year_month(pl.col("year"), pl.col("month")),
        id_product=pl.col("id_product").str.strip_chars(),
        id_region=pl.col("id_region").str.strip_chars(),
        sales_raw=pl.col("sales"),
        sales=_parse_sales(pl.col("sales")),
    ).collect()
    df = _count_and_apply_common(df, counts, "teinvento")
    product_dim = _dedupe_dim(
        products.select(
            id_product=pl.col("id_product").str.strip_chars(),
            calorie_category=pl.col("calorie_category").str.strip_chars(),
            product_name=pl.col("product").str.strip_chars(),
            producer=pl.col("producer").str.strip_chars(),
        ).collect(),
        "id_product",
        counts,
        "product_dim",
    )
    region_dim = _dedupe_dim(
        regions.select(
            id_region=pl.col("id_region").str.strip_chars(), region=pl.col("region").str.strip_chars()
        ).collect(),
        "id_region",
        counts,
        "region_dim",
    )
    joined = df.join(product_dim, on="id_product", how="left").join(region_dim, on="id_region", how="left")
    unknown_product = pl.col("product_name").is_null() | (pl.col("product_name") == "")
    unknown_region = pl.col("region").is_null() | (pl.col("region") == "")
    counts.add("teinvento.rows_unknown_product", joined.filter(unknown_product).height)
    counts.add("teinvento.rows_unknown_region", joined.filter(unknown_region).height)
    netted = (
        joined.with_columns(
            unknown_key=unknown_product,
            product_name=pl.when(pl.col("product_name") == "").then(None).otherwise(pl.col("product_name")),
            region=pl.when(unknown_region).then(pl.lit(UNKNOWN_REGION)).otherwise(pl.col("region")),
        )
        .group_by("id_product", "calorie_category", "region", "year_month")
        .agg(
            *_net(pl.col("sales_micros")),
            product_name=pl.col("product_name").first(),
            producer=pl.col("producer").first(),
            unknown_key=pl.col("unknown_key").any(),
        )
    )
    counts.add("teinvento.series_months_after_netting", netted.height)
    return netted.with_columns(source=pl.lit(SOURCE_TEINVENTO))


def monthly_totals(series: pl.DataFrame, counts: CleaningCounts) -> pl.DataFrame:
    """National monthly total per (source, product): regions and categories summed; attributes resolved."""
    keys = ["source", "id_product"]
    by_category = series.group_by(*keys, "calorie_category").agg(cat_sales=pl.col("sales_micros").abs().sum())
    two_categories = by_category.group_by(keys).len().filter(pl.col("len") > 1).height
    counts.add("products_with_two_calorie_categories", two_categories)
    dominant = (
        by_category.sort([*keys, "cat_sales", "calorie_category"], descending=[False, False, True, False])
        .group_by(keys, maintain_order=True)
        .first()
        .select(*keys, "calorie_category")
    )
    attributes = series.group_by(keys).agg(
        product_name=pl.col("product_name").drop_nulls().min(),
        producer=pl.col("producer").drop_nulls().min(),
        unknown_key=pl.col("unknown_key").any(),
    )
    # A national total is only known when every region reported: a partial sum would look like a drop.
    micros = pl.col("sales_micros")
    totals = series.group_by(*keys, "year_month").agg(
        total_sales=pl.when(micros.is_null().any()).then(None).otherwise(_net(micros)[1]),
        partial=micros.is_null().any() & micros.is_not_null().any(),
    )
    counts.add("product_months_partially_reported", int(totals["partial"].sum()))
    totals = totals.drop("partial")
    return (
        totals.join(dominant, on=keys, how="left")
        .join(attributes, on=keys, how="left")
        .sort([*keys, "year_month"])
    )
