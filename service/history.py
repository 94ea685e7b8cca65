"""The monthly history behind the planners' page: ``FeatureStore.history``, cached per series and rate-bounded.

A chart needs one product's monthly totals. They change only when the features flow publishes a new month, so
a series is cached under (product, its latest feature month): when the service's snapshot moves the product
to a new month, the next view asks the store again. What clients can make the page ask the store is bounded
like the predict route's misses (``service.cache``): at most ``rate`` queries per second per worker (burst:
one second's worth), concurrent views of one series share one query (``SingleFlight``), and a view beyond the
budget gets ``HistoryUnavailable`` without a query (the page says "retry later"). The cache keeps at most
``max_series`` series (the oldest dropped first). Whatever the store raises is ``HistoryUnavailable``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import polars as pl

from service.contract import month
from service.limits import SingleFlight, TokenBucket

logger = logging.getLogger("bentoml.tamales.history")


class HistorySource(Protocol):
    """The part of ``features.feature_store.FeatureStore`` this module uses."""

    def history(self, id_product: str) -> pl.DataFrame: ...


class HistoryUnavailable(RuntimeError):
    """The series could not be read now (store unreachable, or the query budget spent): retry later."""


@dataclass(frozen=True)
class Point:
    """One month of a series: ``YYYY-MM`` and the product's total sales (None when not reported)."""

    month: str
    sales: float | None


def series_points(frame: pl.DataFrame, source: str) -> tuple[Point, ...]:
    """The months of ``source`` in a ``history`` frame, oldest first."""
    rows = frame.filter(pl.col("source") == source).sort("year_month").to_dicts()
    return tuple(Point(month(r["year_month"]) or "", r["total_sales"]) for r in rows)


class HistoryCache:
    """Per-series cache of ``store.history`` for the page (thread-safe; the page calls it in worker threads)."""

    def __init__(
        self,
        store: HistorySource,
        rate: float,
        *,
        max_series: int = 10_000,
        wait: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._budget = TokenBucket(rate, max(1.0, rate), clock)
        self._flights: SingleFlight[tuple[Point, ...]] = SingleFlight()
        self._series: OrderedDict[tuple[str, str, str], tuple[Point, ...]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_series = max_series
        self.wait = wait
        self.queries = 0  # store calls made (for tests and logs)

    def _cached(self, key: tuple[str, str, str]) -> tuple[Point, ...] | None:
        with self._lock:
            found = self._series.get(key)
            if found is not None:
                self._series.move_to_end(key)
            return found

    def _query(self, key: tuple[str, str, str]) -> tuple[Point, ...]:
        if not self._budget.take():
            raise HistoryUnavailable("history query budget spent")
        product_id, source, _ = key
        self.queries += 1
        try:
            frame = self._store.history(product_id)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - any store failure (a polars panic included) is a retry
            message = str(exc).splitlines()[0][:200] if str(exc) else ""
            logger.warning("history of %r unavailable: %s: %s", product_id, type(exc).__name__, message)
            raise HistoryUnavailable(f"{type(exc).__name__}: {message}") from None
        points = series_points(frame, source)
        with self._lock:
            self._series[key] = points
            while len(self._series) > self.max_series:
                self._series.popitem(last=False)
        return points

    def points(self, product_id: str, source: str, as_of: str) -> tuple[Point, ...]:
        """The series of ``product_id`` from ``source`` whose latest feature month is ``as_of`` (``YYYY-MM``).

        Raises ``HistoryUnavailable`` when it is not cached and cannot be queried now.
        """
        key = (product_id, source, as_of)
        found = self._cached(key)
        if found is not None:
            return found
        try:
            return self._flights.do("\x00".join(key), lambda: self._query(key), timeout=self.wait)
        except TimeoutError:
            raise HistoryUnavailable("history query still running") from None
