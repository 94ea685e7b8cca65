"""The HTTP contract of the forecast service: routes, input types, response bodies.

Plain functions and types only (no BentoML), so the contract is unit-testable and shared by the service, the
tests and the tooling that prints example calls.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, BaseModel, Field

SERVICE_NAME = "tamales-forecast"
PREDICT_ROUTE = "/apis/products/predict/1.0.0"
BATCH_ROUTE = "/predict_batch"
API_ROUTES = (PREDICT_ROUTE, BATCH_ROUTE)
MAX_PRODUCT_ID_LENGTH = 64
# Printable ASCII (space to tilde), as a pattern so the published schema states what the service accepts.
PRODUCT_ID_PATTERN = r"^[ -~]+$"
MAX_BATCH_SIZE = 1000
# Largest request body accepted (a full batch of maximal ids is ~70 KB).
MAX_BODY_BYTES = 256 * 1024
# Server settings shared by the forecast service and the benchmark's no-op service (bench/noop_service.py), so
# the two are started the same way. Measured levers: see bench/serve.sh. BentoML config files and
# BENTOML_CONFIG_OPTIONS override these defaults.
SERVER_CONFIG: dict[str, Any] = {
    "workers": 2,
    "traffic": {"timeout": 30},
    "logging": {"access": {"enabled": False}},
}


class Prediction(BaseModel):
    """A forecast for the month after the product's latest feature row: the OpenAPI schema and the body."""

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


# The keys of a 200 body, in order (from the one response model).
PREDICTION_FIELDS = tuple(Prediction.model_fields)


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("productid must not contain control or other non-printable characters")
    return value


ProductId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_PRODUCT_ID_LENGTH,
        pattern=PRODUCT_ID_PATTERN,
        description="Product id (ERP or TeInvento): printable ASCII",
        examples=["206050084"],
    ),
    AfterValidator(_printable),
]
ProductIds = Annotated[list[ProductId], Field(min_length=1, max_length=MAX_BATCH_SIZE)]


def month(value: Any) -> str | None:
    """``YYYY-MM`` of a date, datetime or ISO date string (None stays None)."""
    if value is None:
        return None
    if isinstance(value, dt.date):
        return f"{value.year:04d}-{value.month:02d}"
    return str(value)[:7]


def next_month(value: Any) -> str | None:
    """``YYYY-MM`` of the month after ``value`` (a date or ISO date string)."""
    ym = month(value)
    if ym is None:
        return None
    year, mon = int(ym[:4]), int(ym[5:7])
    return f"{year + mon // 12:04d}-{mon % 12 + 1:02d}"


def prediction_body(
    product_id: str, row: Mapping[str, Any], quantiles: np.ndarray, model_version: str
) -> dict:
    """The 200 body for one product (a ``Prediction``): p50 as ``prediction``, p10/p90 as ``lower``/``upper``."""
    lower, median, upper = (round(float(q), 3) for q in quantiles)
    forecast = month(row.get("target_month")) or next_month(row.get("year_month"))
    return Prediction.model_construct(  # built from trusted values: no second validation per request
        productid=product_id,
        prediction=median,
        lower=lower,
        upper=upper,
        forecast_month=forecast,  # type: ignore[arg-type]  # year_month is a key column: never None in a stored row
        model_version=model_version,
        features_as_of=month(row.get("year_month")),  # type: ignore[arg-type]
    ).model_dump()


def error_body(reason: str, **extra: Any) -> dict:
    """A JSON error body: ``{"error": reason, ...}``."""
    return {"error": reason, **extra}


def unknown_product(product_id: str) -> dict:
    """Body of the 404 for a product without features."""
    return error_body("unknown product: no features for this productid", productid=product_id)


def store_unavailable(product_id: str | None = None) -> dict:
    """Body of the 503 when the feature store cannot be reached."""
    extra = {} if product_id is None else {"productid": product_id}
    return error_body("feature store unavailable, retry later", **extra)
