"""The forecast service: ``POST /apis/products/predict/1.0.0`` and ``POST /predict_batch``.

A thin BentoML shell: ``__init__`` loads the model and builds the ``service.forecaster.Forecaster`` (the
core that decides every answer) on the configured feature store; the routes hand it the validated input and
send its answer. Errors are JSON ``{"error": reason}``: 400 for invalid bodies (BentoML's validation), 404 for
unknown products and unknown paths, 503 while the feature store cannot be reached; ``service.errors.JSONErrors``
covers the rest. ``/readyz`` answers 200 only while the model is loaded and the feature snapshot is within
its age limit. Server-level hardening: ``service.runtime`` (timeouts, GC), ``service.routing`` (bounded
metric labels, no redirects), ``service.http_guard`` (request-head deadline, JSON 400 from the parser).
"""

import logging

import bentoml
from starlette.responses import JSONResponse

from features.feature_store import get_feature_store
from features.settings import get_settings
from features.telemetry import quiet_tools
from service import contract, runtime, ui_routes
from service import model as model_io
from service.errors import JSONErrors
from service.forecaster import Forecaster
from service.openapi import OpenAPIDocs
from service.routing import UnknownRoutes

logger = logging.getLogger("bentoml.tamales.service")
# Import-time side effects that must stay. The tools' telemetry off before the server reports anything (a
# bento also sets these through bentofile.yaml's envs).
quiet_tools()
# BentoML imports this module in the server process before it builds the server, and the patches (timeout
# middleware, log filter, HTTP guard) must be in place by then.
runtime.harden_server(get_settings())

# The packaging flow pins the exact model with `--arg model_tag=name:version` (stored in the bento). Without
# it (in-process tests, `bentoml serve service.api:...`) the newest model of the store is served. Read at
# import: the BentoModel below is declared in the class body.
MODEL_TAG = getattr(bentoml.use_arguments(), "model_tag", None) or f"{get_settings().model_name}:latest"


@bentoml.asgi_app(ui_routes.app, path="/")  # the planners' page: /ui (service.ui_routes)
@bentoml.service(name=contract.SERVICE_NAME, **contract.SERVER_CONFIG)
class TamalesForecast:
    """Next-month sales forecast (p10/p50/p90) for a product, from its latest features."""

    forecaster = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        settings = get_settings()
        self.model = model_io.load(self.forecaster)
        self.core = Forecaster.from_settings(self.model, get_feature_store(settings), settings)
        self.core.start()
        logger.info("serving model %s (MLflow version %s)", self.forecaster, self.model.version)
        runtime.freeze_heap()

    @bentoml.on_shutdown
    def stop_refresher(self) -> None:
        """Stop the cache's background refresh thread (and log how well single rows were batched)."""
        self.core.stop()

    def __is_ready__(self) -> bool:
        return self.core.ready

    @bentoml.api(route=contract.PREDICT_ROUTE)
    async def predict(self, productid: contract.ProductId) -> contract.Prediction:
        """Next month's sales of one product: ``prediction`` = p50, ``lower``/``upper`` = p10/p90."""
        answer = await self.core.predict(productid)
        return JSONResponse(answer.body, status_code=answer.status)  # type: ignore[return-value]

    @bentoml.api(route=contract.BATCH_ROUTE)
    def predict_batch(self, productids: contract.ProductIds) -> contract.BatchResult:
        """Forecasts for up to 1,000 products; unknown ids (404) or store outages (503) reported per item."""
        answer = self.core.predict_batch(productids)
        return JSONResponse(answer.body, status_code=answer.status)  # type: ignore[return-value]


TamalesForecast.add_asgi_middleware(  # type: ignore[attr-defined]  # added by @bentoml.service
    JSONErrors, api_paths=contract.API_ROUTES, max_body_bytes=contract.MAX_BODY_BYTES
)
TamalesForecast.add_asgi_middleware(OpenAPIDocs)  # type: ignore[attr-defined]  # /docs.json documents every answer (service.openapi)
# JSON 404 for unknown paths, never a redirect (service.routing)
TamalesForecast.add_asgi_middleware(UnknownRoutes)  # type: ignore[attr-defined]
