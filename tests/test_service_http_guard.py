"""The guarded HTTP protocols (``service.http_guard``) in a real uvicorn server, with both of uvicorn's parsers:
httptools (the development environment's) and h11 (the bento image's, which has no httptools). The served
bento's own behaviour is covered by tests/test_service_hardening.py; this covers the parser the container uses.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from service import http_guard
from tests.fixtures.attacks import closed_within, raw_exchange
from tests.fixtures.prefect_server import free_port

HEADER_TIMEOUT = 1.0


async def _app(scope, receive, send) -> None:
    """GET → 200 JSON (``/slow``: after longer than the head deadline); anything else → 405 JSON (as the
    service's error middleware would answer)."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(HEADER_TIMEOUT * 1.5)
    status = 200 if scope["method"] == "GET" else 405
    body = json.dumps({"ok": True} if status == 200 else {"error": "Method Not Allowed"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(params=["httptools", "h11"])
def guarded_server(request) -> Iterator[str]:
    import uvicorn
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    base = {"h11": H11Protocol, "httptools": HttpToolsProtocol}[request.param]
    port = free_port()
    config = uvicorn.Config(
        _app,
        host="127.0.0.1",
        port=port,
        http=http_guard.guarded(base, HEADER_TIMEOUT),
        lifespan="off",
        log_config=None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


MALFORMED = [
    b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 12abc\r\n\r\n{}",
    b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n{}",
    b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n",
    b"FOO / HTTP/1.1\r\nHost: t\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost t\r\n\r\n",
]


@pytest.mark.parametrize("request_bytes", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_requests_get_a_json_4xx(guarded_server: str, request_bytes: bytes):
    status, headers, body = raw_exchange(guarded_server, request_bytes)
    assert 400 <= status < 500, (status, headers, body)
    assert headers["content-type"] == "application/json", headers
    assert json.loads(body)["error"]


def test_connections_without_a_complete_head_are_closed_on_time(guarded_server: str):
    host, port = "127.0.0.1", int(guarded_server.rsplit(":", 1)[1])
    idle = socket.create_connection((host, port))
    partial = socket.create_connection((host, port))
    partial.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
    trickling = socket.create_connection((host, port))
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            try:
                trickling.send(b"X")
            except OSError:
                return
            time.sleep(0.2)

    threading.Thread(target=trickle, daemon=True).start()
    try:
        for sock in (idle, partial, trickling):
            waited = closed_within(sock, HEADER_TIMEOUT + 3)
            assert waited is not None, "connection still open"
    finally:
        stop.set()
        for sock in (idle, partial, trickling):
            sock.close()


def test_keep_alive_clients_and_slow_answers_are_not_cut(guarded_server: str):
    with httpx.Client(timeout=10) as client:
        for _ in range(3):  # idle between requests for less than the deadline: the same connection serves
            assert client.get(f"{guarded_server}/").status_code == 200
            time.sleep(HEADER_TIMEOUT * 0.7)
        assert client.get(f"{guarded_server}/slow").status_code == 200  # the deadline is for the head only
        assert client.get(f"{guarded_server}/").status_code == 200


def test_install_points_uvicorn_auto_protocol_at_the_guarded_one(monkeypatch):
    from uvicorn.protocols.http import auto

    monkeypatch.setattr(auto, "AutoHTTPProtocol", auto.AutoHTTPProtocol)  # restored after the test
    original = auto.AutoHTTPProtocol
    installed = http_guard.install(7.0)
    assert installed is auto.AutoHTTPProtocol and issubclass(installed, original)
    assert installed.header_timeout == 7.0
    assert http_guard.install(3.0) is installed and installed.header_timeout == 3.0  # idempotent
