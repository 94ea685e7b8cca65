"""The service's feature cache in front of the real local feature store (a parquet file in tmp_path): fresh
snapshots answer misses without queries, stale ones with rate-limited, single-flight point queries, and no
failure of the store — a corrupt file that makes polars panic included — kills the refresher."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from features.feature_store import FeatureStoreUnavailable, LocalFeatureStore
from features.schema import FEATURE_STORE_SCHEMA, conform
from service.cache import FeatureCache
from tests.fixtures.attacks import panicking_parquet, publish


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


def _hide(store: CountingStore) -> Path:
    hidden = store.path.with_name("hidden.parquet")
    store.path.rename(hidden)
    return hidden


def _stale(store: CountingStore, cache: FeatureCache) -> None:
    """Make ``cache``'s snapshot not fresh the way it happens in production: a refresh that fails."""
    hidden = _hide(store)
    try:
        assert not cache.refresh() and not cache.fresh()
    finally:
        hidden.rename(store.path)


def test_ids_absent_from_a_fresh_snapshot_cost_no_query(store):
    cache = FeatureCache(store, ttl=600)
    cache.refresh()
    for _ in range(5):
        assert cache.lookup("A")["id_product"] == "A"
    for i in range(1000):
        assert cache.known_absent(f"nope{i}") and cache.lookup(f"nope{i}") is None
    found, unavailable = cache.lookup_many([f"x{i}" for i in range(500)])
    assert not unavailable and set(found.values()) == {None}
    assert (store.full_queries, store.point_queries) == (1, 0)
    # A product published after the snapshot is served from the next refresh on.
    store.write(_frame(["A", "B", "C"]))
    assert cache.lookup("C") is None
    assert cache.refresh() and cache.lookup("C")["id_product"] == "C"
    assert store.point_queries == 0


def test_a_snapshot_is_fresh_until_a_refresh_fails_or_it_grows_too_old(store):
    clock = Clock()
    cache = FeatureCache(store, ttl=10, max_age=30, clock=clock)
    assert not cache.fresh() and not cache.ready  # never loaded
    cache.refresh()
    assert cache.fresh() and cache.ready
    clock.now += 31
    assert not cache.fresh() and not cache.ready  # the refresher has not kept it up to date
    assert cache.refresh() and cache.fresh() and cache.ready
    _stale(store, cache)
    assert cache.ready  # a failed refresh: not authoritative at once, not ready only past the age limit
    clock.now += 31
    assert not cache.ready


def test_misses_of_a_stale_snapshot_query_the_store_and_are_remembered_briefly(store):
    clock = Clock()
    cache = FeatureCache(store, ttl=600, negative_ttl=30, clock=clock)
    cache.refresh()
    _stale(store, cache)
    store.write(_frame(["A", "B", "C"]))
    assert cache.lookup("C")["id_product"] == "C"  # published since the snapshot: found by a point query
    assert cache.lookup("C")["id_product"] == "C"
    assert cache.lookup("nope") is None and cache.lookup("nope") is None
    assert store.point_queries == 2
    clock.now += 31
    assert cache.lookup("nope") is None
    assert store.point_queries == 3


def test_point_queries_are_rate_limited(store):
    clock = Clock()
    cache = FeatureCache(store, ttl=600, miss_rate=5, clock=clock)
    cache.refresh()
    _stale(store, cache)
    answers = []
    for i in range(100):  # a flood within one instant: the burst (one second's worth), then 503s
        try:
            answers.append(cache.lookup(f"flood{i}"))
        except FeatureStoreUnavailable:
            answers.append("unavailable")
    assert store.point_queries == 5 and answers.count("unavailable") == 95
    clock.now += 0.5  # refilled at 5 per second: two more (2.5 tokens)
    found, unavailable = cache.lookup_many([f"more{i}" for i in range(50)])
    assert store.point_queries == 7 and len(unavailable) == 48
    clock.now += 60  # never more than the burst saved up
    found, unavailable = cache.lookup_many([f"later{i}" for i in range(50)])
    assert store.point_queries == 12 and len(unavailable) == 45


def test_concurrent_misses_of_one_id_share_one_query(store):
    class SlowStore(CountingStore):
        release = threading.Event()

        def latest_row(self, id_product):
            self.release.wait(10)
            return super().latest_row(id_product)

    slow = SlowStore(store.path)
    cache = FeatureCache(slow, ttl=600, miss_rate=100)
    cache.refresh()
    _stale(slow, cache)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.lookup("nope"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    slow.release.set()
    for thread in threads:
        thread.join(10)
    assert results == [None] * 8 and slow.point_queries == 1


def test_negative_cache_is_bounded(store):
    cache = FeatureCache(store, ttl=600, max_negative_entries=3, miss_rate=100)
    cache.refresh()
    _stale(store, cache)
    for i in range(10):
        assert cache.lookup(f"x{i}") is None
    assert len(cache._unknown) <= 3


def test_an_unreachable_store_raises_and_is_not_remembered(store):
    cache = FeatureCache(store, ttl=600, miss_rate=100)
    cache.refresh()
    hidden = _hide(store)
    try:
        assert not cache.refresh()  # a failed refresh keeps the old snapshot
        assert len(cache) == 2
        with pytest.raises(FeatureStoreUnavailable):
            cache.lookup("C")
        assert cache.lookup("A")["id_product"] == "A"  # hits keep working from memory
        found, unavailable = cache.lookup_many(["A", "C", *[f"u{i}" for i in range(20)]])
        assert found["A"]["id_product"] == "A" and unavailable == {"C", *[f"u{i}" for i in range(20)]}
    finally:
        hidden.rename(store.path)
    assert cache.lookup("C") is None  # asked again, not remembered as unknown while unreachable


def test_a_store_file_that_makes_polars_panic_is_a_failed_refresh_not_a_dead_refresher(store):
    good = store.path.read_bytes()
    cache = FeatureCache(store, ttl=0.1, max_age=1, retry_interval=0.1)
    cache.refresh()
    publish(store.path, panicking_parquet(good))
    cache.start()
    try:
        deadline = time.monotonic() + 10
        while cache.fresh() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not cache.fresh()
        with pytest.raises(FeatureStoreUnavailable, match="panicked"):
            cache.lookup("nope")  # the point query panics too: a 503, not a PanicException
        while cache.ready and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not cache.ready and cache._thread.is_alive()
        store.write(_frame(["A", "B", "C"]))  # repaired: the living refresher reloads it
        while not cache.ready and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cache.ready and cache.get_cached("C") is not None
    finally:
        cache.stop()


class Panicking(CountingStore):
    """A store whose client raises a ``BaseException`` that is no ``Exception`` (as pyo3's panics do): not
    producible for real for every call site, so injected here."""

    class Boom(BaseException):
        pass

    def latest_rows(self):
        raise self.Boom("client blew up")

    def latest_row(self, id_product):
        raise self.Boom("client blew up")


def test_whatever_the_store_raises_is_a_failed_refresh_or_an_unavailable_store(tmp_path: Path):
    cache = FeatureCache(Panicking(tmp_path / "x.parquet"), ttl=0.05, retry_interval=0.05)
    assert not cache.refresh()
    with pytest.raises(FeatureStoreUnavailable, match="Boom"):
        cache.lookup("A")
    assert cache.lookup_many(["A", "B"]) == ({}, {"A", "B"})
    cache.start()
    try:
        time.sleep(0.3)
        assert cache._thread.is_alive()
    finally:
        cache.stop()


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
