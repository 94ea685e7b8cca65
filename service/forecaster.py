"""The forecast service's core, without BentoML: features → encoded row → batched predict → response body.

``Forecaster`` is built from its dependencies — the loaded model (booster and spec) and a feature source
(anything with ``latest_rows``/``latest_row``, e.g. ``features.feature_store.FeatureStore``) — and decides every
answer: 200 with the forecast, 404 for a product without features, 503 while the store cannot answer, and the
per-item statuses of a batch. ``service.api`` is the thin BentoML shell around it; tests drive it directly.

Per request on a cache hit: a dict lookup, ``features.schema.encode_row`` (the encoding training used) and
``training.forecast.predict_quantiles`` on the numpy row, all on the event loop — no pandas, no I/O; rows of
requests that reach the model in the same loop turn share one call (``service.batching``). An id absent from
a fresh snapshot is a 404 without I/O; only while the snapshot is not fresh does a miss cost a (rate-limited)
parameterized point query, in a worker thread (see ``service.cache``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import numpy as np

from features.feature_store import FeatureStoreUnavailable
from features.schema import encode_row
from service import contract
from service.batching import RowBatcher
from service.cache import FeatureCache, QueryBudgetSpent, RowSource
from service.model import LoadedModel
from training.forecast import predict_quantiles

logger = logging.getLogger("bentoml.tamales.service")


@dataclass(frozen=True)
class Answer:
    """An HTTP answer decided by the core: status and JSON body."""

    status: int
    body: dict[str, Any]


class Forecaster:
    """Next-month forecasts of products from their latest feature rows (see the module docstring)."""

    def __init__(
        self,
        model: LoadedModel,
        source: RowSource,
        *,
        ttl: float = 600.0,
        max_age: float | None = None,
        miss_rate: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        # Fail at construction rather than on every request if this model cannot score a feature row.
        predict_quantiles(model.booster, encode_row({}, model.spec.features), model.spec)
        self.cache = FeatureCache(source, ttl, max_age=max_age, miss_rate=miss_rate, clock=clock)
        self.batcher = RowBatcher(self.predict_rows)

    @classmethod
    def from_settings(cls, model: LoadedModel, source: RowSource, settings: Any) -> Forecaster:
        """A forecaster with the cache limits of ``features.settings.Settings``."""
        return cls(
            model,
            source,
            ttl=settings.feature_cache_ttl_seconds,
            max_age=settings.feature_snapshot_max_age_seconds,
            miss_rate=settings.feature_miss_queries_per_second,
        )

    def start(self) -> bool:
        """Load the first feature snapshot and start the background refresher; False if the store failed."""
        loaded = self.cache.refresh()
        if not loaded:
            logger.warning("feature store unreachable at start-up; not ready until it answers")
        self.cache.start()
        return loaded

    def stop(self) -> None:
        """Stop the refresher (and log how well single rows were batched)."""
        self.cache.stop()
        if self.batcher.calls:
            mean = self.batcher.rows / self.batcher.calls
            logger.info(
                "predicted %d rows in %d model calls (%.1f per call)",
                self.batcher.rows,
                self.batcher.calls,
                mean,
            )

    @property
    def ready(self) -> bool:
        """True while the feature snapshot is loaded and within its age limit (``/readyz``)."""
        return self.cache.ready

    def predict_rows(self, X: np.ndarray) -> np.ndarray:
        """(n, 3) p10/p50/p90 of encoded feature rows."""
        return predict_quantiles(self.model.booster, X, self.model.spec)

    def _body(self, productid: str, row: dict[str, Any], quantiles: np.ndarray) -> dict[str, Any]:
        return contract.prediction_body(productid, row, quantiles, self.model.version)

    async def predict(self, productid: str) -> Answer:
        """The answer for one product (call on the event loop: a miss is queried in a worker thread)."""
        row = self.cache.get_cached(productid)
        if row is None:
            if self.cache.known_absent(productid):  # absent from a fresh snapshot: no thread, no query
                return Answer(404, contract.unknown_product(productid))
            try:
                row = await anyio.to_thread.run_sync(self.cache.lookup, productid)
            except FeatureStoreUnavailable as exc:
                # Spent budgets are not logged one by one: a flood of misses must not flood the log too
                # (failed queries are bounded by the budget).
                if not isinstance(exc, QueryBudgetSpent):
                    logger.warning("feature lookup failed for a miss: %s", exc)
                return Answer(503, contract.store_unavailable(productid))
            if row is None:
                return Answer(404, contract.unknown_product(productid))
        quantiles = await self.batcher.submit(encode_row(row, self.model.spec.features))
        return Answer(200, self._body(productid, row, quantiles))

    def predict_batch(self, productids: Sequence[str]) -> Answer:
        """One item per requested id, in order: the forecast with ``status`` 200, or the 404/503 error body."""
        found, unavailable = self.cache.lookup_many(productids)
        known = [pid for pid in dict.fromkeys(productids) if found.get(pid) is not None]
        bodies: dict[str, dict[str, Any]] = {}
        if known:
            X = np.vstack([encode_row(found[pid] or {}, self.model.spec.features) for pid in known])
            for pid, quantiles in zip(known, self.predict_rows(X), strict=True):
                bodies[pid] = {**self._body(pid, found[pid] or {}, quantiles), "status": 200}
        results = []
        for pid in productids:
            if pid in bodies:
                results.append(bodies[pid])
            elif pid in unavailable:
                results.append({**contract.store_unavailable(pid), "status": 503})
            else:
                results.append({**contract.unknown_product(pid), "status": 404})
        body = contract.BatchResult.model_construct(model_version=self.model.version, results=results)
        return Answer(200, body.model_dump())
