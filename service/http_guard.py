"""Connection-level hardening of the server's HTTP protocol (uvicorn 0.54, under BentoML 1.4.40).

Two gaps below the ASGI app, where no middleware can reach:

* **No request-head deadline.** uvicorn arms its keep-alive timer only after a response, and cancels it on any
  byte received; a connection that opens and sends nothing, or sends its request head a byte at a time
  (slowloris), is kept forever. ``GuardedProtocol`` closes a connection whose request head is not complete
  ``header_timeout`` seconds after the connection opened or after its previous response — a deadline that
  arriving bytes do not extend. Requests being processed (head complete) are never affected.
* **Plain-text 400.** Requests the HTTP parser rejects (bad ``Content-Length``, bad chunked framing, a method
  httptools does not know, garbage) are answered by uvicorn itself with ``text/plain`` "Invalid HTTP request
  received.". The guarded protocols answer ``{"error": "invalid HTTP request"}`` as JSON instead (and close,
  as before). With the h11 parser (the bento's image, which has no httptools) unknown method tokens are valid
  HTTP and reach the app, which answers 405/404 JSON.

BentoML creates ``uvicorn.Config`` without an ``http`` option, so uvicorn loads
``uvicorn.protocols.http.auto.AutoHTTPProtocol``; ``install`` points that name at the guarded subclass of the
protocol it designates (httptools if installed, else h11). Call it before the server starts (at import of the
service module, which BentoML's worker imports before it configures uvicorn).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from service import patching

logger = logging.getLogger("bentoml.tamales.http")

INVALID_REQUEST_BODY = json.dumps({"error": "invalid HTTP request"}).encode()
_GUARDED_ATTR = "__tamales_guarded__"


class HeadDeadline:
    """Mixin for uvicorn's HTTP protocols: the request-head deadline (see module docstring)."""

    header_timeout: float = 10.0
    _head_timer: asyncio.TimerHandle | None = None
    _head_cycle: Any = None

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_cycle = self.cycle  # type: ignore[attr-defined]
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_deadline_passed)  # type: ignore[attr-defined]

    def _disarm_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_deadline_passed(self) -> None:
        self._head_timer = None
        cycle = self.cycle  # type: ignore[attr-defined]
        # A new request's head completed since the timer was armed (a new cycle), or a request is in progress.
        if cycle is not self._head_cycle or (cycle is not None and not cycle.response_complete):
            return
        transport = self.transport  # type: ignore[attr-defined]
        if not transport.is_closing():
            logger.debug(
                "closing a connection without a complete request head after %ss", self.header_timeout
            )
            transport.close()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():  # type: ignore[attr-defined]
            self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)  # type: ignore[misc]


def _httptools_guarded(base: type) -> type:
    class GuardedHttpToolsProtocol(HeadDeadline, base):
        def send_400_response(self, msg: str) -> None:
            head = [b"HTTP/1.1 400 Bad Request\r\n"]
            head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
            head += [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(INVALID_REQUEST_BODY)).encode() + b"\r\n",
                b"connection: close\r\n\r\n",
            ]
            self.transport.write(b"".join(head) + INVALID_REQUEST_BODY)
            self.transport.close()

    return GuardedHttpToolsProtocol


def _h11_guarded(base: type) -> type:
    import h11

    class GuardedH11Protocol(HeadDeadline, base):
        def send_400_response(self, msg: str) -> None:
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(INVALID_REQUEST_BODY)).encode()),
                (b"connection", b"close"),
            ]
            for event in (
                h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                h11.Data(data=INVALID_REQUEST_BODY),
                h11.EndOfMessage(),
            ):
                self.transport.write(self.conn.send(event))
            self.transport.close()

    return GuardedH11Protocol


def guarded(base: type, header_timeout: float) -> type:
    """The guarded subclass of uvicorn's ``HttpToolsProtocol`` or ``H11Protocol`` ``base``."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    cls = _h11_guarded(base) if issubclass(base, H11Protocol) else _httptools_guarded(base)
    cls.header_timeout = header_timeout  # type: ignore[attr-defined]  # a class attribute of HeadDeadline
    setattr(cls, _GUARDED_ATTR, True)
    return cls


def install(header_timeout: float) -> type | None:
    """Make uvicorn's ``auto`` HTTP protocol the guarded one (idempotent: a second call updates the timeout).

    Returns the protocol class uvicorn will use, or None if this uvicorn has no such hook (nothing changed).
    """
    try:
        from uvicorn.protocols.http import auto
    except ImportError:
        return None
    current = getattr(auto, "AutoHTTPProtocol", None)
    if current is None or not hasattr(current, "send_400_response"):
        logger.warning("uvicorn's AutoHTTPProtocol changed; HTTP connections are not guarded")
        return None
    if getattr(current, _GUARDED_ATTR, False):
        current.header_timeout = header_timeout
        return current
    expected = patching.SEND_400_SHA256.get(current.__name__, "")
    what = "the guarded HTTP protocol (request-head deadline, JSON 400)"
    if not patching.guard(
        what,
        current.send_400_response,
        expected,
        expected_version=patching.UVICORN_VERSION,
        distribution="uvicorn",
    ):
        return None
    auto.AutoHTTPProtocol = guarded(current, header_timeout)
    return auto.AutoHTTPProtocol
