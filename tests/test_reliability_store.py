"""Feature store unreachable when the served bento starts: not ready, predictions 503; back: recovers in place.

The session's bento runs under ``bentoml serve`` (two workers) while its feature store is missing: first the
local store's file is absent, then the BigQuery emulator is stopped. ``/readyz`` must answer 503 and the API
503 (JSON, no traceback, as documented in its ``/docs.json``), invalid input still 400. When the store comes back (the file is written; the
emulator restarted — empty, as an ephemeral emulator comes back — and the table re-written), the same server
processes must become ready and answer 200/404 without a restart.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from features.settings import Settings, get_settings
from service.contract import BATCH_ROUTE, PREDICT_ROUTE, PREDICTION_FIELDS
from tests.fixtures import emulators
from tests.fixtures.faults import descendants, start_bento_unready, stop_bento

RECOVERY_SECONDS = 60  # the service retries a never-loaded snapshot every 5 s


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict) and body["error"], body
    assert "Traceback" not in response.text
    return body


def _documented(url: str, method: str, path: str, body: dict | None = None) -> httpx.Response:
    """Call ``path`` through schemathesis and check the answer against the OpenAPI document the server
    publishes: a documented status, content type and body schema (5xx included: these are expected)."""
    import schemathesis
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    operation = schemathesis.openapi.from_url(f"{url}/docs.json")[path][method]
    case = operation.Case(body=body, media_type="application/json") if body else operation.Case()
    response = case.call(base_url=url, timeout=30)
    checks = [status_code_conformance, content_type_conformance, response_schema_conformance]
    case.validate_response(response, checks=checks)
    headers = [(name, value) for name, values in response.headers.items() for value in values]
    return httpx.Response(response.status_code, headers=headers, content=response.content)


def _assert_unavailable(url: str, known: str) -> None:
    _error(_documented(url, "GET", "/readyz"), 503)
    _error(_documented(url, "POST", PREDICT_ROUTE, {"productid": known}), 503)
    for product_id in (known, "999999999"):
        body = _error(httpx.post(f"{url}{PREDICT_ROUTE}", json={"productid": product_id}, timeout=30), 503)
        assert "feature store unavailable" in body["error"] and body["productid"] == product_id
    batch = httpx.post(f"{url}{BATCH_ROUTE}", json={"productids": [known, "999999999"]}, timeout=30)
    assert batch.status_code == 200, batch.text
    assert [r["status"] for r in batch.json()["results"]] == [503, 503]
    _error(httpx.post(f"{url}{PREDICT_ROUTE}", json={"productid": ""}, timeout=10), 400)


def _assert_recovers(url: str, known: str) -> None:
    deadline = time.monotonic() + RECOVERY_SECONDS
    while httpx.get(f"{url}/readyz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "not ready after the store came back"
        time.sleep(0.5)
    # Every worker must have recovered: answers are spread over them, so ask enough times, waiting for
    # a worker whose retry is still due.
    ok = 0
    while ok < 20:
        response = httpx.post(f"{url}{PREDICT_ROUTE}", json={"productid": known}, timeout=30)
        if response.status_code == 200:
            assert tuple(response.json()) == PREDICTION_FIELDS
            ok += 1
        else:
            _error(response, 503)
            assert time.monotonic() < deadline, "a worker did not recover"
            time.sleep(0.5)
    _error(httpx.post(f"{url}{PREDICT_ROUTE}", json={"productid": "999999999"}, timeout=30), 404)


def _serve(tag: str, env: dict[str, str], log: Path):
    env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    return start_bento_unready(tag, env, log)


@pytest.mark.timeout(300)
def test_local_store_absent_at_start_up_then_written(packaged_bento: str, feature_rows: dict, tmp_path: Path):
    known = sorted(feature_rows)[0]
    env = dict(os.environ, TAMALES_STATE_DIR=str(tmp_path / "state"))
    target = Settings(state_dir=tmp_path / "state").local_feature_store_path
    assert not target.exists()
    server = _serve(packaged_bento, env, tmp_path / "serve.log")
    try:
        workers = descendants(server.proc.pid)
        _assert_unavailable(server.url, known)

        staged = target.with_name(f".{target.name}.incoming")
        staged.parent.mkdir(parents=True)
        staged.write_bytes(get_settings().local_feature_store_path.read_bytes())
        staged.rename(target)  # appears atomically, as the features flow publishes it
        _assert_recovers(server.url, known)
        assert server.proc.poll() is None and descendants(server.proc.pid) == workers  # no restart
    finally:
        stop_bento(server)


@pytest.mark.timeout(300)
def test_bigquery_down_at_start_up_then_restarted_and_reloaded(
    packaged_bento: str, feature_rows: dict, bigquery_emulator, monkeypatch, tmp_path: Path
):
    from features.feature_store import BigQueryFeatureStore, LocalFeatureStore

    known = sorted(feature_rows)[0]
    table = LocalFeatureStore(get_settings().local_feature_store_path).read_all()
    bigquery_emulator.stop()
    env = dict(
        os.environ,
        TAMALES_FEATURE_STORE="bigquery",
        TAMALES_BQ_PROJECT=bigquery_emulator.project,
        TAMALES_BQ_ENDPOINT=bigquery_emulator.endpoint,
        TAMALES_BQ_TIMEOUT_SECONDS="2",
    )
    server = None
    try:
        server = _serve(packaged_bento, env, tmp_path / "serve.log")
        workers = descendants(server.proc.pid)
        _assert_unavailable(server.url, known)

        bigquery_emulator.start()  # back, but empty: still unavailable until the table is there
        _error(httpx.get(f"{server.url}/readyz", timeout=10), 503)
        emulators.point_settings_at(monkeypatch, bigquery=bigquery_emulator)
        store = BigQueryFeatureStore(get_settings())
        assert store.write(table) == table.height
        _assert_recovers(server.url, known)
        assert server.proc.poll() is None and descendants(server.proc.pid) == workers  # no restart
        assert store.read_all().equals(table)  # the reload is complete
    finally:
        if server is not None:
            stop_bento(server)
        bigquery_emulator.start()
