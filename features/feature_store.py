"""The feature store: one interface, two backends (``settings.feature_store``).

``local``: a parquet file under the state dir (the embedded default). ``bigquery``: the table
``<project>.<bq_dataset>.<bq_table>`` through the official client. Both store exactly
``schema.FEATURE_STORE_SCHEMA``, replace the whole table on ``write`` (atomically) and answer "the latest row
of a product" = its row with the greatest ``year_month`` (ties between sources broken by source name).
Any failure to reach or read the store raises ``FeatureStoreUnavailable`` (the service answers 503 on it), a
corrupt local file that makes polars panic included.
"""

from __future__ import annotations

import io
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, cast

import polars as pl
import pyarrow.parquet as pq

from features import bq, storage
from features.schema import KEY_COLUMNS, bigquery_schema, conform
from features.settings import Settings, get_settings

Row = dict[str, Any]
# What ``history`` returns: a product's monthly totals (the page's chart), per source.
HISTORY_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "year_month": pl.Date(),
    "total_sales": pl.Float64(),
}
_WRITE_TIMEOUT_SECONDS = 300.0  # a load job of the whole table (the features flow retries on top)
_BULK_QUERY_WAIT_SECONDS = 60.0  # a full-table read may run longer than a point query once connected


class FeatureStoreUnavailable(RuntimeError):
    """The feature store cannot be reached, or holds no feature table yet."""


def _latest(frame: pl.DataFrame) -> pl.DataFrame:
    """Each product's row with the greatest ``year_month`` (ties: first source by name)."""
    ordered = frame.sort(["id_product", "year_month", "source"], descending=[False, True, False])
    return ordered.unique("id_product", keep="first", maintain_order=True)


