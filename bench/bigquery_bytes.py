"""Bytes each query of the BigQuery engine processes (what on-demand pricing bills), and the cost at scale.

    uv run python bench/bigquery_bytes.py --delivery DIR [--scale-to 1000000000] [--dry-run-endpoint URL]

BigQuery bills a query by the logical bytes of the columns it reads from the tables it references, at least
10 MB per table referenced ("data size calculation": STRING 2 bytes + its UTF-8 length, INT64, FLOAT64 and
DATE 8, BOOL 1, BIGNUMERIC 32, NULL 0). On BigQuery a dry run returns that number; bqemulator answers every
dry run with 0 bytes (``--dry-run-endpoint`` shows it), so this script computes it the way BigQuery does:
- the staging tables' column sizes from the delivery's raw files, every column a STRING as the engine loads
  them; the result tables' (series, totals) from the polars engine's own series and totals of the delivery;
- the columns each SQL file reads, per table, from sqlglot's qualified parse of the rendered SQL.
Load jobs (staging, ingest checks) are free; staging storage expires within days and is left out.

Extrapolation to ``--scale-to`` raw rows: staging sizes grow with the raw rows; the result tables are kept
at their measured size (they grow with products x months, not with rows: say so when products grow too).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402
import sqlglot  # noqa: E402
from sqlglot import exp  # noqa: E402
from sqlglot.optimizer.qualify import qualify  # noqa: E402
from sqlglot.optimizer.scope import traverse_scope  # noqa: E402

from features import bq, bq_engine  # noqa: E402
from features.raw_csv import iter_raw_csv  # noqa: E402
from features.raw_layout import TABLES, classify  # noqa: E402
from features.settings import Settings  # noqa: E402

MIN_BYTES_PER_TABLE = 10 * 2**20
TIB = 2**40
SERIES_COUNTS = [
    "rows_read",
    "invalid_month",
    "missing_sales",
    "unparseable_sales",
    "sales_out_of_range",
    "residue_to_zero",
    "exact_zero",
    "returns_netted",
    "rows_unknown_product",
    "rows_unknown_region",
]
PROJECT, DATASET = "my-project-1", "tamales_staging"


def string_bytes(column: pl.Series) -> int:
    """Logical bytes of a STRING column: 2 + UTF-8 length per non-null value."""
    values = column.drop_nulls()
    return int(values.str.len_bytes().sum() or 0) + 2 * values.len()


def staging_sizes(delivery: Path) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Per raw table: bytes per column as the engine stages it, and rows."""
    sizes: dict[str, dict[str, int]] = {kind: defaultdict(int) for kind in TABLES}
    rows: dict[str, int] = defaultdict(int)
    for path in sorted(p for p in delivery.rglob("*") if p.is_file()):
        raw_file = classify(path.relative_to(delivery).as_posix())
        if raw_file is None:
            continue
        with open(path, "rb") as handle:
            for frame in iter_raw_csv(handle, raw_file.spec, check_numbers=False):
                rows[raw_file.kind] += frame.height
                for name in frame.columns:
                    sizes[raw_file.kind][name] += string_bytes(frame[name])
    return {k: dict(v) for k, v in sizes.items()}, dict(rows)


def result_sizes(delivery: Path) -> dict[str, dict[str, int]]:
    """Bytes per column of the series and totals tables, from the polars engine's series and totals."""
    from features import dataset
    from features.clean import CleaningCounts, monthly_totals
    from features.ingest import ingest_delivery

    with tempfile.TemporaryDirectory(prefix="tamales-bytes-") as lake:
        settings = Settings(raw_url=f"{lake}/raw", processed_url=f"{lake}/processed")
        ingest_delivery(str(delivery), settings.raw_url, settings)
        counts = CleaningCounts()
        series = dataset.polars_series(dataset.resolve_inputs(settings), settings, counts)
        totals = monthly_totals(series, counts)
    strings = ("source", "id_product", "calorie_category", "region", "product_name", "producer")
    series_cols = {c: string_bytes(series[c].cast(pl.String)) for c in strings}
    series_cols |= {"year_month": 8 * series.height, "sales_micros": 32 * series.height}
    series_cols |= {"unknown_key": series.height} | {c: 8 * series.height for c in SERIES_COUNTS}
    total_strings = ("source", "id_product", "calorie_category", "product_name", "producer")
    totals_cols = {c: string_bytes(totals[c].cast(pl.String)) for c in total_strings}
    totals_cols |= {"year_month": 8 * totals.height, "total_sales": 8 * totals.height}
    totals_cols |= {"total_micros": 32 * totals.height, "unknown_key": totals.height}
    totals_cols |= {"partially_reported": totals.height}
    return {"series": series_cols, "totals": totals_cols}


