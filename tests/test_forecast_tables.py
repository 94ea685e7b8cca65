"""The planner tables on both stores: the local parquet files and BigQuery (bqemulator).

Publishing the same run twice leaves one row per key (the second publish replaces the first's values), a
second run adds its rows beside the first's, reads by product return only that product, and
``latest_forecasts`` returns each product's newest forecast.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from features.forecast_schema import ALL_PRODUCTS, FORECAST_KEYS, FORECASTS, REALIZED, REALIZED_KEYS
from features.forecast_tables import (
    BigQueryForecastTables,
    ForecastTablesUnavailable,
    LocalForecastTables,
    get_forecast_tables,
)


def forecasts(model_version: str, data_version: str, scale: float, published: datetime) -> pl.DataFrame:
    """Three products' forecasts of one run."""
    ids = ["206050084", "85899345920", "x<img src=x>"]
    return pl.DataFrame(
        {
            "productid": ids,
            "source": ["erp", "teinvento", "erp"],
            "name": ["Tamal rojo", None, "<img src=x onerror=alert(1)>"],
            "calorie_category": ["Regular", "Light", None],
            "forecast_month": ["2025-02"] * 3,
            "p10": [scale * 1.0, scale * 2.0, 0.0],
            "p50": [scale * 2.0, scale * 3.0, 1.0],
            "p90": [scale * 3.0, scale * 4.0, 2.0],
            "model_name": ["tamales-sales-forecaster"] * 3,
            "model_version": [model_version] * 3,
            "data_version": [data_version] * 3,
            "features_as_of": ["2025-01"] * 3,
            "published_at": [published] * 3,
        }
    )


def realized(model_version: str) -> pl.DataFrame:
    """One product row and one source summary row of realized accuracy."""
    return pl.DataFrame(
        {
            "model_name": ["m", "m"],
            "model_version": [model_version] * 2,
            "data_version": ["d1"] * 2,
            "actuals_version": ["d2"] * 2,
            "source": ["erp", "erp"],
            "forecast_month": ["2025-02"] * 2,
            "productid": ["206050084", ALL_PRODUCTS],
            "n_products": [1, 1],
            "actual": [10.0, 10.0],
            "p10": [8.0, 8.0],
            "p50": [11.0, 11.0],
            "p90": [12.0, 12.0],
            "abs_error": [1.0, 1.0],
            "wape": [0.1, 0.1],
            "bias": [0.1, 0.1],
            "coverage": [1.0, 1.0],
            "backtest_wape": [0.08, 0.08],
            "computed_at": [datetime(2025, 3, 1, tzinfo=UTC)] * 2,
        }
    )


def check_idempotent_upsert(tables) -> None:
    """The contract both stores must meet."""
    first = datetime(2025, 2, 1, 12, tzinfo=UTC)
    assert tables.read(FORECASTS).is_empty()  # never published: empty, not an error
    assert tables.publish(FORECASTS, forecasts("1", "d1", 1.0, first)) == 3
    assert tables.publish(FORECASTS, forecasts("1", "d1", 10.0, first)) == 3  # re-run of the same run
    table = tables.read(FORECASTS)
    assert table.height == 3
    assert table.select(FORECAST_KEYS).is_duplicated().sum() == 0
    assert table.filter(pl.col("productid") == "206050084")["p50"].to_list() == [20.0]

    later = datetime(2025, 3, 1, 12, tzinfo=UTC)
    tables.publish(
        FORECASTS, forecasts("2", "d2", 100.0, later).with_columns(forecast_month=pl.lit("2025-03"))
    )
    assert tables.read(FORECASTS).height == 6
    one = tables.read(FORECASTS, productid="x<img src=x>")
    assert one.height == 2 and set(one["productid"]) == {"x<img src=x>"}
    assert one.filter(pl.col("model_version") == "1")["name"].to_list() == ["<img src=x onerror=alert(1)>"]
    assert tables.read(FORECASTS, productid="' OR 1=1 --").is_empty()  # a parameter, never SQL

    latest = tables.latest_forecasts()
    assert latest["productid"].to_list() == sorted(latest["productid"].to_list())
    assert latest.height == 3 and set(latest["model_version"]) == {"2"}
    assert set(latest["forecast_month"]) == {"2025-03"}
    assert latest.filter(pl.col("productid") == "206050084")["p50"].to_list() == [200.0]

    for _ in range(2):
        assert tables.publish(REALIZED, realized("1")) == 2
    table = tables.read(REALIZED)
    assert table.height == 2 and table.select(REALIZED_KEYS).is_duplicated().sum() == 0
    assert tables.read(REALIZED, productid=ALL_PRODUCTS)["wape"].to_list() == [0.1]


def test_local_tables_upsert_idempotently(tmp_path, monkeypatch) -> None:
    """Local parquet: publish twice → no duplicates; reads by product; newest forecast per product."""
    from features.settings import get_settings

    monkeypatch.setenv("TAMALES_STATE_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()
    tables = get_forecast_tables()
    assert isinstance(tables, LocalForecastTables)
    check_idempotent_upsert(tables)
    assert tables.path(FORECASTS).parent == get_settings().local_feature_store_path.parent
    assert not list(tables.path(FORECASTS).parent.glob(".*.tmp-*"))  # atomic replace left nothing behind


def test_local_tables_reject_bad_frames_and_corrupt_files(tmp_path, monkeypatch) -> None:
    """A frame without a key column or with null keys is refused; a corrupt file is 'unavailable'."""
    from features.settings import get_settings

    monkeypatch.setenv("TAMALES_STATE_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()
    tables = get_forecast_tables()
    frame = forecasts("1", "d1", 1.0, datetime(2025, 2, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="lacks columns"):
        tables.publish(FORECASTS, frame.drop("p50"))
    with pytest.raises(ValueError, match="null key"):
        tables.publish(FORECASTS, frame.with_columns(model_version=pl.lit(None, pl.String)))
    with pytest.raises(ValueError, match="unknown planner table"):
        tables.read("features")
    tables.path(FORECASTS).parent.mkdir(parents=True, exist_ok=True)
    tables.path(FORECASTS).write_bytes(b"PAR1 not a parquet file")
    with pytest.raises(ForecastTablesUnavailable):
        tables.read(FORECASTS)


def test_bigquery_tables_merge_idempotently(bigquery_settings) -> None:
    """BigQuery (emulator): staging load + MERGE on the keys → the same contract as the local tables."""
    tables = get_forecast_tables()
    assert isinstance(tables, BigQueryForecastTables)
    check_idempotent_upsert(tables)
    client = tables.client()
    staging = f"{bigquery_settings.bq_project}.{bigquery_settings.bq_staging_dataset}"
    assert not [t for t in client.list_tables(staging) if "_publish_" in t.table_id]  # staging dropped


def test_bigquery_outage_is_unavailable(bigquery_settings, bigquery_emulator) -> None:
    """An unreachable BigQuery is ``ForecastTablesUnavailable``, for reads and publishes."""
    bigquery_emulator.stop()
    try:
        tables = get_forecast_tables()
        with pytest.raises(ForecastTablesUnavailable):
            tables.read(FORECASTS)
        with pytest.raises(ForecastTablesUnavailable):
            tables.publish(REALIZED, realized("1"))
    finally:
        bigquery_emulator.start()
