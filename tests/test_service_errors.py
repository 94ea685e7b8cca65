"""The JSON error middleware around a plain Starlette app (the paths the forecast service rarely takes)."""

from __future__ import annotations

import json

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from service.errors import JSONErrors, normalize_error


async def _boom(request):
    raise RuntimeError("secret internals /etc/passwd")


async def _ok(request):
    return JSONResponse({"fine": True})


async def _teapot(request):
    return PlainTextResponse("short and stout", status_code=418)


async def _listed(request):
    return JSONResponse([{"error": "from a list"}], status_code=415)


@pytest.fixture
def client():
    app = Starlette(
        routes=[
            Route("/boom", _boom, methods=["POST"]),
            Route("/api", _ok, methods=["POST"]),
            Route("/teapot", _teapot),
            Route("/listed", _listed),
        ]
    )
    wrapped = JSONErrors(app, api_paths=("/api",), max_body_bytes=100)
    with TestClient(wrapped, raise_server_exceptions=False) as test_client:
        yield test_client


def _assert_json_error(response, status: int) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body, dict) and body["error"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    assert int(response.headers["content-length"]) == len(response.content)
    return body


def test_success_passes_through_untouched(client):
    response = client.post("/api", json={"x": 1})
    assert response.status_code == 200 and response.json() == {"fine": True}


def test_an_escaped_exception_becomes_a_json_500_without_details(client):
    body = _assert_json_error(client.post("/boom", json={}), 500)
    assert "secret" not in json.dumps(body)


def test_plain_text_errors_become_json(client):
    assert _assert_json_error(client.get("/nowhere"), 404)["error"] == "Not Found"
    assert _assert_json_error(client.get("/api"), 405)["error"] == "Method Not Allowed"
    assert _assert_json_error(client.get("/teapot"), 418)["error"] == "short and stout"


def test_a_one_element_json_list_is_unwrapped(client):
    assert _assert_json_error(client.get("/listed"), 415) == {"error": "from a list"}


def test_api_routes_accept_only_json_bodies_of_bounded_size(client):
    assert client.post("/api", content=b"{}").status_code == 200  # no content type: JSON is assumed
    _assert_json_error(client.post("/api", content=b"a=b", headers={"content-type": "text/plain"}), 415)
    form = {"content-type": "multipart/form-data; boundary=x"}
    _assert_json_error(client.post("/api", content=b"--x--", headers=form), 415)
    _assert_json_error(client.post("/api", json={"pad": "x" * 200}), 413)
    _assert_json_error(client.post("/api", content=b"{}", headers={"content-length": "abc"}), 400)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error": "kept", "detail": [1]}', {"error": "kept", "detail": [1]}),
        (b'{"detail": "Not ready"}', {"error": "Not ready"}),
        (b"Internal Server Error", {"error": "Internal Server Error"}),
        (b"Traceback (most recent call last):\n  File ...", {"error": "Service Unavailable"}),
        (b"", {"error": "Service Unavailable"}),
        (b"[1, 2]", {"error": "Service Unavailable"}),
    ],
)
def test_normalize_error(body, expected):
    assert normalize_error(503, body) == expected


def test_rejected_input_is_logged_as_one_info_line_without_traceback(caplog):
    import logging

    from pydantic import BaseModel, ValidationError

    from service.runtime import quiet_invalid_input_logs

    class Body(BaseModel):
        productid: str

    quiet_invalid_input_logs()
    quiet_invalid_input_logs()  # idempotent
    logger = logging.getLogger("bentoml._internal.server.http_app")
    assert len(logger.filters) == 1
    with caplog.at_level(logging.INFO, logger=logger.name):
        try:
            Body.model_validate({"productid": 3})
        except ValidationError:
            logger.error("Exception on %s [%s]", "/apis/products/predict/1.0.0", "POST", exc_info=True)
        try:
            raise RuntimeError("a real server fault")
        except RuntimeError:
            logger.error("Exception on %s [%s]", "/x", "POST", exc_info=True)
    rejected, fault = caplog.records
    assert rejected.levelno == logging.INFO and rejected.exc_info is None
    assert rejected.getMessage() == "rejected invalid input on /apis/products/predict/1.0.0 [POST]"
    assert fault.levelno == logging.ERROR and fault.exc_info is not None


class _Panic(BaseException):
    """Like pyo3's PanicException: a BaseException that is no Exception."""


async def _panics(scope, receive, send):
    raise _Panic("rust panicked")


def test_a_base_exception_escaping_the_app_is_a_json_500():
    test_client = TestClient(JSONErrors(_panics), raise_server_exceptions=False)  # no lifespan
    body = _assert_json_error(test_client.get("/anything"), 500)
    assert "panicked" not in json.dumps(body)


def test_the_timeout_middleware_does_not_wait_out_its_timer_when_the_app_fails_first():
    """BentoML's TimeoutMiddleware only stops waiting when the app starts a response or the timer fires: an
    app that raised first held the request for the whole timeout (30 s) before a plain-text 500."""
    import time

    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    from service.runtime import patch_timeout_middleware

    assert patch_timeout_middleware()
    test_client = TestClient(
        JSONErrors(TimeoutMiddleware(_panics, timeout=20)), raise_server_exceptions=False
    )
    started = time.monotonic()
    response = test_client.get("/anything")
    assert time.monotonic() - started < 5
    _assert_json_error(response, 500)
