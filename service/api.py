"""The forecast service: ``POST /apis/products/predict/1.0.0`` and ``POST /predict_batch``.

Per request on a cache hit: a dict lookup, ``features.schema.encode_row`` (the encoding training used) and
``training.forecast.predict_quantiles`` on the numpy row, all on the event loop — no pandas, no I/O; rows
of requests that reach the model in the same loop turn share one call (``service.batching``). An id absent
from a fresh snapshot is a 404 without I/O; only while the snapshot is not fresh does a miss cost a
(rate-limited) parameterized point query, in a worker thread (see ``service.cache``).

Errors are JSON ``{"error": reason}``: 400 for invalid bodies (BentoML's validation), 404 for unknown
products and unknown paths, 503 while the feature store cannot be reached; ``service.errors.JSONErrors``
covers the rest. ``/readyz`` answers 200 only while the model is loaded and the feature snapshot is within
its age limit. Server-level hardening: ``service.runtime`` (timeouts, GC), ``service.routing`` (bounded
metric labels, no redirects), ``service.http_guard`` (request-head deadline, JSON 400 from the parser).
"""

import logging
from typing import Any

import anyio.to_thread
import bentoml
import numpy as np
from pydantic import BaseModel
from starlette.responses import JSONResponse

from features.feature_store import FeatureStoreUnavailable, get_feature_store
from features.schema import encode_row
from features.settings import get_settings
from service import contract, runtime, ui_routes
from service import model as model_io
from service.batching import RowBatcher
from service.cache import FeatureCache, QueryBudgetSpent
from service.errors import JSONErrors
from service.openapi import OpenAPIDocs
from service.routing import UnknownRoutes
from training.forecast import predict_quantiles

logger = logging.getLogger("bentoml.tamales.service")
runtime.harden_server(get_settings())

# The packaging flow pins the exact model with `--arg model_tag=name:version` (stored in the bento). Without
# it (in-process tests, `bentoml serve service.api:...`) the newest model of the store is served.
MODEL_TAG = getattr(bentoml.use_arguments(), "model_tag", None) or f"{get_settings().model_name}:latest"


class Prediction(BaseModel):
    """A forecast for the month after the product's latest feature row (OpenAPI documentation)."""

    productid: str
    prediction: float
    lower: float
    upper: float
    forecast_month: str
    model_version: str
    features_as_of: str


class BatchResult(BaseModel):
    """Batch answer: one item per requested id, in order; failed items carry ``status`` and ``error``."""

    model_version: str
    results: list[dict[str, Any]]


@bentoml.asgi_app(ui_routes.app, path="/")  # the planners' page: /ui (service.ui_routes)
@bentoml.service(name=contract.SERVICE_NAME, **contract.SERVER_CONFIG)
class TamalesForecast:
    """Next-month sales forecast (p10/p50/p90) for a product, from its latest features."""

    forecaster = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        settings = get_settings()
        self.model = model_io.load(self.forecaster)
        # Fail at start-up rather than on every request if this model cannot score a feature row.
        predict_quantiles(self.model.booster, encode_row({}, self.model.spec.features), self.model.spec)
        self.cache = FeatureCache(
            get_feature_store(settings),
            settings.feature_cache_ttl_seconds,
            max_age=settings.feature_snapshot_max_age_seconds,
            miss_rate=settings.feature_miss_queries_per_second,
        )
        if not self.cache.refresh():
            logger.warning("feature store unreachable at start-up; not ready until it answers")
        self.cache.start()
        self.batcher = RowBatcher(self._predict_rows)
        logger.info("serving model %s (MLflow version %s)", self.forecaster, self.model.version)
        runtime.freeze_heap()

    @bentoml.on_shutdown
    def stop_refresher(self) -> None:
        """Stop the cache's background refresh thread (and log how well single rows were batched)."""
        self.cache.stop()
        if self.batcher.calls:
            mean = self.batcher.rows / self.batcher.calls
            logger.info(
                "predicted %d rows in %d model calls (%.1f per call)",
                self.batcher.rows,
                self.batcher.calls,
                mean,
            )

    def __is_ready__(self) -> bool:
        return self.cache.ready

    def _predict_rows(self, X: np.ndarray) -> np.ndarray:
        return predict_quantiles(self.model.booster, X, self.model.spec)

    @bentoml.api(route=contract.PREDICT_ROUTE)
    async def predict(self, productid: contract.ProductId) -> Prediction:
        """Next month's sales of one product: ``prediction`` = p50, ``lower``/``upper`` = p10/p90."""
        row = self.cache.get_cached(productid)
        if row is None:
            if self.cache.known_absent(productid):  # absent from a fresh snapshot: no thread, no query
                return JSONResponse(contract.unknown_product(productid), status_code=404)
            try:
                row = await anyio.to_thread.run_sync(self.cache.lookup, productid)
            except FeatureStoreUnavailable as exc:
                # Spent budgets are not logged one by one: a flood of misses must not flood the log too
                # (failed queries are bounded by the budget).
                if not isinstance(exc, QueryBudgetSpent):
                    logger.warning("feature lookup failed for a miss: %s", exc)
                return JSONResponse(contract.store_unavailable(productid), status_code=503)
            if row is None:
                return JSONResponse(contract.unknown_product(productid), status_code=404)
        quantiles = await self.batcher.submit(encode_row(row, self.model.spec.features))
        return JSONResponse(contract.prediction_body(productid, row, quantiles, self.model.version))

    @bentoml.api(route=contract.BATCH_ROUTE)
    def predict_batch(self, productids: contract.ProductIds) -> BatchResult:
        """Forecasts for up to 1,000 products; unknown ids (404) or store outages (503) reported per item."""
        found, unavailable = self.cache.lookup_many(productids)
        known = [pid for pid in dict.fromkeys(productids) if found.get(pid) is not None]
        bodies: dict[str, dict[str, Any]] = {}
        if known:
            X = np.vstack([encode_row(found[pid], self.model.spec.features) for pid in known])
            for pid, quantiles in zip(known, self._predict_rows(X), strict=True):
                bodies[pid] = {
                    **contract.prediction_body(pid, found[pid], quantiles, self.model.version),
                    "status": 200,
                }
        results = []
        for pid in productids:
            if pid in bodies:
                results.append(bodies[pid])
            elif pid in unavailable:
                results.append({**contract.store_unavailable(pid), "status": 503})
            else:
                results.append({**contract.unknown_product(pid), "status": 404})
        return JSONResponse({"model_version": self.model.version, "results": results})


TamalesForecast.add_asgi_middleware(
    JSONErrors, api_paths=contract.API_ROUTES, max_body_bytes=contract.MAX_BODY_BYTES
)
TamalesForecast.add_asgi_middleware(OpenAPIDocs)  # /docs.json documents every answer (service.openapi)
# JSON 404 for unknown paths, never a redirect (service.routing)
TamalesForecast.add_asgi_middleware(UnknownRoutes)
