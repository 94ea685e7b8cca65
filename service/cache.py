"""In-memory snapshot of the latest feature row of every product, in front of the feature store.

One full query (``latest_rows``) fills the snapshot at start-up; a background thread repeats it every ``ttl``
seconds, and every ``retry_interval`` seconds while refreshes fail. Hits never leave the process.

What a miss costs depends on whether the snapshot is *fresh* — loaded, its last refresh succeeded, and not
older than ``max_age``:

* fresh: the snapshot holds every product the store had when it was read, so an id absent from it is an
  unknown product (404) without any query. A product published since then appears at the next refresh.
* not fresh (never loaded, or refreshes failing): one parameterized point query (``latest_row``), at most
  ``miss_rate`` per second with a burst of one second's worth (``service.limits.TokenBucket``); concurrent
  misses of one id share a query (``SingleFlight``); ids found absent are remembered for ``negative_ttl``
  seconds. A miss beyond the budget raises ``FeatureStoreUnavailable`` (503) without a query.

Whatever the store raises — ``FeatureStoreUnavailable``, a transport error, a polars ``PanicException`` (a
``BaseException``) — is a failed refresh (the old snapshot kept, the refresher alive) or, for a lookup,
``FeatureStoreUnavailable``. ``ready`` (the service's ``/readyz``) turns False once the snapshot is older than
``max_age`` or the refresher has died, so a replica whose snapshot can no longer be refreshed is taken out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from features.feature_store import FeatureStoreUnavailable
from service.limits import SingleFlight, TokenBucket

logger = logging.getLogger("bentoml.tamales.cache")

Row = dict[str, Any]


class RowSource(Protocol):
    """The part of ``features.feature_store.FeatureStore`` the cache uses."""

    def latest_rows(self) -> dict[str, Row]: ...

    def latest_row(self, id_product: str) -> Row | None: ...


class QueryBudgetSpent(FeatureStoreUnavailable):
    """A miss of a snapshot that is not fresh, beyond the point-query rate: not asked (answered 503)."""


def _failure(what: str, exc: BaseException) -> FeatureStoreUnavailable:
    """``exc`` (anything a store call raised) as the ``FeatureStoreUnavailable`` the service answers 503 on."""
    if isinstance(exc, FeatureStoreUnavailable):
        return exc
    message = str(exc).splitlines()[0][:200] if str(exc) else ""
    return FeatureStoreUnavailable(f"{what} failed: {type(exc).__name__}: {message}")


class FeatureCache:
    """Latest feature row per product id, shared by the refresher thread, point queries and readers.

    Refreshes are serialized by a lock and swap in a whole new dict; a point query adds one row to the
    current dict; readers take no lock (single dict operations are atomic under the GIL).
    """

    def __init__(
        self,
        store: RowSource,
        ttl: float,
        *,
        max_age: float | None = None,
        miss_rate: float = 5.0,
        negative_ttl: float = 30.0,
        retry_interval: float = 5.0,
        max_negative_entries: int = 100_000,
        lookup_wait: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.ttl = ttl
        self.max_age = max_age if max_age is not None else 3 * ttl
        self.negative_ttl = negative_ttl
        self.retry_interval = retry_interval
        self.max_negative_entries = max_negative_entries
        self.lookup_wait = lookup_wait  # how long a miss waits for the same id's query in flight
        self._clock = clock
        self._budget = TokenBucket(miss_rate, max(1.0, miss_rate), clock)
        self._flights: SingleFlight[Row | None] = SingleFlight()
        self._rows: dict[str, Row] = {}
        self._unknown: dict[str, float] = {}  # id -> monotonic time until which it is known to be absent
        self._loaded_at: float | None = None
        self._last_refresh_ok = False
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def loaded(self) -> bool:
        """True once a full snapshot was read from the store."""
        return self._loaded_at is not None

    def age(self) -> float | None:
        """Seconds since the snapshot was read (None before the first)."""
        return None if self._loaded_at is None else self._clock() - self._loaded_at

    def fresh(self) -> bool:
        """True while the snapshot is authoritative: its last refresh succeeded and it is within ``max_age``."""
        age = self.age()
        return self._last_refresh_ok and age is not None and age <= self.max_age

    @property
    def ready(self) -> bool:
        """Loaded, not older than ``max_age``, and (once started) the refresher is alive."""
        age = self.age()
        refresher_ok = self._thread is None or self._thread.is_alive()
        return age is not None and age <= self.max_age and refresher_ok

    def __len__(self) -> int:
        return len(self._rows)

    def product_ids(self) -> list[str]:
        """Ids in the current snapshot (sorted)."""
        return sorted(self._rows)

    def snapshot(self) -> dict[str, Row]:
        """The current snapshot itself (read-only for callers): replaced by a new dict at each refresh."""
        return self._rows

    def refresh(self) -> bool:
        """Replace the snapshot with one full query; False (and the old snapshot kept) if the store fails."""
        with self._refresh_lock:
            try:
                rows = dict(self._store.latest_rows())
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - any failure of the store, panics included
                self._last_refresh_ok = False
                logger.warning("feature snapshot refresh failed: %s", _failure("refresh", exc))
                return False
            # Rows found by point queries since the last refresh are in ``rows`` too if the store has them.
            self._rows = rows
            self._unknown = {}
            self._loaded_at = self._clock()
            self._last_refresh_ok = True
            logger.info("feature snapshot loaded: %d products", len(rows))
            return True

    def get_cached(self, product_id: str) -> Row | None:
        """The cached row, without any I/O (None on a miss)."""
        return self._rows.get(product_id)

    def known_absent(self, product_id: str) -> bool:
        """True if ``product_id`` is settled as unknown without I/O: absent from a fresh snapshot, or found
        absent by a recent point query."""
        if product_id in self._rows:
            return False
        if self.fresh():
            return True
        until = self._unknown.get(product_id)
        return until is not None and until > self._clock()

    def _remember_absent(self, product_id: str) -> None:
        now = self._clock()
        if len(self._unknown) >= self.max_negative_entries:
            self._unknown = {k: v for k, v in self._unknown.items() if v > now}
            if len(self._unknown) >= self.max_negative_entries:
                self._unknown = {}
        self._unknown[product_id] = now + self.negative_ttl

    def _query(self, product_id: str) -> Row | None:
        if not self._budget.take():
            raise QueryBudgetSpent("point-query budget spent (snapshot not fresh): retry later")
        try:
            row = self._store.latest_row(product_id)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - any failure of the store, panics included
            raise _failure("point query", exc) from exc
        if row is None:
            self._remember_absent(product_id)
        else:
            self._rows[product_id] = row
        return row

    def lookup(self, product_id: str) -> Row | None:
        """Row for ``product_id``: snapshot, else (snapshot not fresh) one budgeted point query. None if unknown.

        Raises ``FeatureStoreUnavailable`` when the store cannot answer or the query budget is spent.
        """
        row = self._rows.get(product_id)
        if row is not None:
            return row
        if self.known_absent(product_id):
            return None
        try:
            return self._flights.do(product_id, lambda: self._query(product_id), timeout=self.lookup_wait)
        except TimeoutError as exc:
            raise FeatureStoreUnavailable("point query still running: retry later") from exc

    def lookup_many(self, product_ids: Iterable[str]) -> tuple[dict[str, Row | None], set[str]]:
        """Rows for many ids: ``(found, unavailable)``; ``found[id]`` is None for unknown products.

        Each id is settled exactly as ``lookup`` settles it (so a batch and single calls agree); ids the store
        could not answer for (unreachable, or the query budget spent) are in ``unavailable``.
        """
        found: dict[str, Row | None] = {}
        unavailable: set[str] = set()
        for pid in dict.fromkeys(product_ids):
            try:
                found[pid] = self.lookup(pid)
            except FeatureStoreUnavailable:
                unavailable.add(pid)
        return found, unavailable

    def next_refresh_delay(self) -> float:
        """Seconds until the refresher should query again."""
        return self.ttl if self._last_refresh_ok else min(self.ttl, self.retry_interval)

    def start(self) -> None:
        """Start the background refresher (a daemon thread); idempotent."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="feature-cache-refresh", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.next_refresh_delay()):
            try:
                self.refresh()
            except BaseException:  # noqa: BLE001 - nothing may end this thread but stop()
                logger.exception("feature snapshot refresh raised; retrying")

    def stop(self) -> None:
        """Stop the background refresher."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
