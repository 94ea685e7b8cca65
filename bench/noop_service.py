"""A no-op BentoML service for ``bench/serve.sh``: the forecast service's server settings and process tuning
(``service.contract.SERVER_CONFIG``, ``service.runtime``), its route and request shape, and no work at all —
the baseline that shows what the project itself adds per request."""

import bentoml
from starlette.responses import JSONResponse

from features.settings import get_settings
from service import runtime
from service.contract import PREDICT_ROUTE, SERVER_CONFIG

runtime.harden_server(get_settings())


@bentoml.service(name="noop", **SERVER_CONFIG)
class Noop:
    """Answers the predict route with the id it was given."""

    def __init__(self) -> None:
        runtime.freeze_heap()

    @bentoml.api(route=PREDICT_ROUTE)
    async def predict(self, productid: str) -> dict:
        """Echo the product id."""
        return JSONResponse({"productid": productid})
