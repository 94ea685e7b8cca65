"""Server-process tuning shared by the forecast service and the benchmark's no-op service.

Measured on this machine kind (bench/serve.sh, wrk -c32): the p99 of a stock BentoML 1.4.40 service is
150–400 ms even for a no-op endpoint, and almost all of it is full (generation 2) garbage collections of
~70–180 ms CPU each. Two causes, two fixes:

* BentoML's ``TimeoutMiddleware`` schedules ``loop.call_later(timeout, ...)`` per request and never cancels
  it, so every request's context (its OpenTelemetry span and friends) stays alive for ``traffic.timeout``
  seconds — at 1,500 req/s and 30 s that is ~45,000 requests' worth of live objects for the collector to
  scan. ``patch_timeout_middleware`` cancels the timer when the request is done (same behaviour otherwise:
  a 504 JSON answer when the app has not started its response in time). It also stops waiting when the app
  fails before it starts a response: BentoML's version then waits out the whole timeout (30 s) first.
* The ~120,000 objects created while importing BentoML, xgboost, polars and the model are scanned by every
  full collection although they live as long as the process. ``freeze_heap`` moves them to the permanent
  generation once the worker is initialised (``gc.freeze``).

``harden_server`` applies these and the other server-level fixes (``service.routing``, ``service.http_guard``)
in one call, shared by the forecast service and the benchmark's no-op service. The BentoML patches apply
only to the exact release and source they were written against (``service.patching``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

from service import patching

logger = logging.getLogger("bentoml.tamales.runtime")

_PATCHED_ATTR = "__tamales_cancels_timer__"


async def _timeout_call(self: Any, scope: dict, receive: Any, send: Any) -> None:
    # Same logic as bentoml._internal.server.http.traffic.TimeoutMiddleware.__call__ (1.4.40) plus the
    # ``timer.cancel()`` in ``finally`` and the done callback on ``fut``.
    from starlette.responses import JSONResponse

    if scope["type"] not in ("http", "websocket"):
        await self.app(scope, receive, send)
        return
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

    async def _send(message: dict) -> None:
        if not waiter.done():
            waiter.set_result(None)
        await send(message)

    fut = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)

    # An app that fails before it starts a response must not leave the request waiting for the timer.
    def _release(_: asyncio.Future) -> None:
        if not waiter.done():
            waiter.set_result(None)

    fut.add_done_callback(_release)
    try:
        await waiter
    except TimeoutError:
        if fut.cancel():
            body = {"error": f"Not able to process the request in {self.timeout} seconds"}
            await JSONResponse(body, status_code=504)(scope, receive, send)
    else:
        await fut
    finally:
        timer.cancel()


def patch_timeout_middleware() -> bool:
    """Make BentoML's TimeoutMiddleware cancel its per-request timer (idempotent).

    False (with a WARNING) unless BentoML is the release and ``__call__`` the source it was written for.
    """
    try:
        from bentoml._internal.server.http.traffic import TimeoutMiddleware
    except ImportError:  # a BentoML without that module: nothing to fix
        logger.warning("BentoML has no TimeoutMiddleware; its timer fix is not applied")
        return False
    if getattr(TimeoutMiddleware, _PATCHED_ATTR, False):
        return True
    what = "the TimeoutMiddleware timer fix"
    if not patching.guard(what, TimeoutMiddleware.__call__, patching.TIMEOUT_CALL_SHA256):
        return False
    TimeoutMiddleware.__call__ = _timeout_call  # type: ignore[method-assign, assignment]
    setattr(TimeoutMiddleware, _PATCHED_ATTR, True)
    return True


def freeze_heap() -> bool:
    """In a BentoML server worker, exclude everything alive now from future garbage collections (call at
    the end of the worker's start-up); elsewhere (in-process use, tests) do nothing. True if it froze."""
    import bentoml

    if bentoml.server_context.worker_index is None:
        return False
    gc.collect()
    gc.freeze()
    logger.info(
        "worker %s: %d start-up objects frozen", bentoml.server_context.worker_index, gc.get_freeze_count()
    )
    return True


class InvalidInputLogFilter(logging.Filter):
    """Turn BentoML's per-request ERROR + traceback for a rejected body (a client error, answered 400) into one
    INFO line: hostile or malformed input must not be able to flood the server's logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            record.msg, record.args = "rejected invalid input on %s [%s]", record.args
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_invalid_input_logs() -> bool:
    """Install ``InvalidInputLogFilter`` on the logger BentoML reports request exceptions with (idempotent).

    False (with a WARNING) unless BentoML's ``log_exception`` is the one the filter was written for.
    """
    from bentoml._internal.server import http_app

    target = logging.getLogger(http_app.__name__)
    if any(isinstance(f, InvalidInputLogFilter) for f in target.filters):
        return True
    if not patching.guard(
        "the invalid-input log filter", http_app.log_exception, patching.LOG_EXCEPTION_SHA256
    ):
        return False
    target.addFilter(InvalidInputLogFilter())
    return True


def harden_server(settings: Any) -> None:
    """Every server-process fix the forecast service and the benchmark's no-op service share (idempotent):
    the timeout middleware's timer, quiet rejected-input logs, metrics labelled by route template
    (``service.routing``) and the guarded HTTP protocol (``service.http_guard``)."""
    from service import http_guard, routing

    patch_timeout_middleware()
    quiet_invalid_input_logs()
    routing.label_metrics_by_route()
    http_guard.install(settings.http_header_timeout_seconds)
