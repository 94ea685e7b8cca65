"""Attacks on the served bento (``bentoml serve``, two workers) that once hurt it, replayed against a real server.

The module's server runs the session's bento on its own copy of the local feature store, with short timings
so each attack plays out in seconds: snapshot refresh every second, readiness age limit 5 s, request-head
deadline 2 s. Each test names the defect it reproduces (issue 9 of the tracker):

* 10,000 distinct unknown paths once grew ``/metrics`` by ~4 KB each (a Prometheus label set per path) and the
  workers' memory with it;
* a feature-store file corrupted so that polars panics once made a miss hang 30 s and answer a plain-text 500,
  and killed the snapshot refresher of both workers for good (``/readyz`` stayed 200, no reload after repair);
* during a store outage an unknown id was a 503 from predict but a 404 inside a large batch;
* malformed HTTP got uvicorn's plain-text 400; ``/readyz/`` was a 307 whose ``Location`` came from the client's
  ``Host`` header; the docs page loaded Google Tag Manager; idle and slowloris connections were never closed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import socket
import string
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import httpx
import polars as pl
import pytest

from features.settings import Settings, get_settings
from service.contract import BATCH_ROUTE, PREDICT_ROUTE, PREDICTION_FIELDS
from tests.fixtures import serving
from tests.fixtures.attacks import (
    closed_within,
    flood,
    panicking_parquet,
    posts,
    publish,
    raw_exchange,
    tree_rss_kb,
    unknown_ids,
)
from tests.fixtures.faults import descendants, stop_bento

TTL_SECONDS = 1
MAX_AGE_SECONDS = 5
HEADER_TIMEOUT_SECONDS = 2


@dataclass
class Hardened:
    """The module's server and the feature-store file it reads."""

    server: serving.BentoServer
    store: Path
    known: str

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def hardened(packaged_bento: str, feature_rows: dict, tmp_path_factory) -> Iterator[Hardened]:
    root = tmp_path_factory.mktemp("hardening")
    store = Settings(state_dir=root / "state").local_feature_store_path
    store.parent.mkdir(parents=True)
    store.write_bytes(get_settings().local_feature_store_path.read_bytes())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {
        "TAMALES_STATE_DIR": str(root / "state"),
        "TAMALES_FEATURE_CACHE_TTL_SECONDS": str(TTL_SECONDS),
        "TAMALES_FEATURE_SNAPSHOT_MAX_AGE_SECONDS": str(MAX_AGE_SECONDS),
        "TAMALES_HTTP_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT_SECONDS),
    }
    server = serving.serve_bento(packaged_bento, env, root / "serve.log")
    try:
        yield Hardened(server, store, sorted(feature_rows)[0])
    finally:
        stop_bento(server)


def _json_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and isinstance(body["error"], str) and body["error"], body
    return body


def _every_worker(url: str, path: str, status: int, tries: int = 12) -> bool:
    """True if ``tries`` requests on fresh connections (spread over the workers) all answer ``status``."""
    for _ in range(tries):
        with httpx.Client(timeout=10) as client:  # a new connection each time
            if client.get(f"{url}{path}").status_code != status:
                return False
    return True


def _every_worker_posts(url: str, product_id: str, status: int, tries: int = 8) -> bool:
    """True if predicting ``product_id`` on ``tries`` fresh connections always answers ``status``."""
    for _ in range(tries):
        with httpx.Client(timeout=10) as client:
            if client.post(f"{url}{PREDICT_ROUTE}", json={"productid": product_id}).status_code != status:
                return False
    return True


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.25)


def _metrics_size(url: str, limit: int = 10_000_000) -> int:
    """Bytes of ``/metrics`` (reading stops past ``limit``: the pre-fix server could serve hundreds of MB)."""
    size = 0
    with httpx.stream("GET", f"{url}/metrics", timeout=120) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                break
    return size


@pytest.mark.timeout(600)
def test_ten_thousand_unknown_paths_leave_metrics_and_memory_flat(hardened: Hardened):
    url, rng = hardened.url, random.Random(9)
    alphabet = string.ascii_lowercase + string.digits + "-_"

    def paths(count: int, tag: str) -> list[tuple[str, str, None]]:
        return [
            ("GET", f"/{tag}-{i}-" + "".join(rng.choices(alphabet, k=rng.randint(8, 256))), None)
            for i in range(count)
        ]

    # Warm-up: every kind of request once per connection, so allocator and label sets exist before measuring.
    warm = [*paths(400, "warm"), *posts(PREDICT_ROUTE, [hardened.known] * 200), ("GET", "/livez", None)]
    assert set(flood(url, warm)) <= {200, 404}
    time.sleep(1)
    rss_before, metrics_before = tree_rss_kb(hardened.server.proc.pid), _metrics_size(url)

    statuses = flood(url, paths(10_000, "nope"), concurrency=8)
    assert statuses == {404: 10_000}
    time.sleep(1)
    rss_after, metrics_after = tree_rss_kb(hardened.server.proc.pid), _metrics_size(url)
    print(f"/metrics {metrics_before} -> {metrics_after} bytes; RSS {rss_before} -> {rss_after} kB")
    assert metrics_after < 100_000, f"/metrics grew to {metrics_after} bytes"
    assert rss_after <= rss_before * 1.05, f"server RSS grew {rss_before} -> {rss_after} kB"
    sample = httpx.get(f"{url}/nope-{'x' * 2000}", timeout=10)
    _json_error(sample, 404)


