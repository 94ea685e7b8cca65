"""The one typed place for configuration (env prefix ``TAMALES_``).

Every path, bucket, table and endpoint the project touches is read from here; nothing else in the code base
hard-codes them. Defaults are the embedded, machine-local stand-ins so that a fresh checkout runs offline.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from features.calendar import Calendar


class Settings(BaseSettings):
    """Runtime settings; each field ``foo`` is read from ``TAMALES_FOO``."""

    model_config = SettingsConfigDict(env_prefix="TAMALES_", extra="ignore")

    raw_url: str = Field(
        "data/lake/opi_raw_data", description="Raw bucket: local folder or gs://opi_raw_data"
    )
    processed_url: str = Field(
        "data/lake/opi_processed_data",
        description="Processed bucket: local folder or gs://opi_processed_data",
    )
    source_url: str | None = Field(
        None,
        description="Where deliveries land (folder or gs:// URL) for the pipeline to ingest; unset: skip ingest",
    )
    feature_store: Literal["local", "bigquery"] = Field("local", description="Feature store backend")
    feature_engine: Literal["polars", "bigquery"] = Field(
        "polars",
        description="Where raw rows are cleaned and netted into monthly totals: polars on the worker (embedded"
        " default) or BigQuery (the scale-out engine; SQL under features/sql/)",
    )
    bq_project: str | None = Field(
        None, description="GCP project of the BigQuery feature store (ADC default)"
    )
    bq_dataset: str = Field("products_feature_store", description="BigQuery dataset of the feature store")
    bq_table: str = Field("features", description="BigQuery table of the feature store")
    bq_forecasts_table: str = Field(
        "forecasts", description="Table of published batch forecasts, beside the feature table"
    )
    bq_realized_table: str = Field(
        "realized", description="Table of realized accuracy (forecasts joined to later actuals)"
    )
    realized_wape_alert_factor: float = Field(
        1.5,
        gt=0,
        description="Realized WAPE above this factor times the model's backtest WAPE logs a WARNING and tags"
        " the MLflow and Prefect runs 'realized_wape_alert'",
    )
    bq_location: str | None = Field(None, description="BigQuery location (e.g. US); client default if unset")
    bq_endpoint: str | None = Field(None, description="BigQuery API endpoint override (emulators only)")
    bq_timeout_seconds: float = Field(
        5.0, gt=0, description="Deadline of a feature-store read (retries included): unreachable fails fast"
    )
    bq_staging_dataset: str = Field(
        "tamales_staging",
        description="BigQuery dataset of the BigQuery engine's staging and result tables (same project)",
    )
    bq_staging_expiration_hours: float = Field(
        48.0, gt=0, description="Staging and result tables expire this long after they were last written"
    )
    bq_job_timeout_seconds: float = Field(
        1800.0, gt=0, description="Deadline of one BigQuery load or query job of the BigQuery engine"
    )
    gcs_endpoint: str | None = Field(None, description="GCS endpoint override (emulators only)")
    gcs_project: str | None = Field(None, description="GCP project for GCS (ADC default)")
    gcs_anonymous: bool = Field(False, description="Use anonymous GCS credentials (emulators only)")
    state_dir: Path = Field(
        Path(".tamales"), description="Local state: feature store, MLflow, Prefect, bentos"
    )
    model_name: str = Field("tamales-sales-forecaster", description="MLflow registered model name")
    mlflow_experiment: str = Field("tamales-sales-forecaster", description="MLflow experiment name")
    test_months: int = Field(3, ge=1, description="Last N target months of each source form the test set")
    backtest_origins: int = Field(
        6, ge=2, description="Rolling-origin backtest: the last N target months of each source, refit at each"
    )
    calendar_erp: Calendar = Field("month", description="Reporting calendar of the ERP (month, 4-4-5, ...)")
    calendar_teinvento: Calendar = Field(
        "4-4-5", description="Reporting calendar of the market vendor: retail quarters of 4-4-5 weeks"
    )
    min_row_share: float = Field(
        0.9,
        ge=0,
        le=1,
        description="A delivery whose region/table has fewer rows than this share of the previous delivery's"
        " is incomplete (not published without allow_incomplete); 0 disables the comparison",
    )
    feature_cache_ttl_seconds: float = Field(600.0, gt=0, description="Service feature cache refresh period")
    feature_snapshot_max_age_seconds: float = Field(
        1800.0,
        gt=0,
        description="Readiness limit: /readyz answers 503 once the service's feature snapshot is older than this "
        "(its refreshes keep failing); must exceed feature_cache_ttl_seconds",
    )
    feature_miss_queries_per_second: float = Field(
        5.0,
        gt=0,
        description="Per server worker: point queries per second (burst: one second's worth, at least 1) for ids "
        "missing from a snapshot that is not fresh; misses beyond it answer 503 without a query",
    )
    ui_history_queries_per_second: float = Field(
        2.0,
        gt=0,
        description="Per server worker: feature-store queries per second (burst: one second's worth, at least 1) "
        "for the history behind the planners' page (/ui); a chart beyond it shows 'retry later' without a query",
    )
    http_header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="A connection that has not sent a complete request head this long after it opened (or after "
        "its previous response) is closed: idle and slowloris connections do not pile up",
    )

    @model_validator(mode="after")
    def _snapshot_age_exceeds_ttl(self) -> Settings:
        if self.feature_snapshot_max_age_seconds <= self.feature_cache_ttl_seconds:
            raise ValueError(
                "TAMALES_FEATURE_SNAPSHOT_MAX_AGE_SECONDS must exceed TAMALES_FEATURE_CACHE_TTL_SECONDS "
                f"({self.feature_snapshot_max_age_seconds} <= {self.feature_cache_ttl_seconds}): "
                "a snapshot refreshed on time would be reported as not ready"
            )
        return self

    @property
    def calendars(self) -> dict[str, Calendar]:
        """Reporting calendar of each source (``features.calendar``)."""
        return {"erp": self.calendar_erp, "teinvento": self.calendar_teinvento}

    @property
    def local_feature_store_path(self) -> Path:
        """Parquet file that backs the embedded feature store."""
        return self.state_dir.resolve() / "feature_store" / f"{self.bq_dataset}.{self.bq_table}.parquet"

    def local_table_path(self, table: str) -> Path:
        """Parquet file of a table kept beside the embedded feature store (forecasts, realized)."""
        return self.local_feature_store_path.with_name(f"{self.bq_dataset}.{table}.parquet")

    @property
    def mlflow_tracking_uri(self) -> str:
        """``MLFLOW_TRACKING_URI`` if set, else SQLite under the state dir (the embedded default)."""
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if uri:
            return uri
        return f"sqlite:///{self.state_dir.resolve() / 'mlflow' / 'mlflow.db'}"

    @property
    def mlflow_artifact_root(self) -> str:
        """Artifact root for experiments created on the embedded store."""
        return (self.state_dir.resolve() / "mlflow" / "artifacts").as_uri()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings (cached; call ``get_settings.cache_clear()`` after changing the environment)."""
    return Settings()
