"""The BigQuery feature engine: raw deliveries cleaned, netted and totalled inside BigQuery.

``TAMALES_FEATURE_ENGINE=bigquery`` sends the raw-row-heavy half of the features flow here; the worker gets
back the national monthly totals (one row per source, product and month: small whatever the raw volume)
and the rule counts, and builds features, splits and the feature store from them with the same polars code
as the polars engine (``features.dataset.build_dataset``).

Steps, all in the staging dataset (``TAMALES_BQ_STAGING_DATASET``, tables expire after
``TAMALES_BQ_STAGING_EXPIRATION_HOURS``):
1. each raw table of the chosen deliveries is loaded into ``<run>_<table>`` (``features.bq_load``: load jobs
   from the ``gs://`` URIs on GCP), every column a STRING;
2. ``features/sql/series.sql``, ``monthly_totals.sql`` and ``rule_counts.sql`` build ``<run>_series``,
   ``<run>_totals`` and ``<run>_counts`` (each ``CREATE OR REPLACE``: atomic);
3. the worker reads the totals and counts tables (``tabledata.list``: no query cost) and checks that each
   staging table held exactly the rows ingest validated (the manifests' row counts).

``<run>`` is the data version plus a hash of the SQL files, so a re-run with the same inputs and SQL reuses
the result tables (the counts table is written last: its presence means the run completed), and runs of
different inputs never share a table.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import polars as pl

from features import bq, bq_load, storage
from features.clean import ERP_PRODUCER, MICROS, RESIDUE_ABS, UNKNOWN_REGION, CleaningCounts
from features.raw_layout import ERP_REGION_FOLDERS, MAX_ABS_SALES, MONTHS, TABLES, TableKind
from features.schema import SOURCE_ERP, SOURCE_TEINVENTO, SOURCES
from features.settings import Settings

SQL_STEPS = ("series", "monthly_totals", "rule_counts")
RESULTS = ("series", "totals", "counts")
STAGED_PREFIX = "staged."
# The columns of features.clean.monthly_totals, in its order.
TOTALS_COLUMNS: tuple[str, ...] = ("source", "id_product", "year_month", "total_sales", "calorie_category")
TOTALS_COLUMNS += ("product_name", "producer", "unknown_key")

Progress = Callable[[str], None]


class StagingMismatch(RuntimeError):
    """A staging table does not hold the rows ingest validated (a load went wrong); the run is not reused."""


def sql_digest() -> str:
    """Hash of the engine's SQL files: a change of SQL gives new result tables, never stale ones."""
    digest = hashlib.sha256()
    for name in SQL_STEPS:
        digest.update(bq.sql_text(name).encode())
    return digest.hexdigest()[:8]


@dataclass(frozen=True)
class RunTables:
    """The staging and result tables of one data version (``<project>.<staging dataset>.<run>_<name>``)."""

    project: str
    dataset: str
    run: str

    @classmethod
    def for_version(cls, version: str, project: str, settings: Settings) -> RunTables:
        """The tables of ``version`` (letters, digits and ``_`` only: a valid table name prefix)."""
        run = "v" + re.sub(r"[^0-9A-Za-z]", "_", version) + "_" + sql_digest()
        return cls(project, settings.bq_staging_dataset, run)

    def table(self, name: str) -> str:
        """Checked id of the run's table ``name``."""
        return bq.table_id(self.project, self.dataset, f"{self.run}_{name}")

    def placeholders(self) -> dict[str, str]:
        """Every table the SQL files name, by placeholder."""
        return {name: self.table(name) for name in (*TABLES, *RESULTS)}


def query_parameters() -> list[Any]:
    """The constants of ``features.clean`` and ``features.raw_layout`` the SQL uses, as query parameters."""
    from google.cloud.bigquery import ArrayQueryParameter as Array
    from google.cloud.bigquery import ScalarQueryParameter as Scalar

    return [
        Scalar("micros", "INT64", MICROS),
        Scalar("micro_unit", "FLOAT64", 1 / MICROS),
        Scalar("residue", "FLOAT64", RESIDUE_ABS),
        Scalar("max_abs_sales", "FLOAT64", MAX_ABS_SALES),
        Array("months", "STRING", list(MONTHS)),
        Array("erp_regions", "STRING", list(ERP_REGION_FOLDERS.values())),
        Array("sources", "STRING", list(SOURCES)),
        Scalar("erp_source", "STRING", SOURCE_ERP),
        Scalar("tei_source", "STRING", SOURCE_TEINVENTO),
        Scalar("erp_producer", "STRING", ERP_PRODUCER),
        Scalar("unknown_region", "STRING", UNKNOWN_REGION),
        Scalar("product_header", "STRING", TABLES["tei_product"].header_first_column),
        Scalar("region_header", "STRING", TABLES["tei_region"].header_first_column),
    ]


