"""In-memory cache of the latest feature row of every product, in front of the feature store.

One full query (``latest_rows``) fills the cache at start-up and a background thread repeats it every
``ttl`` seconds (every ``retry_interval`` seconds while the store has never answered). A product missing from
the snapshot costs one parameterized point query (``latest_row``); unknown ids are remembered for
``negative_ttl`` seconds so a client repeating them cannot hammer the store. Hits never leave the process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from features.feature_store import FeatureStoreUnavailable

logger = logging.getLogger("bentoml.tamales.cache")

Row = dict[str, Any]


class RowSource(Protocol):
    """The part of ``features.feature_store.FeatureStore`` the cache uses."""

    def latest_rows(self) -> dict[str, Row]: ...

    def latest_row(self, id_product: str) -> Row | None: ...


class FeatureCache:
    """Latest feature row per product id; thread-safe for one writer (refresher) and many readers."""

    def __init__(
        self,
        store: RowSource,
        ttl: float,
        *,
        negative_ttl: float = 30.0,
        retry_interval: float = 5.0,
        max_point_lookups: int = 16,
        max_negative_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.retry_interval = retry_interval
        self.max_point_lookups = max_point_lookups
        self.max_negative_entries = max_negative_entries
        self._clock = clock
        self._rows: dict[str, Row] = {}
        self._unknown: dict[str, float] = {}  # id -> monotonic time until which it is known to be absent
        self._loaded_at: float | None = None
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def loaded(self) -> bool:
        """True once a full snapshot was read from the store."""
        return self._loaded_at is not None

    def __len__(self) -> int:
        return len(self._rows)

    def product_ids(self) -> list[str]:
        """Ids in the current snapshot (sorted)."""
        return sorted(self._rows)

    def refresh(self) -> bool:
        """Replace the snapshot with one full query; False (and the old snapshot kept) if the store fails."""
        with self._refresh_lock:
            try:
                rows = self._store.latest_rows()
            except Exception as exc:  # the store's own errors and transport errors alike
                logger.warning("feature snapshot refresh failed: %s", exc)
                return False
            # Rows found by point queries since the last refresh are in ``rows`` too if the store has them.
            self._rows = dict(rows)
            self._unknown = {}
            self._loaded_at = self._clock()
            logger.info("feature snapshot loaded: %d products", len(rows))
            return True

    def get_cached(self, product_id: str) -> Row | None:
        """The cached row, without any I/O (None on a miss)."""
        return self._rows.get(product_id)

    def _known_absent(self, product_id: str, now: float) -> bool:
        until = self._unknown.get(product_id)
        return until is not None and until > now

    def _remember_absent(self, product_id: str, now: float) -> None:
        if len(self._unknown) >= self.max_negative_entries:
            self._unknown = {k: v for k, v in self._unknown.items() if v > now}
            if len(self._unknown) >= self.max_negative_entries:
                self._unknown = {}
        self._unknown[product_id] = now + self.negative_ttl

    def lookup(self, product_id: str) -> Row | None:
        """Row for ``product_id``: cache, else one point query. None if unknown.

        Raises ``FeatureStoreUnavailable`` when the point query cannot reach the store (not cached).
        """
        row = self._rows.get(product_id)
        if row is not None:
            return row
        now = self._clock()
        if self._known_absent(product_id, now):
            return None
        try:
            row = self._store.latest_row(product_id)
        except FeatureStoreUnavailable:
            raise
        except Exception as exc:
            raise FeatureStoreUnavailable(str(exc)) from exc
        if row is None:
            self._remember_absent(product_id, now)
            return None
        self._rows[product_id] = row
        return row

    def lookup_many(self, product_ids: Iterable[str]) -> tuple[dict[str, Row | None], set[str]]:
        """Rows for many ids: ``(found, unavailable)``; ``found[id]`` is None for unknown products.

        At most ``max_point_lookups`` point queries per call; beyond that, misses are settled by one full
        refresh (only if the snapshot is older than ``negative_ttl``), so a large batch of unknown ids costs
        at most one full query. Ids whose lookup failed because the store is unreachable are in
        ``unavailable``.
        """
        found: dict[str, Row | None] = {}
        misses: list[str] = []
        now = self._clock()
        for pid in dict.fromkeys(product_ids):
            row = self._rows.get(pid)
            if row is not None:
                found[pid] = row
            elif self._known_absent(pid, now):
                found[pid] = None
            else:
                misses.append(pid)
        unavailable: set[str] = set()
        if len(misses) > self.max_point_lookups:
            age = None if self._loaded_at is None else now - self._loaded_at
            refreshed = (age is not None and age < self.negative_ttl) or self.refresh()
            if not refreshed:
                return found, set(misses)
            for pid in misses:
                row = self._rows.get(pid)
                found[pid] = row
                if row is None:
                    self._remember_absent(pid, now)
            return found, unavailable
        for pid in misses:
            try:
                found[pid] = self.lookup(pid)
            except FeatureStoreUnavailable:
                unavailable.add(pid)
        return found, unavailable

    def next_refresh_delay(self) -> float:
        """Seconds until the refresher should query again."""
        return self.ttl if self.loaded else self.retry_interval

    def start(self) -> None:
        """Start the background refresher (a daemon thread); idempotent."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="feature-cache-refresh", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.next_refresh_delay()):
            self.refresh()

    def stop(self) -> None:
        """Stop the background refresher."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
