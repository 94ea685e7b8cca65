"""The OpenAPI document the service publishes (``GET /docs.json``), completed with the answers BentoML omits.

BentoML documents 200/400/404/500 for the API routes and only 200 for its probes. The service also answers
413 (body too large) and 415 (not JSON) on the API routes (``service.errors.JSONErrors``), 503 on the predict
route while the feature store cannot be reached, 504 when a request outlives ``traffic.timeout``, and 503 on
``/readyz`` until it is ready; BentoML leaves the request body optional although a request without one is
a 400; and BentoML's own 400 body carries pydantic's error list in ``detail`` where its
schema says string. ``complete_spec`` documents all of that; ``OpenAPIDocs`` serves the completed document
(and the Swagger UI page that shows it, ``service.docs_page``).
Clients and contract tests (tests/test_fuzz_api.py) rely on every answer being documented.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from service.contract import API_ROUTES, PREDICT_ROUTE
from service.docs_page import page_messages, without_remote_images

DOCS_PATH = "/docs.json"
PAGE_PATH = "/"
_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
ERROR_BODY = {
    "type": "object",
    "title": "ErrorBody",
    "description": "Every error answer: a reason, plus the productid it concerns where there is one.",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "title": "Reason"},
        "productid": {"type": "string", "title": "Productid"},
        "detail": {"title": "Detail"},
    },
}
_API_ERRORS = {
    "413": "Request body larger than the service accepts",
    "415": "Request body is not JSON (Content-Type must be application/json)",
    "504": "The request was not answered within the server's timeout",
}
_PREDICT_ERRORS = {"503": "The feature store cannot be reached: retry later"}
_READYZ_ERRORS = {
    "503": "Not ready: the model or a feature snapshot is not loaded yet, or the snapshot is older than "
    "its age limit (refreshes failing)"
}


def _response(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


def complete_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of BentoML's OpenAPI document with the service's other answers documented (see module doc)."""
    spec = copy.deepcopy(spec)
    info = spec.get("info", {})
    if isinstance(info.get("description"), str):  # no third-party images on the docs page
        info["description"] = without_remote_images(info["description"])
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorBody"] = ERROR_BODY
    for name in ("InvalidArgument", "NotFound", "InternalServerError"):
        detail = schemas.get(name, {}).get("properties", {}).get("detail")
        if detail is not None:  # BentoML puts pydantic's list of errors there
            detail.pop("type", None)
    paths = spec.get("paths", {})
    for route in API_ROUTES:
        operation = paths.get(route, {}).get("post")
        if operation is None:
            continue
        if "requestBody" in operation:  # BentoML leaves it optional; a request without one is a 400
            operation["requestBody"]["required"] = True
        responses = operation.setdefault("responses", {})
        extra = _API_ERRORS | (_PREDICT_ERRORS if route == PREDICT_ROUTE else {})
        for status, description in extra.items():
            responses.setdefault(status, _response(description))
    readyz = paths.get("/readyz", {}).get("get", {}).get("responses")
    if readyz is not None:
        for status, description in _READYZ_ERRORS.items():
            readyz.setdefault(status, _response(description))
    return spec


class OpenAPIDocs:
    """ASGI middleware: passes everything through, but serves ``/docs.json`` through ``complete_spec`` and the
    Swagger UI page at ``/`` without third-party requests (``service.docs_page``)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        if scope["path"] == PAGE_PATH:
            for message in page_messages():
                await send(message)
            return
        if scope["path"] != DOCS_PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        start: dict | None = None
        chunks: list[bytes] = []

        async def capture(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            if start is None:  # a body without a start message: not a valid ASGI response, pass it on
                await send(message)
                return
            if start["status"] == 200:
                body = json.dumps(complete_spec(json.loads(body))).encode()
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, capture)