def step_sql(step: str, tables: RunTables) -> str:
    """The rendered SQL of one step (only the tables it names)."""
    names = tables.placeholders()
    used = set(re.findall(r"`\{([a-z_]+)\}`", bq.sql_text(step)))
    return bq.render(step, {name: names[name] for name in used})


def raw_urls(inputs: Any, settings: Settings) -> dict[TableKind, list[str]]:
    """The raw-bucket URL of every valid file of the chosen deliveries, per raw table."""
    urls: dict[TableKind, list[str]] = {kind: [] for kind in TABLES}
    for source in SOURCES:
        for relpath, entry in sorted(inputs.manifests[source].files.items()):
            urls[entry.kind].append(storage.join(settings.raw_url, relpath))
    return urls


def expected_rows(inputs: Any) -> dict[TableKind, int | None]:
    """Rows ingest validated per raw table (None when a manifest predates row counts)."""
    out: dict[TableKind, int | None] = dict.fromkeys(TABLES, 0)
    for source in SOURCES:
        for entry in inputs.manifests[source].files.values():
            if entry.rows is None or out[entry.kind] is None:
                out[entry.kind] = None
            else:
                out[entry.kind] += entry.rows
    return out


def _stage(client: Any, inputs: Any, tables: RunTables, settings: Settings, progress: Progress) -> None:
    """Load every raw table of ``inputs`` into its staging table (an empty table when it has no file)."""
    from google.cloud import bigquery

    for kind, urls in raw_urls(inputs, settings).items():
        target, columns = tables.table(kind), TABLES[kind].columns
        if urls:
            bq_load.load_csv(client, settings, urls, target, columns)
        else:
            client.delete_table(target, not_found_ok=True)
            schema = [bigquery.SchemaField(name, "STRING") for name in columns]
            client.create_table(bigquery.Table(target, schema=schema))
        bq.extend_expiration(client, target, settings.bq_staging_expiration_hours)
        progress(f"bigquery: staged {kind} from {len(urls)} files")


def _read(client: Any, table: str) -> pl.DataFrame:
    """A whole (small) result table as a polars frame, through ``tabledata.list`` (no query cost)."""
    import pyarrow as pa

    arrow = client.list_rows(table).to_arrow(create_bqstorage_client=False)
    decimals = [f.name for f in arrow.schema if pa.types.is_decimal(f.type)]
    frame = cast(pl.DataFrame, pl.from_arrow(arrow.drop_columns(decimals)))
    # BIGNUMERIC micro-units are exact integers that may exceed int64: converted through Python ints.
    return frame.with_columns(
        pl.Series(name, [None if v is None else int(v) for v in arrow.column(name).to_pylist()], pl.Int128)
        for name in decimals
    )


def _check_staged(counts: dict[str, int], inputs: Any) -> None:
    for kind, rows in expected_rows(inputs).items():
        staged = counts.get(f"{STAGED_PREFIX}{kind}")
        if rows is not None and staged != rows:
            raise StagingMismatch(f"staging table {kind} holds {staged} rows, ingest validated {rows}")


def monthly_totals(
    inputs: Any, settings: Settings, progress: Progress | None = None, *, keep_micros: bool = False
) -> tuple[pl.DataFrame, CleaningCounts]:
    """National monthly totals and rule counts of ``inputs`` (``features.dataset.Inputs``), built in BigQuery.

    The frame has the columns and order of ``features.clean.monthly_totals`` (plus ``total_micros``, the
    exact netted total as Int128, with ``keep_micros``).
    """
    progress = progress or (lambda message: None)
    client = bq.make_client(settings)
    project = settings.bq_project or client.project
    tables = RunTables.for_version(inputs.version, project, settings)
    bq.ensure_dataset(client, project, tables.dataset, settings, settings.bq_staging_expiration_hours)
    params, labels = query_parameters(), {"data_version": inputs.version.lower()[:63]}
    if bq.table_exists(client, tables.table("counts")):
        progress(f"bigquery: reusing the result tables of run {tables.run}")
    else:
        _stage(client, inputs, tables, settings, progress)
        for step, result in zip(SQL_STEPS, RESULTS, strict=True):
            bq.run_query(client, step_sql(step, tables), params, settings, labels=labels)
            bq.extend_expiration(client, tables.table(result), settings.bq_staging_expiration_hours)
            progress(f"bigquery: built {tables.table(result)}")
    rows = _read(client, tables.table("counts")).sort("rule").rows()
    counts = {rule: int(n) for rule, n in rows}
    try:
        _check_staged(counts, inputs)
    except StagingMismatch:
        client.delete_table(tables.table("counts"), not_found_ok=True)  # a retry rebuilds the run
        raise
    cleaning = CleaningCounts()
    for rule, n in counts.items():
        if not rule.startswith(STAGED_PREFIX):
            cleaning.add(rule, n)
    totals = _read(client, tables.table("totals"))
    columns = [*TOTALS_COLUMNS, *(["total_micros"] if keep_micros else [])]
    totals = totals.select(columns)
    return totals.sort(["source", "id_product", "year_month"]), cleaning
