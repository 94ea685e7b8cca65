"""Feature store: the local parquet backend and the BigQuery backend (on bqemulator) behave the same."""

from __future__ import annotations

import math
import time
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from features.feature_store import (
    HISTORY_SCHEMA,
    BigQueryFeatureStore,
    FeatureStoreUnavailable,
    LocalFeatureStore,
    get_feature_store,
)
from features.schema import FEATURE_STORE_SCHEMA, KEY_COLUMNS, conform

INJECTION = "206050084' OR '1'='1"


def feature_rows() -> pl.DataFrame:
    """Rows of four products: one with 3 months, one under both sources (newer in teinvento), one tie."""
    keys = [
        ("206050084", "erp", date(2024, 1, 1)),
        ("206050084", "erp", date(2024, 2, 1)),
        ("206050084", "erp", date(2024, 3, 1)),
        ("ABYT055818", "erp", date(2024, 3, 1)),
        ("17179869184", "teinvento", date(2023, 6, 1)),
        ("DUAL", "erp", date(2024, 1, 1)),
        ("DUAL", "teinvento", date(2024, 2, 1)),
        ("TIE", "teinvento", date(2024, 2, 1)),
        ("TIE", "erp", date(2024, 2, 1)),
    ]
    n = len(keys)
    columns: dict[str, list] = {"id_product": [k[0] for k in keys], "source": [k[1] for k in keys]}
    columns["year_month"] = [k[2] for k in keys]
    columns["target_month"] = [
        date(d.year + d.month // 12, d.month % 12 + 1, 1) for d in columns["year_month"]
    ]
    for name, dtype in FEATURE_STORE_SCHEMA.items():
        if name in columns:
            continue
        if dtype == pl.String:
            columns[name] = [f"{name}-{i}" for i in range(n)]
        elif dtype == pl.Boolean:
            columns[name] = [i % 2 == 0 for i in range(n)]
        elif dtype == pl.Int32:
            columns[name] = list(range(1, n + 1))
        else:
            columns[name] = [1000.5 * (i + 1) for i in range(n)]
    columns["lag_12"][0] = None  # no value a year earlier
    columns["rolling_std_3"][0] = math.nan
    return pl.DataFrame(columns).select(list(reversed(FEATURE_STORE_SCHEMA)))  # write() must reorder


EXPECTED_LATEST = {
    "206050084": ("erp", date(2024, 3, 1)),
    "ABYT055818": ("erp", date(2024, 3, 1)),
    "17179869184": ("teinvento", date(2023, 6, 1)),
    "DUAL": ("teinvento", date(2024, 2, 1)),
    "TIE": ("erp", date(2024, 2, 1)),
}


def check_store(store) -> dict[str, dict]:
    """The behaviour both backends share; returns ``latest_rows()`` for cross-backend comparison."""
    df = feature_rows()
    assert store.write(df) == df.height
    store.ping()
    assert_frame_equal(store.read_all(), conform(df).sort(KEY_COLUMNS))

    latest = store.latest_rows()
    assert {pid: (row["source"], row["year_month"]) for pid, row in latest.items()} == EXPECTED_LATEST
    row = store.latest_row("206050084")
    assert row is not None and list(row) == list(FEATURE_STORE_SCHEMA)
    assert row["year_month"] == date(2024, 3, 1) and isinstance(row["target_month_of_year"], int)
    assert row["total_sales"] == latest["206050084"]["total_sales"] == 1000.5 * 3
    assert store.latest_row("DUAL")["source"] == "teinvento"
    assert store.latest_row("nope") is None
    assert store.latest_row(INJECTION) is None
    assert store.latest_row("") is None

    history = store.history("206050084")  # the planners' page chart: every month, oldest first
    assert history.columns == list(HISTORY_SCHEMA)
    assert history["year_month"].to_list() == [date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1)]
    assert history["total_sales"].to_list() == [1000.5, 2001.0, 3001.5]
    assert store.history("DUAL")["source"].to_list() == ["erp", "teinvento"]
    assert store.history("nope").height == store.history(INJECTION).height == 0

    smaller = df.filter(pl.col("id_product") != "ABYT055818")
    assert store.write(smaller) == smaller.height
    assert store.read_all().height == smaller.height  # replaced, not appended
    assert store.read_all().select(KEY_COLUMNS).is_duplicated().sum() == 0
    assert store.latest_row("ABYT055818") is None
    store.write(df)
    return store.latest_rows()


def test_local_store_round_trip(tmp_path: Path):
    store = LocalFeatureStore(tmp_path / "fs" / "features.parquet")
    latest = check_store(store)
    first = latest["206050084"]
    assert first["lag_12"] is None or isinstance(first["lag_12"], float)
    assert [p.name for p in (tmp_path / "fs").iterdir()] == ["features.parquet"]  # no temporaries left


def test_local_store_without_table_is_unavailable(tmp_path: Path):
    store = LocalFeatureStore(tmp_path / "missing.parquet")
    for call in (store.ping, store.latest_rows, store.read_all, lambda: store.latest_row("206050084")):
        with pytest.raises(FeatureStoreUnavailable, match="run the features flow"):
            call()


def test_local_store_rejects_non_string_ids(tmp_path: Path):
    store = LocalFeatureStore(tmp_path / "features.parquet")
    store.write(feature_rows())
    with pytest.raises(TypeError):
        store.latest_row(206050084)  # type: ignore[arg-type]


def test_get_feature_store_follows_settings(monkeypatch):
    from features.settings import get_settings

    store = get_feature_store()
    assert isinstance(store, LocalFeatureStore) and store.path == get_settings().local_feature_store_path
    monkeypatch.setenv("TAMALES_FEATURE_STORE", "bigquery")
    monkeypatch.setenv("TAMALES_BQ_PROJECT", "p")
    get_settings.cache_clear()
    assert isinstance(get_feature_store(), BigQueryFeatureStore)


def test_bigquery_store_matches_local(bigquery_settings, tmp_path: Path):
    store = get_feature_store()
    assert isinstance(store, BigQueryFeatureStore)
    assert store.table_id == "test-project.products_feature_store.features"
    latest = check_store(store)
    local = check_store(LocalFeatureStore(tmp_path / "features.parquet"))
    assert_frame_equal(pl.DataFrame(list(latest.values())), pl.DataFrame(list(local.values())))
    assert store.read_all().height == feature_rows().height  # the injection attempts changed nothing


def test_bigquery_outage_fails_fast_and_recovers(bigquery_settings, bigquery_emulator):
    store = get_feature_store()
    store.write(feature_rows())
    assert store.latest_row("206050084") is not None

    bigquery_emulator.stop()
    try:
        for call in (lambda: store.latest_row("206050084"), store.latest_rows, store.ping):
            started = time.monotonic()
            with pytest.raises(FeatureStoreUnavailable):
                call()
            assert time.monotonic() - started < 10
    finally:
        bigquery_emulator.start()

    with pytest.raises(FeatureStoreUnavailable):  # an ephemeral emulator comes back empty: no table yet
        store.ping()
    store.write(feature_rows())  # the same store object (and client) works again
    store.ping()
    assert store.latest_row("206050084")["year_month"] == date(2024, 3, 1)