def _history(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` as ``HISTORY_SCHEMA`` rows, ordered by (source, year_month)."""
    return frame.select(pl.col(n).cast(t) for n, t in HISTORY_SCHEMA.items()).sort(["source", "year_month"])


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(frame.to_arrow(), buffer, compression="zstd")
    return buffer.getvalue()


def _check_id(id_product: str) -> None:
    if not isinstance(id_product, str):
        raise TypeError(f"id_product must be a str, not {type(id_product).__name__}")


class FeatureStore(ABC):
    """Latest-features lookup for serving, full-table replace for the features flow."""

    @abstractmethod
    def write(self, df: pl.DataFrame) -> int:
        """Replace the whole table with ``conform(df)`` atomically; the number of rows written."""

    @abstractmethod
    def read_all(self) -> pl.DataFrame:
        """The whole table, conformed to the schema, sorted by (source, id_product, year_month)."""

    @abstractmethod
    def latest_rows(self) -> dict[str, Row]:
        """id_product -> its latest row as a plain dict (python types)."""

    @abstractmethod
    def latest_row(self, id_product: str) -> Row | None:
        """The latest row of one product, or None if the store does not know it."""

    @abstractmethod
    def history(self, id_product: str) -> pl.DataFrame:
        """Every month of one product (``HISTORY_SCHEMA``, all sources); empty if the store does not know it."""

    @abstractmethod
    def ping(self) -> None:
        """Raise ``FeatureStoreUnavailable`` unless the store answers and holds a feature table."""


class LocalFeatureStore(FeatureStore):
    """A parquet file, replaced atomically (``storage.write_bytes_atomic``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _require(self) -> None:
        if not self.path.is_file():
            raise FeatureStoreUnavailable(f"no feature table at {self.path}: run the features flow")

    @contextmanager
    def _reading(self) -> Iterator[None]:
        self._require()
        try:
            yield
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise FeatureStoreUnavailable(f"cannot read {self.path}: {exc}") from exc
        except pl.exceptions.PanicException as exc:  # a BaseException: some corrupt files make polars panic
            reason = str(exc).splitlines()[0][:200] if str(exc) else ""
            raise FeatureStoreUnavailable(
                f"cannot read {self.path} (corrupt?): polars panicked: {reason}"
            ) from exc

    def write(self, df: pl.DataFrame) -> int:
        frame = conform(df).sort(KEY_COLUMNS)
        storage.write_bytes_atomic(str(self.path), _parquet_bytes(frame))
        return frame.height

    def read_all(self) -> pl.DataFrame:
        with self._reading():
            return conform(pl.read_parquet(self.path)).sort(KEY_COLUMNS)

    def latest_rows(self) -> dict[str, Row]:
        return {row["id_product"]: row for row in _latest(self.read_all()).to_dicts()}

    def latest_row(self, id_product: str) -> Row | None:
        _check_id(id_product)
        with self._reading():
            frame = pl.scan_parquet(self.path).filter(pl.col("id_product") == pl.lit(id_product)).collect()
        rows = _latest(conform(frame)).to_dicts()
        return rows[0] if rows else None

    def history(self, id_product: str) -> pl.DataFrame:
        _check_id(id_product)
        with self._reading():
            rows = (
                pl.scan_parquet(self.path)
                .filter(pl.col("id_product") == pl.lit(id_product))
                .select(list(HISTORY_SCHEMA))
                .collect()
            )
        return _history(rows)

    def ping(self) -> None:
        with self._reading():
            pq.read_schema(self.path)


class BigQueryFeatureStore(FeatureStore):
    """The BigQuery table ``settings.bq_dataset.bq_table`` (project: ``settings.bq_project`` or ADC's)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._lock = threading.Lock()

    def _reaching(self, what: str) -> AbstractContextManager[None]:
        """Turn any failure to talk to BigQuery into ``FeatureStoreUnavailable``."""
        return bq.reaching(what, FeatureStoreUnavailable)

    def client(self) -> Any:
        """The (lazily created, shared) ``google.cloud.bigquery.Client``."""
        with self._lock:
            if self._client is None:
                with self._reaching("client creation"):
                    self._client = bq.make_client(self.settings)
            return self._client

    @property
    def table_id(self) -> str:
        """``project.dataset.table`` (the project resolved by the client when not configured)."""
        project = self.settings.bq_project or self.client().project
        return f"{project}.{self.settings.bq_dataset}.{self.settings.bq_table}"

    def _retry(self, deadline: float | None = None) -> Any:
        from google.cloud.bigquery.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_timeout(deadline or self.settings.bq_timeout_seconds)

    def _query(self, sql: str, params: list[Any] | None = None, wait: float | None = None) -> pl.DataFrame:
        """Run a (parameterized) query and return its rows conformed to the schema."""
        return conform(self._rows(sql, params, wait))

    def _rows(self, sql: str, params: list[Any] | None = None, wait: float | None = None) -> pl.DataFrame:
        """Run a (parameterized) query and return its rows as they come."""
        from google.cloud import bigquery

        timeout = self.settings.bq_timeout_seconds
        with self._reaching("query"):
            rows = self.client().query_and_wait(
                sql,
                job_config=bigquery.QueryJobConfig(query_parameters=params or []),
                retry=self._retry(),
                job_retry=None,  # the default re-runs failed query jobs for up to 20 minutes
                api_timeout=timeout,
                wait_timeout=wait or timeout,
            )
            table = rows.to_arrow(create_bqstorage_client=False)
        return cast(pl.DataFrame, pl.from_arrow(table))

    def _latest_sql(self, where: str = "") -> str:
        return (
            f"SELECT * FROM `{self.table_id}` {where} "
            "QUALIFY ROW_NUMBER() OVER (PARTITION BY id_product ORDER BY year_month DESC, source) = 1"
        )

    def write(self, df: pl.DataFrame) -> int:
        from google.cloud import bigquery

        frame = conform(df).sort(KEY_COLUMNS)
        client = self.client()
        with self._reaching("write"):
            dataset = bigquery.Dataset(f"{self.table_id.rsplit('.', 1)[0]}")
            if self.settings.bq_location:
                dataset.location = self.settings.bq_location
            client.create_dataset(dataset, exists_ok=True, retry=self._retry(60), timeout=60)
            job_config = bigquery.LoadJobConfig(
                source_format=bigquery.SourceFormat.PARQUET,
                write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
                schema=[bigquery.SchemaField(name, kind) for name, kind in bigquery_schema()],
            )
            job = client.load_table_from_file(
                io.BytesIO(_parquet_bytes(frame)), self.table_id, job_config=job_config, timeout=60
            )
            job.result(timeout=_WRITE_TIMEOUT_SECONDS)
        return frame.height

    def read_all(self) -> pl.DataFrame:
        return self._query(f"SELECT * FROM `{self.table_id}`", wait=_BULK_QUERY_WAIT_SECONDS).sort(
            KEY_COLUMNS
        )

    def latest_rows(self) -> dict[str, Row]:
        frame = self._query(self._latest_sql(), wait=_BULK_QUERY_WAIT_SECONDS).sort("id_product")
        return {row["id_product"]: row for row in frame.to_dicts()}

    def latest_row(self, id_product: str) -> Row | None:
        from google.cloud import bigquery

        _check_id(id_product)
        param = bigquery.ScalarQueryParameter("id_product", "STRING", id_product)
        rows = self._query(self._latest_sql("WHERE id_product = @id_product"), [param]).to_dicts()
        return rows[0] if rows else None

    def history(self, id_product: str) -> pl.DataFrame:
        from google.cloud import bigquery

        _check_id(id_product)
        param = bigquery.ScalarQueryParameter("id_product", "STRING", id_product)
        columns = ", ".join(HISTORY_SCHEMA)
        sql = f"SELECT {columns} FROM `{self.table_id}` WHERE id_product = @id_product"
        return _history(self._rows(sql, [param]))

    def ping(self) -> None:
        with self._reaching("ping"):
            self.client().get_table(
                self.table_id, retry=self._retry(), timeout=self.settings.bq_timeout_seconds
            )


def get_feature_store(settings: Settings | None = None) -> FeatureStore:
    """The feature store selected by ``settings.feature_store``."""
    settings = settings or get_settings()
    if settings.feature_store == "bigquery":
        return BigQueryFeatureStore(settings)
    return LocalFeatureStore(settings.local_feature_store_path)