@pytest.mark.timeout(600)
def test_a_store_file_that_makes_polars_panic_never_kills_the_refresher(hardened: Hardened, feature_rows):
    url, store = hardened.url, hardened.store
    good = store.read_bytes()
    workers = descendants(hardened.server.proc.pid)
    publish(store, panicking_parquet(good))
    try:
        # Misses: never a hang, never a 500 — a 404 while the snapshot is fresh, then a JSON 503 once the
        # refresher has found the file unreadable (the point query panics as well).
        def miss_is_503() -> bool:
            started = time.monotonic()
            response = httpx.post(f"{url}{PREDICT_ROUTE}", json={"productid": "999999999"}, timeout=10)
            assert time.monotonic() - started < 8, "a miss hung"
            assert response.status_code in (404, 503), (response.status_code, response.text[:300])
            _json_error(response, response.status_code)
            return response.status_code == 503

        _wait_for(miss_is_503, 30, "a miss on the corrupt store is a JSON 503")
        hit = httpx.post(f"{url}{PREDICT_ROUTE}", json={"productid": hardened.known}, timeout=10)
        assert hit.status_code == 200, hit.text  # hits are served from memory meanwhile
        # Past the age limit every worker reports it cannot refresh its snapshot.
        _wait_for(lambda: _every_worker(url, "/readyz", 503), 30, "/readyz 503 on every worker")
    finally:
        # Repaired, with one product more: both workers must reload it (their refreshers are alive).
        table = pl.read_parquet(io.BytesIO(good))
        added = table.filter(pl.col("id_product") == hardened.known).with_columns(id_product=pl.lit("NEW-1"))
        from features.feature_store import LocalFeatureStore

        LocalFeatureStore(store).write(pl.concat([table, added]))
    _wait_for(lambda: _every_worker(url, "/readyz", 200), 30, "/readyz 200 on every worker after the repair")
    for _ in range(12):
        with httpx.Client(timeout=10) as client:
            response = client.post(f"{url}{PREDICT_ROUTE}", json={"productid": "NEW-1"})
            assert response.status_code == 200 and tuple(response.json()) == PREDICTION_FIELDS, response.text
    assert hardened.server.proc.poll() is None and descendants(hardened.server.proc.pid) == workers
    log = hardened.server.log.read_text(errors="replace")
    assert "polars panicked" in log and "Exception in ASGI application" not in log


@pytest.mark.timeout(300)
def test_predict_and_a_large_batch_agree_during_a_store_outage(hardened: Hardened):
    url, store = hardened.url, hardened.store
    ids = ["123456789", *unknown_ids(40, "outage"), hardened.known]
    hidden = store.with_name(f".hidden-{store.name}")
    store.rename(hidden)
    try:
        _wait_for(lambda: _every_worker_posts(url, ids[0], 503), 30, "a miss during the outage is a 503")
        for _ in range(4):  # whichever worker takes the batch: the same answer as predict gave
            batch = httpx.post(f"{url}{BATCH_ROUTE}", json={"productids": ids}, timeout=30)
            assert batch.status_code == 200, batch.text
            statuses = [r["status"] for r in batch.json()["results"]]
            assert statuses[0] == 503 and statuses[-1] == 200, statuses
            assert set(statuses[1:-1]) == {503}, statuses
    finally:
        hidden.rename(store)

    def batch_settled() -> bool:
        batch = httpx.post(f"{url}{BATCH_ROUTE}", json={"productids": ids}, timeout=30).json()
        return [r["status"] for r in batch["results"]] == [404] * (len(ids) - 1) + [200]

    _wait_for(lambda: _every_worker_posts(url, ids[0], 404), 30, "unknown again once the store is back")
    _wait_for(batch_settled, 30, "the batch agrees once the store is back")


