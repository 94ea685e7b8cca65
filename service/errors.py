"""ASGI middleware that makes every error response a JSON object ``{"error": reason, ...}``.

BentoML already answers validation errors with JSON, but other error paths do not: Starlette's 404/405 and
the ``/readyz`` 503 are plain text, and ``BentoMLException`` bodies come out as a one-element JSON list. This
layer rewrites any error response (status >= 400) that is not already such an object, rejects non-JSON and
oversized request bodies on the API routes up front (BentoML's multipart parsing of arbitrary bodies can fail
with a 500), and turns an escaped exception — any ``BaseException`` but cancellation and shutdown, so a Rust
panic too — into a JSON 500 without a traceback. Successful responses pass
through untouched.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection
from http import HTTPStatus
from typing import Any

from bentoml.exceptions import BentoMLException

logger = logging.getLogger("bentoml.tamales.errors")
# Control flow, not errors: a cancelled request (client gone, timeout) and process shutdown pass through.
_PROPAGATE = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)

Scope = dict[str, Any]


def json_messages(status: int, body: dict) -> tuple[dict, dict]:
    """The two ASGI messages (start, body) of a JSON response."""
    data = json.dumps(body).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
    }
    return start, {"type": "http.response.body", "body": data, "more_body": False}


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


def normalize_error(status: int, body: bytes) -> dict:
    """The JSON object to send for an error response with ``body`` (kept when it already is one)."""
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    if isinstance(parsed, list) and len(parsed) == 1:
        parsed = parsed[0]
    if isinstance(parsed, dict) and "error" in parsed:
        return parsed
    if isinstance(parsed, dict) and "detail" in parsed:
        return {"error": str(parsed["detail"])}
    text = body.decode("utf-8", "replace").strip() if parsed is None else ""
    # A plain-text body is a short Starlette message ("Not Found"); never forward anything long.
    return {"error": text if text and len(text) <= 200 and "\n" not in text else _reason(status)}


class BodyTooLarge(BentoMLException):
    """A request body (sent without, or despite, its Content-Length) grew past the limit: answered 413."""

    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


def capped_receive(receive: Any, limit: int) -> Any:
    """``receive`` that raises ``BodyTooLarge`` once more than ``limit`` body bytes arrived (chunked uploads)."""
    seen = 0

    async def wrapper() -> dict:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(f"request body larger than {limit} bytes")
        return message

    return wrapper


class JSONErrors:
    """Wrap an ASGI app so that its error responses are JSON objects (see module docstring)."""

    def __init__(self, app: Any, api_paths: Collection[str] = (), max_body_bytes: int = 1 << 20) -> None:
        self.app = app
        self.api_paths = frozenset(api_paths)
        self.max_body_bytes = max_body_bytes

    def _reject(self, scope: Scope) -> tuple[int, dict] | None:
        if scope["path"] not in self.api_paths or scope.get("method") != "POST":
            return None
        for name, value in scope.get("headers", ()):
            if name == b"content-type":
                media = value.split(b";", 1)[0].strip().lower()
                if media not in (b"", b"application/json"):
                    return 415, {"error": "request body must be JSON (Content-Type: application/json)"}
            elif name == b"content-length":
                try:
                    too_big = int(value) > self.max_body_bytes
                except ValueError:
                    return 400, {"error": "invalid Content-Length header"}
                if too_big:
                    return 413, {"error": f"request body larger than {self.max_body_bytes} bytes"}
        return None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rejected = self._reject(scope)
        if rejected is not None:
            for message in json_messages(*rejected):
                await send(message)
            return

        if scope["path"] in self.api_paths and scope.get("method") == "POST":
            receive = capped_receive(receive, self.max_body_bytes)
        held: dict | None = None  # the start message of an error response, until its body is complete
        chunks: list[bytes] = []
        started = False

        async def send_wrapper(message: dict) -> None:
            nonlocal held, started
            if message["type"] == "http.response.start":
                started = True
                if message["status"] >= 400:
                    held = message
                    return
            elif message["type"] == "http.response.body" and held is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                status = held["status"]
                start, body = json_messages(status, normalize_error(status, b"".join(chunks)))
                # Keep headers such as Server / request ids, replace the content headers.
                extra = [
                    (k, v)
                    for k, v in held.get("headers", [])
                    if k not in (b"content-type", b"content-length")
                ]
                start["headers"] = start["headers"] + extra
                held = None
                await send(start)
                await send(body)
                return
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except _PROPAGATE:
            raise
        except BaseException:  # noqa: BLE001 - a Rust panic (PanicException) is a BaseException too
            logger.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started or held is not None:
                for message in json_messages(500, {"error": "internal error"}):
                    await send(message)
