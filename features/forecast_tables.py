"""The planner tables (``forecasts``, ``realized``) beside the feature store, selected like it.

``local`` (``TAMALES_FEATURE_STORE=local``): one parquet file per table next to the feature store's file;
``publish`` takes an exclusive file lock, reads the table, replaces the rows whose keys the new frame carries,
and swaps the new file in atomically (write, then rename). ``bigquery``: ``products_feature_store.forecasts``
and ``.realized`` (names from settings); ``publish`` loads the frame into a staging table (the BigQuery
engine's staging dataset, expiring) and MERGEs it on the table's keys, so a re-run of the same model and data
version updates its rows instead of appending duplicates. Reads are parameterized queries.

Any failure to reach, read or write the store raises ``ForecastTablesUnavailable``. A table never published
reads as empty.
"""

from __future__ import annotations

import fcntl
import io
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, cast

import polars as pl
import pyarrow.parquet as pq

from features import bq, storage
from features.forecast_schema import (
    FORECASTS,
    KEYS,
    SCHEMAS,
    SORT,
    bigquery_schema,
    check_table,
    conform,
    empty,
)
from features.settings import Settings, get_settings

_WRITE_TIMEOUT_SECONDS = 300.0
_READ_TIMEOUT_SECONDS = 60.0
_DDL_DEADLINE_SECONDS = 15.0  # dataset/table creation and staging clean-up, retries included


class ForecastTablesUnavailable(RuntimeError):
    """The planner tables cannot be reached, read or written."""


def _check_productid(productid: str | None) -> None:
    if productid is not None and not isinstance(productid, str):
        raise TypeError(f"productid must be a str, not {type(productid).__name__}")


def newest_per_product(frame: pl.DataFrame) -> pl.DataFrame:
    """Each product's forecast from its most recently published run (ties: greatest forecast month)."""
    ordered = frame.sort(["productid", "published_at", "forecast_month"], descending=[False, True, True])
    return ordered.unique("productid", keep="first", maintain_order=True)


class ForecastTables(ABC):
    """Publish and read the planner tables."""

    @abstractmethod
    def publish(self, table: str, frame: pl.DataFrame) -> int:
        """Upsert ``frame``'s rows into ``table`` on its keys (idempotent); the number of rows published."""

    @abstractmethod
    def read(self, table: str, productid: str | None = None) -> pl.DataFrame:
        """``table`` (only ``productid``'s rows when given), conformed and sorted; empty if never published."""

    def latest_forecasts(self) -> pl.DataFrame:
        """Each product's newest published forecast (one row per product, sorted by productid)."""
        return newest_per_product(self.read(FORECASTS))