MALFORMED = {
    "bad Content-Length": b"POST /apis/products/predict/1.0.0 HTTP/1.1\r\nHost: t\r\n"
    b"Content-Type: application/json\r\nContent-Length: 12abc\r\n\r\n{}",
    "two Content-Lengths": b"POST /apis/products/predict/1.0.0 HTTP/1.1\r\nHost: t\r\n"
    b"Content-Length: 2\r\nContent-Length: 5\r\n\r\n{}",
    "bad chunk size": b"POST /apis/products/predict/1.0.0 HTTP/1.1\r\nHost: t\r\n"
    b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n",
    "unknown method": b"FOO / HTTP/1.1\r\nHost: t\r\n\r\n",
    "garbage request line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    "header without colon": b"GET /livez HTTP/1.1\r\nHost t\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_http_is_answered_with_a_json_4xx(hardened: Hardened, case: str):
    status, headers, body = raw_exchange(hardened.url, MALFORMED[case])
    assert 400 <= status < 500, (status, headers, body[:200])
    assert headers.get("content-type", "").startswith("application/json"), (status, headers, body[:200])
    assert isinstance(json.loads(body)["error"], str)


@pytest.mark.parametrize("path", ["/readyz/", "/livez/", "/docs.json/", f"{PREDICT_ROUTE}/", "/metrics/"])
def test_a_trailing_slash_is_a_json_404_not_a_redirect(hardened: Hardened, path: str):
    headers = {"Host": "attacker.example"}
    response = httpx.get(f"{hardened.url}{path}", headers=headers, timeout=10, follow_redirects=False)
    _json_error(response, 404)
    assert "location" not in response.headers
    post = httpx.post(f"{hardened.url}{path}", json={"productid": "1"}, headers=headers, timeout=10)
    _json_error(post, 404)


class _Resources(HTMLParser):
    """Every URL an HTML page makes a browser load (src/href of scripts, styles, icons, images, frames) and
    the text of its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href", "data", "poster"):
            if values.get(name) and not (tag == "a" and name == "href"):
                self.urls.append(values[name])
        self._in_script = tag == "script" and not values.get("src")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


def test_the_docs_page_loads_nothing_from_another_origin(hardened: Hardened):
    import base64
    import hashlib

    page = httpx.get(f"{hardened.url}/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "googletagmanager" not in page.text.lower() and "gtm" not in page.text.lower()
    found = _Resources()
    found.feed(page.text)
    assert found.urls, "the page loads no Swagger UI assets"
    for ref in found.urls:
        assert "//" not in ref and ":" not in ref, f"the page loads {ref} from elsewhere"
        asset = httpx.get(f"{hardened.url}/{ref.removeprefix('./').lstrip('/')}", timeout=10)
        assert asset.status_code == 200, ref  # served by the service itself, no CDN
    # The browser is told to refuse every other origin; the inline initializer is allowed by its hash.
    csp = {
        d.split()[0]: d.split()[1:] for d in page.headers["content-security-policy"].split(";") if d.strip()
    }
    assert csp["default-src"] == ["'none'"]
    for directive, sources in csp.items():
        assert not [s for s in sources if "//" in s or s in ("*", "http:", "https:")], (directive, sources)
    for script in found.inline_scripts:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp["script-src"]
        assert "validatorUrl: null" in script  # Swagger UI's online validator badge would call home
    spec = httpx.get(f"{hardened.url}/docs.json", timeout=10).json()
    description = spec["info"].get("description", "")
    assert "![" not in description or "](http" not in description, description  # no remote badge images


@pytest.mark.timeout(120)
def test_idle_and_slowloris_connections_are_closed(hardened: Hardened):
    host, port = "127.0.0.1", int(hardened.url.rsplit(":", 1)[1])
    idle = [socket.create_connection((host, port)) for _ in range(20)]
    partial = []
    for _ in range(20):
        sock = socket.create_connection((host, port))
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        partial.append(sock)
    trickling = [socket.create_connection((host, port)) for _ in range(5)]
    stop = threading.Event()

    def trickle() -> None:  # one byte of headers every 0.3 s: arriving bytes must not extend the deadline
        while not stop.is_set():
            for sock in trickling:
                with contextlib.suppress(OSError):  # closed by the server: the point
                    sock.send(b"a")
            time.sleep(0.3)

    feeder = threading.Thread(target=trickle, daemon=True)
    feeder.start()
    try:
        # A well-behaved keep-alive client is not affected: requests on one connection 1.5 s apart.
        with httpx.Client(timeout=10) as client:
            for _ in range(3):
                assert client.get(f"{hardened.url}/livez").status_code == 200
                time.sleep(1.5)
        limit = HEADER_TIMEOUT_SECONDS + 6
        for kind, sockets in (("idle", idle), ("partial head", partial), ("slowloris", trickling)):
            for sock in sockets:
                assert closed_within(sock, limit) is not None, f"an {kind} connection is open after {limit} s"
    finally:
        stop.set()
        for sock in idle + partial + trickling:
            sock.close()
