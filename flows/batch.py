"""Batch forecasts: every product of the feature store scored with the champion, exactly as the service does.

The service answers a product with its latest feature-store row (``FeatureStore.latest_rows``), encoded by
``features.schema.encode_row`` with the model's own feature list, scored by
``training.forecast.predict_quantiles`` and shaped by ``service.contract.prediction_body`` (rounded to 3
decimals). ``score_rows`` runs that same chain on every product at once (as ``/predict_batch`` does), so the
published table equals the API's answers for the same model and features.

``publish_forecasts`` writes the table twice, both idempotent for a (model version, data version):
``<processed bucket>/<data_version>/forecasts/forecasts.parquet`` (published as a directory, ``_SUCCESS``
last) and the ``forecasts`` table beside the feature store (``features.forecast_tables``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import xgboost as xgb

from features import processed, storage
from features.feature_store import get_feature_store
from features.forecast_schema import FORECAST_SCHEMA, FORECASTS, conform
from features.forecast_tables import get_forecast_tables
from features.schema import encode_row
from features.settings import Settings, get_settings
from service import contract
from training import gate, tracking
from training.forecast import ModelSpec, predict_quantiles, spec_of

FORECASTS_DIR = "forecasts"
FORECASTS_FILE = "forecasts.parquet"


@dataclass(frozen=True)
class Forecaster:
    """A registered model version ready to score, with what its forecasts are labelled with."""

    booster: xgb.Booster
    spec: ModelSpec
    model_name: str
    model_version: str
    run_id: str


class NoModelError(LookupError):
    """No model version carries the alias to forecast with."""


def load_forecaster(alias: str = gate.CHAMPION, settings: Settings | None = None) -> Forecaster:
    """The model version behind ``@alias`` (default ``@champion``), loaded from the MLflow registry."""
    settings = settings or get_settings()
    client = tracking.client(settings)
    version = tracking.alias_version(client, settings.model_name, alias)
    if version is None:
        raise NoModelError(
            f"no version of {settings.model_name!r} has alias @{alias}: nothing to forecast with"
        )
    booster = tracking.load_booster(f"models:/{settings.model_name}/{version.version}")
    return Forecaster(
        booster, spec_of(booster), settings.model_name, str(version.version), version.run_id or ""
    )


def score_rows(forecaster: Forecaster, rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The service's answer body (``contract.prediction_body``) for every product of ``rows``, by id."""
    ids = sorted(rows)
    if not ids:
        return []
    X = np.vstack([encode_row(rows[pid], forecaster.spec.features) for pid in ids])
    quantiles = predict_quantiles(forecaster.booster, X, forecaster.spec)
    return [
        contract.prediction_body(pid, rows[pid], q, forecaster.model_version)
        for pid, q in zip(ids, quantiles, strict=True)
    ]


def forecast_table(
    forecaster: Forecaster, rows: dict[str, dict[str, Any]], data_version: str, published_at: datetime
) -> pl.DataFrame:
    """The ``forecasts`` table of one run: one row per product, conformed to ``FORECAST_SCHEMA``."""
    records = [
        {
            "productid": body["productid"],
            "source": rows[body["productid"]].get("source"),
            "name": rows[body["productid"]].get("product_name"),
            "calorie_category": rows[body["productid"]].get("calorie_category"),
            "forecast_month": body["forecast_month"],
            "p10": body["lower"],
            "p50": body["prediction"],
            "p90": body["upper"],
            "model_name": forecaster.model_name,
            "model_version": forecaster.model_version,
            "data_version": data_version,
            "features_as_of": body["features_as_of"],
            "published_at": published_at,
        }
        for body in score_rows(forecaster, rows)
    ]
    return conform(FORECASTS, pl.DataFrame(records, schema=FORECAST_SCHEMA))


def forecasts_url(data_version: str, settings: Settings | None = None) -> str:
    """``<processed bucket>/<data_version>/forecasts`` (a directory published as one unit)."""
    return storage.join(processed.version_url(data_version, settings), FORECASTS_DIR)


def publish_forecasts(
    data_version: str, alias: str = gate.CHAMPION, settings: Settings | None = None
) -> dict[str, Any]:
    """Score every product with ``@alias`` and publish the table to the processed bucket and the
    ``forecasts`` table; a summary (model version, rows, months, where)."""
    settings = settings or get_settings()
    forecaster = load_forecaster(alias, settings)
    rows = get_feature_store(settings).latest_rows()
    table = forecast_table(forecaster, rows, data_version, datetime.now(UTC))
    buffer = io.BytesIO()
    pq.write_table(table.to_arrow(), buffer, compression="zstd")
    url = forecasts_url(data_version, settings)
    storage.publish_files(url, {FORECASTS_FILE: buffer.getvalue()}, settings)
    published = get_forecast_tables(settings).publish(FORECASTS, table)
    months = sorted(set(table["forecast_month"].drop_nulls().to_list()))
    return {
        "model_name": forecaster.model_name,
        "model_version": forecaster.model_version,
        "data_version": data_version,
        "products": published,
        "forecast_months": months,
        "url": url,
        "table": table,
    }


def read_published(data_version: str, settings: Settings | None = None) -> pl.DataFrame:
    """The forecasts published under ``<processed bucket>/<data_version>/forecasts``."""
    url = storage.join(forecasts_url(data_version, settings), FORECASTS_FILE)
    table = pq.read_table(io.BytesIO(storage.read_bytes(url, settings)))
    return conform(FORECASTS, cast(pl.DataFrame, pl.from_arrow(table)))