def reads(sql: str, schema: dict) -> dict[str, set[str]]:
    """Columns the statement reads, per stored table it references (a table read for COUNT(*) only: empty)."""
    tree = qualify(sqlglot.parse_one(sql, read="bigquery"), schema=schema, dialect="bigquery")
    out: dict[str, set[str]] = defaultdict(set)
    for scope in traverse_scope(tree):
        for source in scope.sources.values():
            if isinstance(source, exp.Table) and source.db:
                out[source.name].update(())
        for column in scope.columns:
            source = scope.sources.get(column.table)
            if isinstance(source, exp.Table) and source.db and column.name != "_table_suffix":
                out[source.name].add(column.name)
    return out


def billed(used: dict[str, set[str]], sizes: dict[str, dict[str, int]]) -> int:
    """On-demand bytes: per referenced table, its read columns' bytes, at least 10 MB."""
    return sum(max(MIN_BYTES_PER_TABLE, sum(sizes[t].get(c, 0) for c in cols)) for t, cols in used.items())


def statements() -> dict[str, str]:
    """Each SQL file of the engine and of ingest's checks, rendered on tables named ``v_<logical name>``."""
    run = bq_engine.RunTables(PROJECT, DATASET, "v")
    out = {step: bq_engine.step_sql(step, run) for step in bq_engine.SQL_STEPS}
    for kind in TABLES:
        out[f"check_{kind} (ingest)"] = bq.render(f"check_{kind}", {"files": run.table(kind)})
    return out


def main() -> None:
    """Print the bytes per query on the delivery and the monthly cost at ``--scale-to`` raw rows."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--delivery", type=Path, required=True, help="a delivery folder (both sources)")
    parser.add_argument("--scale-to", type=int, default=1_000_000_000, help="raw rows per month to price")
    parser.add_argument("--usd-per-tib", type=float, default=6.25, help="on-demand price per TiB scanned")
    parser.add_argument("--dry-run-endpoint", help="a BigQuery endpoint (bqemulator) to ask for dry runs")
    args = parser.parse_args()

    staged, rows = staging_sizes(args.delivery)
    sizes = {**staged, **result_sizes(args.delivery), "counts": {"rule": 0, "n": 0}}
    types = {"sales_micros": "BIGNUMERIC", "total_micros": "BIGNUMERIC", "year_month": "DATE"}
    schema = {
        PROJECT: {
            DATASET: {
                f"v_{table}": {c: types.get(c, "STRING") for c in cols} | {"_TABLE_SUFFIX": "STRING"}
                for table, cols in sizes.items()
            }
        }
    }
    raw_rows = rows.get("erp_sales", 0) + rows.get("tei_fact", 0)
    factor = args.scale_to / raw_rows
    scaled = {
        t: {c: int(b * factor) if t in TABLES else b for c, b in cols.items()} for t, cols in sizes.items()
    }
    print(f"delivery: {raw_rows:,} raw rows; staged logical bytes: "
          f"{sum(sum(c.values()) for t, c in staged.items()) / 1e9:.3f} GB")  # fmt: skip
    print(f"\n{'query':<28}{'tables read (columns)':<58}{'bytes here':>14}{'at scale':>14}")
    total_here = total_scaled = 0
    for name, sql in statements().items():
        used = {t.removeprefix("v_"): cols for t, cols in reads(sql, schema).items()}
        here, there = billed(used, sizes), billed(used, scaled)
        total_here, total_scaled = total_here + here, total_scaled + there
        described = ", ".join(f"{t}({len(c)})" for t, c in sorted(used.items()))
        print(f"{name:<28}{described:<58}{here / 2**20:>11,.1f} MB{there / 2**30:>11,.1f} GiB")
    cost = total_scaled / TIB * args.usd_per_tib
    print(f"\nper delivery: {total_here / 2**20:,.1f} MB here; at {args.scale_to:,} raw rows"
          f" {total_scaled / 2**30:,.1f} GiB = {total_scaled / TIB:.3f} TiB -> ${cost:,.2f}"
          f" at ${args.usd_per_tib}/TiB on demand (before the free TiB per month)")  # fmt: skip
    if args.dry_run_endpoint:
        dry_run(args.dry_run_endpoint)


def dry_run(endpoint: str) -> None:
    """What bqemulator answers to a dry run of each engine query (it has no cost model: 0)."""
    settings = Settings(bq_project="test-project", bq_endpoint=endpoint)
    client = bq.make_client(settings)
    run = bq_engine.RunTables("test-project", DATASET, "dryrun")
    for step in bq_engine.SQL_STEPS:
        job = bq.run_query(
            client, bq_engine.step_sql(step, run), bq_engine.query_parameters(), settings, dry_run=True
        )
        print(f"dry run on {endpoint}: {step}: totalBytesProcessed={job.total_bytes_processed}")


if __name__ == "__main__":
    main()
