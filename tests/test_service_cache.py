"""The service's feature cache in front of the real local feature store (a parquet file in tmp_path)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import polars as pl
import pytest

from features.feature_store import FeatureStoreUnavailable, LocalFeatureStore
from features.schema import FEATURE_STORE_SCHEMA, conform
from service.cache import FeatureCache


def _frame(ids: list[str], month: dt.date = dt.date(2024, 5, 1)) -> pl.DataFrame:
    """Feature rows (two months per product) with every schema column; values are irrelevant here."""
    rows = []
    for pid in ids:
        for m in (month.replace(month=month.month - 1), month):
            row = dict.fromkeys(FEATURE_STORE_SCHEMA)
            row |= {"id_product": pid, "source": "erp", "year_month": m, "total_sales": 100.0, "lag_1": 90.0}
            rows.append(row)
    return conform(pl.DataFrame(rows, schema=FEATURE_STORE_SCHEMA))


class CountingStore(LocalFeatureStore):
    """The real local store, counting its queries."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.full_queries = 0
        self.point_queries = 0

    def latest_rows(self):
        self.full_queries += 1
        return super().latest_rows()

    def latest_row(self, id_product):
        self.point_queries += 1
        return super().latest_row(id_product)


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> CountingStore:
    store = CountingStore(tmp_path / "fs" / "features.parquet")
    store.write(_frame(["A", "B"]))
    return store


def test_refresh_loads_the_latest_row_of_every_product(store):
    cache = FeatureCache(store, ttl=600)
    assert not cache.loaded
    assert cache.refresh()
    assert cache.loaded and len(cache) == 2
    assert cache.get_cached("A")["year_month"] == dt.date(2024, 5, 1)
    assert cache.get_cached("Z") is None
    assert store.point_queries == 0


def test_hits_never_query_and_a_miss_costs_one_point_query(store):
    cache = FeatureCache(store, ttl=600)
    cache.refresh()
    for _ in range(5):
        assert cache.lookup("A")["id_product"] == "A"
    assert store.point_queries == 0
    # A product published after the snapshot: found by one point query, then served from memory.
    store.write(_frame(["A", "B", "C"]))
    assert cache.lookup("C")["id_product"] == "C"
    assert cache.lookup("C")["id_product"] == "C"
    assert store.point_queries == 1


def test_unknown_ids_are_remembered_briefly(store):
    clock = Clock()
    cache = FeatureCache(store, ttl=600, negative_ttl=30, clock=clock)
    cache.refresh()
    assert cache.lookup("nope") is None
    assert cache.lookup("nope") is None
    assert store.point_queries == 1
    clock.now += 31
    assert cache.lookup("nope") is None
    assert store.point_queries == 2


def test_negative_cache_is_bounded(store):
    cache = FeatureCache(store, ttl=600, max_negative_entries=3)
    cache.refresh()
    for i in range(10):
        assert cache.lookup(f"x{i}") is None
    assert len(cache._unknown) <= 3


def test_an_unreachable_store_raises_and_is_not_remembered(store):
    cache = FeatureCache(store, ttl=600)
    cache.refresh()
    hidden = store.path.with_name("hidden.parquet")
    store.path.rename(hidden)
    try:
        with pytest.raises(FeatureStoreUnavailable):
            cache.lookup("C")
        assert cache.lookup("A")["id_product"] == "A"  # hits keep working from memory
        assert not cache.refresh()  # a failed refresh keeps the old snapshot
        assert len(cache) == 2
    finally:
        hidden.rename(store.path)
    assert cache.lookup("C") is None  # asked again, not remembered as unknown while unreachable


def test_a_large_batch_of_misses_costs_one_full_query_not_one_per_id(store):
    clock = Clock()
    cache = FeatureCache(store, ttl=600, negative_ttl=30, max_point_lookups=4, clock=clock)
    cache.refresh()
    store.write(_frame(["A", "B", "C"]))
    clock.now += 31  # the snapshot is older than the negative TTL: a refresh is allowed
    ids = ["A", "C", *[f"u{i}" for i in range(20)]]
    found, unavailable = cache.lookup_many(ids)
    assert not unavailable
    assert found["A"]["id_product"] == "A" and found["C"]["id_product"] == "C"
    assert all(found[f"u{i}"] is None for i in range(20))
    assert (store.full_queries, store.point_queries) == (2, 0)
    # A few misses: point queries, unknown ids answered from the negative cache afterwards.
    found, _ = cache.lookup_many(["u1", "u2", "D"])
    assert found == {"u1": None, "u2": None, "D": None}
    assert store.point_queries == 1


def test_lookup_many_reports_unreachable_ids(store):
    cache = FeatureCache(store, ttl=600)
    cache.refresh()
    hidden = store.path.with_name("hidden.parquet")
    store.path.rename(hidden)
    try:
        found, unavailable = cache.lookup_many(["A", "C"])
    finally:
        hidden.rename(store.path)
    assert found["A"]["id_product"] == "A"
    assert unavailable == {"C"}


def test_background_refresh_picks_up_new_rows_on_its_ttl(store):
    cache = FeatureCache(store, ttl=0.2)
    cache.refresh()
    cache.start()
    try:
        store.write(_frame(["A", "B", "C"]))
        deadline = time.monotonic() + 10
        while cache.get_cached("C") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cache.get_cached("C") is not None
        assert store.point_queries == 0
    finally:
        cache.stop()


def test_the_refresher_retries_until_the_store_answers(tmp_path: Path):
    store = CountingStore(tmp_path / "fs" / "features.parquet")  # nothing written yet: unreachable
    cache = FeatureCache(store, ttl=600, retry_interval=0.1)
    assert not cache.refresh()
    cache.start()
    try:
        time.sleep(0.3)
        assert not cache.loaded
        store.write(_frame(["A"]))
        deadline = time.monotonic() + 10
        while not cache.loaded and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cache.loaded and cache.get_cached("A") is not None
    finally:
        cache.stop()
