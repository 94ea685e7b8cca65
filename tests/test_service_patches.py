"""The BentoML patches (``service.runtime``, ``service.routing``) and their guards (``service.patching``),
against the real BentoML classes and logging path — no server needed."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

import pytest
from bentoml._internal.server import http_app
from bentoml._internal.server.http.traffic import TimeoutMiddleware
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from service import patching, routing, runtime

SCOPE = {"type": "http", "method": "POST", "path": "/apis/products/predict/1.0.0", "headers": []}


@pytest.fixture(scope="module", autouse=True)
def _patched() -> None:
    assert runtime.patch_timeout_middleware(), "the guard refused the installed BentoML"
    assert getattr(TimeoutMiddleware, "__tamales_cancels_timer__", False)


async def _serve(app: Any, timeout: float) -> tuple[list[dict], list[asyncio.TimerHandle]]:
    """Run one request through the real TimeoutMiddleware; the messages sent and its timers still pending."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await TimeoutMiddleware(app, timeout=timeout)(dict(SCOPE), receive, send)
    loop = asyncio.get_running_loop()
    pending = [
        h
        for h in getattr(loop, "_scheduled", [])
        if not h.cancelled() and getattr(h._callback, "__func__", None) is TimeoutMiddleware._set_timer_out
    ]
    return sent, pending


async def _fast(scope: dict, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _slow(scope: dict, receive: Any, send: Any) -> None:
    await asyncio.sleep(30)
    await _fast(scope, receive, send)


def test_a_slow_app_still_gets_the_504_json_answer():
    sent, pending = asyncio.run(_serve(_slow, timeout=0.2))
    assert sent[0]["status"] == 504
    assert json.loads(sent[1]["body"]) == {"error": "Not able to process the request in 0.2 seconds"}
    assert not pending


def test_a_fast_app_leaves_no_timer_behind():
    sent, pending = asyncio.run(_serve(_fast, timeout=30))
    assert [m.get("status") for m in sent] == [200, None]
    assert not pending, pending  # BentoML's own __call__ leaves a 30 s timer per request


def test_the_guard_refuses_another_source_and_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger=patching.logger.name):
        assert not patching.guard("a patch", _fast, patching.TIMEOUT_CALL_SHA256)
    assert "not applying a patch" in caplog.text and patching.TIMEOUT_CALL_SHA256 in caplog.text


def test_the_guard_refuses_another_bentoml_release(caplog):
    with caplog.at_level(logging.WARNING, logger=patching.logger.name):
        assert not patching.guard(
            "a patch", http_app.log_exception, patching.LOG_EXCEPTION_SHA256, expected_version="0.0.1"
        )
    assert "written for bentoml 0.0.1, found" in caplog.text


def test_the_guards_accept_the_installed_bentoml():
    """The pinned release's functions are what the patches were written for (fails on a BentoML upgrade)."""
    from bentoml._internal.server.http import instruments

    assert patching.installed_version() == patching.BENTOML_VERSION
    assert patching.guard("log filter", http_app.log_exception, patching.LOG_EXCEPTION_SHA256)
    assert runtime.quiet_invalid_input_logs() and routing.label_metrics_by_route()
    assert getattr(instruments.RunnerTrafficMetricsMiddleware, "__tamales_route_labels__", True)


class _Body(BaseModel):
    productid: str


def _log_through_bentoml(exc: BaseException) -> list[logging.LogRecord]:
    """Report ``exc`` the way BentoML's HTTP app does (``http_app.log_exception``); the records emitted."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    target = logging.getLogger(http_app.__name__)
    target.addHandler(handler)
    try:
        try:
            raise exc
        except BaseException:
            http_app.log_exception(Request(dict(SCOPE)), sys.exc_info())
    finally:
        target.removeHandler(handler)
    return records


def test_a_rejected_body_is_one_info_line_without_traceback():
    assert runtime.quiet_invalid_input_logs()
    try:
        _Body.model_validate({"productid": 5})
    except ValidationError as exc:
        invalid = exc
    (record,) = _log_through_bentoml(invalid)
    assert record.levelno == logging.INFO and record.exc_info is None
    assert record.getMessage() == "rejected invalid input on /apis/products/predict/1.0.0 [POST]"


def test_any_other_exception_keeps_its_error_and_traceback():
    assert runtime.quiet_invalid_input_logs()
    (record,) = _log_through_bentoml(RuntimeError("boom"))
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert record.getMessage() == "Exception on /apis/products/predict/1.0.0 [POST]"


def test_the_http_guard_is_written_for_the_installed_uvicorn():
    """``service.http_guard`` replaces ``send_400_response`` of both of uvicorn's protocols: guarded the same way."""
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    assert patching.installed_version("uvicorn") == patching.UVICORN_VERSION
    for protocol in (H11Protocol, HttpToolsProtocol):
        expected = patching.SEND_400_SHA256[protocol.__name__]
        assert patching.guard(
            "http guard",
            protocol.send_400_response,
            expected,
            expected_version=patching.UVICORN_VERSION,
            distribution="uvicorn",
        )