def _prepare(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Conformed rows, one per key (the last wins)."""
    out = conform(table, frame)
    return out.unique(list(KEYS[table]), keep="last", maintain_order=True).sort(list(SORT[table]))


class LocalForecastTables(ForecastTables):
    """Parquet files beside the embedded feature store."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def path(self, table: str) -> Path:
        """The parquet file of ``table``."""
        name = self.settings.bq_forecasts_table if table == FORECASTS else self.settings.bq_realized_table
        return self.settings.local_table_path(name)

    @contextmanager
    def _locked(self, table: str) -> Iterator[None]:
        lock = self.path(table).with_suffix(".lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _read_file(self, table: str) -> pl.DataFrame:
        path = self.path(table)
        if not path.is_file():
            return empty(table)
        try:
            return conform(table, pl.read_parquet(path))
        except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
            raise ForecastTablesUnavailable(f"cannot read {path}: {exc}") from exc
        except pl.exceptions.PanicException as exc:  # a BaseException: corrupt files can make polars panic
            raise ForecastTablesUnavailable(f"cannot read {path} (corrupt?)") from exc

    def publish(self, table: str, frame: pl.DataFrame) -> int:
        new = _prepare(check_table(table), frame)
        keys = list(KEYS[table])
        with self._locked(table):
            kept = self._read_file(table).join(new.select(keys), on=keys, how="anti", nulls_equal=True)
            merged = pl.concat([kept, new]).sort(list(SORT[table]))
            buffer = io.BytesIO()
            pq.write_table(merged.to_arrow(), buffer, compression="zstd")
            try:
                storage.write_bytes_atomic(str(self.path(table)), buffer.getvalue())
            except OSError as exc:
                raise ForecastTablesUnavailable(f"cannot write {self.path(table)}: {exc}") from exc
        return new.height

    def read(self, table: str, productid: str | None = None) -> pl.DataFrame:
        _check_productid(productid)
        frame = self._read_file(check_table(table))
        if productid is not None:
            frame = frame.filter(pl.col("productid") == pl.lit(productid))
        return frame.sort(list(SORT[table]))


class BigQueryForecastTables(ForecastTables):
    """``<project>.<bq_dataset>.<bq_forecasts_table | bq_realized_table>`` through the official client."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None

    def _reaching(self, what: str) -> AbstractContextManager[None]:
        return bq.reaching(what, ForecastTablesUnavailable)

    def client(self) -> Any:
        """The (lazily created) ``google.cloud.bigquery.Client``."""
        if self._client is None:
            with self._reaching("client creation"):
                self._client = bq.make_client(self.settings)
        return self._client

    @property
    def project(self) -> str:
        """The configured project, else the client's (ADC)."""
        return self.settings.bq_project or self.client().project

    def table_id(self, table: str) -> str:
        """The checked ``project.dataset.table`` of ``table``."""
        name = self.settings.bq_forecasts_table if table == FORECASTS else self.settings.bq_realized_table
        return bq.table_id(self.project, self.settings.bq_dataset, name)

    def _retry(self, deadline: float) -> Any:
        from google.cloud.bigquery.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_timeout(deadline)

    def _ensure_dataset(self, dataset: str, expiration_hours: float | None = None) -> None:
        from google.cloud import bigquery

        ds = bigquery.Dataset(f"{self.project}.{bq.check_name('dataset', dataset)}")
        if self.settings.bq_location:
            ds.location = self.settings.bq_location
        if expiration_hours is not None:
            ds.default_table_expiration_ms = int(expiration_hours * 3_600_000)
        self.client().create_dataset(ds, exists_ok=True, retry=self._retry(_DDL_DEADLINE_SECONDS), timeout=30)

    def _ensure_table(self, table: str) -> str:
        from google.cloud import bigquery

        self._ensure_dataset(self.settings.bq_dataset)
        target = self.table_id(table)
        fields = [bigquery.SchemaField(name, kind) for name, kind in bigquery_schema(table)]
        table_ref = bigquery.Table(target, schema=fields)
        self.client().create_table(
            table_ref, exists_ok=True, retry=self._retry(_DDL_DEADLINE_SECONDS), timeout=30
        )
        return target

    def _merge_sql(self, table: str, target: str, stage: str) -> str:
        columns = list(SCHEMAS[table])
        on = " AND ".join(f"T.{k} = S.{k}" for k in KEYS[table])
        updates = ", ".join(f"{c} = S.{c}" for c in columns if c not in KEYS[table])
        names = ", ".join(columns)
        values = ", ".join(f"S.{c}" for c in columns)
        return (
            f"MERGE `{target}` T USING `{stage}` S ON {on} "
            f"WHEN MATCHED THEN UPDATE SET {updates} "
            f"WHEN NOT MATCHED THEN INSERT ({names}) VALUES ({values})"
        )

    def publish(self, table: str, frame: pl.DataFrame) -> int:
        from google.cloud import bigquery

        new = _prepare(check_table(table), frame)
        if new.is_empty():
            return 0
        with self._reaching(f"publish to {table}"):
            target = self._ensure_table(table)
            client = self.client()
            staging = self.settings.bq_staging_dataset
            hours = self.settings.bq_staging_expiration_hours
            self._ensure_dataset(staging, expiration_hours=hours)
            stage = bq.table_id(self.project, staging, f"{table}_publish_{uuid.uuid4().hex}")
            buffer = io.BytesIO()
            pq.write_table(new.to_arrow(), buffer)
            buffer.seek(0)
            config = bigquery.LoadJobConfig(
                source_format=bigquery.SourceFormat.PARQUET,
                write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
                schema=[bigquery.SchemaField(name, kind) for name, kind in bigquery_schema(table)],
            )
            job = client.load_table_from_file(buffer, stage, job_config=config, timeout=60)
            job.result(timeout=_WRITE_TIMEOUT_SECONDS)
            try:
                bq.run_query(client, self._merge_sql(table, target, stage), [], self.settings)
            finally:
                client.delete_table(
                    stage, not_found_ok=True, retry=self._retry(_DDL_DEADLINE_SECONDS), timeout=30
                )
        return new.height

    def read(self, table: str, productid: str | None = None) -> pl.DataFrame:
        from google.api_core.exceptions import NotFound
        from google.cloud import bigquery

        _check_productid(productid)
        target = self.table_id(check_table(table))
        where, params = "", []
        if productid is not None:
            where = "WHERE productid = @productid"
            params = [bigquery.ScalarQueryParameter("productid", "STRING", productid)]
        sql = f"SELECT * FROM `{target}` {where}"
        with self._reaching(f"read of {table}"):
            try:
                timeout = self.settings.bq_timeout_seconds
                job = self.client().query(
                    sql,
                    job_config=bigquery.QueryJobConfig(query_parameters=params),
                    timeout=timeout,
                    retry=self._retry(timeout),
                    job_retry=None,
                )
                rows = job.result(timeout=_READ_TIMEOUT_SECONDS, retry=self._retry(_READ_TIMEOUT_SECONDS))
                arrow = rows.to_arrow(create_bqstorage_client=False)
            except NotFound:
                return empty(table)
        frame = cast(pl.DataFrame, pl.from_arrow(arrow))
        if frame.is_empty():
            return empty(table)
        return conform(table, frame).sort(list(SORT[table]))


def get_forecast_tables(settings: Settings | None = None) -> ForecastTables:
    """The planner tables of the store selected by ``settings.feature_store`` (local or bigquery)."""
    settings = settings or get_settings()
    if settings.feature_store == "bigquery":
        return BigQueryForecastTables(settings)
    return LocalForecastTables(settings)
