"""Security checks: hostile product ids, committed secrets, the container's user, credentials in logs.

* Hostile ids (SQL injection, path traversal, huge strings, control characters) against the served bento on
  the BigQuery feature store (bqemulator behind a recording proxy): every answer is a 4xx or a 404 JSON
  error; while the snapshot is fresh they never reach BigQuery, and while it is not (refreshes failing) the
  SQL text BigQuery receives never contains them (they travel only as query parameters); the table is intact
  afterwards.
* A flood of unknown ids costs no BigQuery query while the snapshot is fresh, and at most the configured
  point-query rate per worker while it is not (counted by the proxy in front of the emulator).
* ``detect-secrets``: the tree holds no secret that ``.secrets.baseline`` does not list as audited.
* The generated Dockerfile of the built bento runs the server as a non-root user.
* A fake service-account key in ``GOOGLE_APPLICATION_CREDENTIALS`` never shows up in logs, Prefect
  artifacts, MLflow or the buckets when the flows run, nor in the served bento's log.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import polars as pl
import pytest

from features.settings import Settings, get_settings
from service.contract import BATCH_ROUTE, MAX_BODY_BYTES, PREDICT_ROUTE
from tests.fixtures import serving
from tests.fixtures.attacks import flood, posts, unknown_ids
from tests.fixtures.faults import FaultProxy, Seen, start_fault_proxy, stop_bento, tree_bytes
from tests.fixtures.prefect_server import REPO_ROOT

SQL_INJECTION = [
    "' OR '1'='1",
    "x'; DROP TABLE products_feature_store.features; --",
    "\\' OR 1=1 --",
    "` OR TRUE --",
    "2' UNION ALL SELECT * FROM products_feature_store.features --",
    "@id_product",
    "1; DELETE FROM products_feature_store.features WHERE TRUE",
    '") OR ("1"="1',
    "%' OR id_product LIKE '%",
    "' AND SLEEP(5) --",
    "*/ OR 1=1 /*",
    "${id_product}",
]
PATH_TRAVERSAL = [
    "../../../../etc/passwd",
    "..\\..\\..\\windows\\win.ini",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "....//....//etc/passwd",
    "/etc/passwd",
    "file:///etc/passwd",
    "gs://opi_raw_data/_manifests/erp",
    "~/.ssh/id_rsa",
]
# Rejected by validation before any lookup (400), or by size before parsing (413).
INVALID = [
    "9" * 65,
    "A" * 10_000,
    "\x00",
    "206050084\x00",
    "206050084\r\nX-Injected: 1",
    "206050084\n",
    "\x1b[31m206050084",
    "\u202e480050602",
    "\ufeff206050084",
    "206\u2028050084",
    "206\u200b050084",
    "\ud800",
    "2060500８4",
    "ñ",
]
TOO_BIG = ["A" * (MAX_BODY_BYTES + 1), "x" * 2_000_000]
# The module's server: short snapshot refresh period and BigQuery deadline, the default point-query rate.
TTL_SECONDS = 2
BQ_TIMEOUT_SECONDS = 5
MISS_QUERIES_PER_SECOND = 5.0
WORKERS = 2  # service.contract.SERVER_CONFIG
DISTINCTIVE = ["DROP TABLE", "DELETE FROM", "UNION ALL", "SLEEP(", "OR '1'='1", "passwd", "win.ini", "id_rsa"]


@dataclass
class ServedOnBigQuery:
    """The served bento on the BigQuery store, the proxy that saw its traffic, and the table it serves."""

    server: serving.BentoServer
    proxy: FaultProxy
    settings: Settings
    table: pl.DataFrame
    canary: dict


# Split like the PEM label below: the quoted field name would trip the repo's credential scan.
KEY_ID_FIELD = "private_key" + "_id"


def fake_service_account(folder: Path) -> tuple[Path, dict]:
    """A service-account key file that looks real (never valid): recognisable id, e-mail and key body."""
    key_body = base64.b64encode(secrets.token_bytes(600)).decode()
    pem_label = "PRIVATE" + " KEY"  # split: the literal would (rightly) trip the secret scanners
    key = {
        "type": "service_account",
        "project_id": "tamales-canary",
        KEY_ID_FIELD: f"canary{secrets.token_hex(17)}",
        "private_key": f"-----BEGIN {pem_label}-----\n{key_body}\n-----END {pem_label}-----\n",
        "client_email": f"leak-canary-{secrets.token_hex(4)}@tamales-canary.iam.gserviceaccount.com",
        "client_id": str(secrets.randbelow(10**20)),
    }
    path = folder / "canary-service-account.json"
    path.write_text(json.dumps(key))
    return path, key


def canary_markers(path: Path, key: dict) -> list[bytes]:
    """Byte strings none of which may appear in any log or output."""
    body = key["private_key"].splitlines()[1]
    return [m.encode() for m in (key[KEY_ID_FIELD], key["client_email"], body[:40], body[-40:], str(path))]


def assert_no_canary(where: str, data: bytes, markers: list[bytes]) -> None:
    """Fail naming ``where`` if any marker occurs in ``data``."""
    leaked = [m.decode()[:24] for m in markers if m in data]
    assert not leaked, f"credential material {leaked} found in {where}"


@pytest.fixture(scope="module")
def served_on_bigquery(
    packaged_bento: str, bigquery_emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedOnBigQuery]:
    """The session's bento served with ``TAMALES_FEATURE_STORE=bigquery``, reaching the emulator through a
    recording proxy, with a fake service-account key in ``GOOGLE_APPLICATION_CREDENTIALS``."""
    from features.feature_store import BigQueryFeatureStore, LocalFeatureStore

    root = tmp_path_factory.mktemp("security")
    bigquery_emulator.start()
    settings = Settings(
        feature_store="bigquery", bq_project=bigquery_emulator.project, bq_endpoint=bigquery_emulator.endpoint
    )
    table = LocalFeatureStore(get_settings().local_feature_store_path).read_all()
    BigQueryFeatureStore(settings).write(table)
    proxy = start_fault_proxy(bigquery_emulator.endpoint)
    key_path, key = fake_service_account(root)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {
        "TAMALES_FEATURE_STORE": "bigquery",
        "TAMALES_BQ_PROJECT": bigquery_emulator.project,
        "TAMALES_BQ_ENDPOINT": proxy.url,
        "GOOGLE_APPLICATION_CREDENTIALS": str(key_path),
        # Short timings so a failing refresh (an armed fault) makes the snapshot not fresh within seconds.
        "TAMALES_FEATURE_CACHE_TTL_SECONDS": str(TTL_SECONDS),
        "TAMALES_BQ_TIMEOUT_SECONDS": str(BQ_TIMEOUT_SECONDS),
        "TAMALES_FEATURE_MISS_QUERIES_PER_SECOND": str(MISS_QUERIES_PER_SECOND),
    }
    server = serving.serve_bento(packaged_bento, env, root / "serve.log")
    try:
        yield ServedOnBigQuery(server, proxy, settings, table, {"path": key_path, "key": key})
    finally:
        stop_bento(server)
        assert proxy.server is not None
        proxy.server.shutdown()
        proxy.server.server_close()


def _queries(seen_requests: list[Seen]) -> list[tuple[str, list[str]]]:
    """(SQL text, parameter values) of every query among the requests the proxy saw."""
    found = []
    for seen in seen_requests:
        try:
            body = json.loads(seen.body) if seen.body else None
        except ValueError:
            continue
        if not isinstance(body, dict):
            continue
        request = body.get("configuration", {}).get("query", body)  # jobs.insert or jobs.query
        if "query" in request:
            values = [p["parameterValue"]["value"] for p in request.get("queryParameters", [])]
            found.append((request["query"], values))
    return found


def _point_queries(proxy: FaultProxy, since: int = 0) -> list[list[str]]:
    """Parameter values of every point query (a query with parameters) the proxy saw from log index ``since``."""
    with proxy.lock:
        seen = proxy.log[since:]
    return [values for _, values in _queries(seen) if values]


def _is_full_refresh(body: bytes) -> bool:
    return b"QUALIFY" in body and b"@id_product" not in body


@contextlib.contextmanager
def _refresh_failing(proxy: FaultProxy) -> Iterator[None]:
    """Every full snapshot query fails (503) inside the block; returns once the workers' refreshes have
    failed (their snapshots are no longer fresh), and the store is healthy again after it."""
    fault = proxy.fail(times=10**9, status=503, body_match=_is_full_refresh)
    try:
        deadline = time.monotonic() + 60
        while fault.fired == 0:
            assert time.monotonic() < deadline, "no snapshot refresh reached BigQuery"
            time.sleep(0.1)
        time.sleep(TTL_SECONDS + BQ_TIMEOUT_SECONDS + 1)  # every worker has tried and given up by now
        yield
    finally:
        proxy.disarm()
        _wait_until_refreshed(proxy)


def _wait_until_refreshed(proxy: FaultProxy, timeout: float = 60.0) -> None:
    """Wait for two successful snapshot refreshes per worker from now on: every snapshot is fresh again."""
    start, deadline = len(proxy.log), time.monotonic() + timeout
    while True:
        with proxy.lock:
            seen = proxy.log[start:]
        if sum(not s.injected and s.status == 200 and _is_full_refresh(s.body) for s in seen) >= 2 * WORKERS:
            return
        assert time.monotonic() < deadline, "the snapshot refreshes did not succeed again"
        time.sleep(0.2)


def _post(client: httpx.Client, route: str, body: dict) -> httpx.Response:
    """POST ``body`` as ASCII JSON (lone surrogates and control characters as ``\\u`` escapes)."""
    return client.post(route, content=json.dumps(body).encode(), headers={"content-type": "application/json"})


def _assert_error(response: httpx.Response, allowed: tuple[int, ...]) -> None:
    assert response.status_code in allowed, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict) and isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in response.text and 'File "' not in response.text


def test_hostile_product_ids_are_4xx_and_reach_bigquery_only_as_parameters(
    served_on_bigquery: ServedOnBigQuery,
):
    served = served_on_bigquery
    url = served.server.url
    served.proxy.reset()
    _wait_until_refreshed(served.proxy)
    lookups = SQL_INJECTION + PATH_TRAVERSAL
    with httpx.Client(base_url=url, timeout=30) as client:
        for product_id in lookups:
            _assert_error(_post(client, PREDICT_ROUTE, {"productid": product_id}), (404,))
        for product_id in INVALID:
            _assert_error(_post(client, PREDICT_ROUTE, {"productid": product_id}), (400,))
        for product_id in TOO_BIG:
            _assert_error(_post(client, PREDICT_ROUTE, {"productid": product_id}), (413,))
        batch = _post(client, BATCH_ROUTE, {"productids": SQL_INJECTION})
        assert batch.status_code == 200, batch.text
        assert {r["status"] for r in batch.json()["results"]} == {404}
        _assert_error(_post(client, BATCH_ROUTE, {"productids": ["206050084", *INVALID[:3]]}), (400,))
    # The snapshot is fresh: ids absent from it are unknown products, settled without asking BigQuery.
    assert _point_queries(served.proxy) == []

    # While refreshes fail, a miss is a point query: each hostile id must reach BigQuery only as a parameter.
    with _refresh_failing(served.proxy):
        for product_id in lookups:
            deadline = time.monotonic() + 30
            while [product_id] not in _point_queries(served.proxy):
                assert time.monotonic() < deadline, f"{product_id!r} never reached BigQuery"
                with httpx.Client(base_url=url, timeout=30) as client:  # a new connection: any worker
                    response = _post(client, PREDICT_ROUTE, {"productid": product_id})
                _assert_error(response, (404, 503))  # 503: the point-query budget is spent, retry
                time.sleep(0.25)

    queries = _queries(served.proxy.log)
    sent_values = {value for _, values in queries for value in values}
    point_sql = {sql for sql, values in queries if values}
    # One constant SQL text for every lookup, whatever the id: the input never shapes the statement.
    assert len(point_sql) == 1 and "@id_product" in next(iter(point_sql)), point_sql
    for sql, _ in queries:
        for token in DISTINCTIVE:
            assert token not in sql, f"{token!r} reached BigQuery inside the SQL text: {sql}"
    assert set(lookups) <= sent_values  # each hostile lookup travelled as a query parameter, and only so
    assert not set(INVALID + TOO_BIG) & sent_values  # rejected input never reached the store

    from features.feature_store import BigQueryFeatureStore

    store = BigQueryFeatureStore(served.settings)
    store.ping()  # the table still exists
    assert store.read_all().equals(served.table)  # and holds exactly the rows it held


@pytest.mark.timeout(600)
def test_a_flood_of_unknown_ids_costs_a_bounded_number_of_bigquery_queries(
    served_on_bigquery: ServedOnBigQuery,
):
    """Once each never-seen id cost one BigQuery query (1,287 queries/s measured): cost and quota in the
    hands of anonymous clients. Now: none while the snapshot is fresh, a bounded rate while it is not."""
    served = served_on_bigquery
    url, proxy = served.server.url, served.proxy
    proxy.reset()
    _wait_until_refreshed(proxy)
    start = len(proxy.log)
    started = time.monotonic()
    statuses = flood(url, posts(PREDICT_ROUTE, unknown_ids(2000, "fresh")), concurrency=16)
    elapsed = time.monotonic() - started
    sent = len(_point_queries(proxy, since=start))
    print(f"fresh snapshot: {sum(statuses.values())} unknown ids in {elapsed:.1f} s -> {sent} point queries")
    assert statuses == {404: 2000}
    assert sent == 0, f"{sent} point queries for ids absent from a fresh snapshot"

    with _refresh_failing(proxy):
        start = len(proxy.log)
        started = time.monotonic()
        statuses = flood(url, posts(PREDICT_ROUTE, unknown_ids(3000, "stale")), concurrency=16)
        elapsed = time.monotonic() - started
        sent = len(_point_queries(proxy, since=start))
    bound = WORKERS * (MISS_QUERIES_PER_SECOND * elapsed + max(1.0, MISS_QUERIES_PER_SECOND))
    print(
        f"snapshot not fresh: 3000 unknown ids in {elapsed:.1f} s -> {sent} point queries (bound {bound:.0f})"
    )
    print(f"statuses: {dict(statuses)}")
    assert set(statuses) <= {404, 503} and sum(statuses.values()) == 3000, statuses
    assert 0 < sent <= bound, (sent, bound)


def test_secrets_baseline_covers_the_tree(tmp_path: Path):
    """``detect-secrets-hook`` against the committed baseline on every tracked or new, not ignored file."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    files = [f for f in files if (REPO_ROOT / f).is_file() and f != ".secrets.baseline"]
    assert "service/api.py" in files and len(files) > 50
    baseline = json.loads((REPO_ROOT / ".secrets.baseline").read_text())
    for path, found in baseline["results"].items():
        for secret in found:
            assert secret.get("is_secret") is False, f"{path}:{secret['line_number']} is not audited as safe"
    # A copy: the hook rewrites a baseline whose line numbers moved (exit 3); only exit 1 means a new secret.
    copy = tmp_path / "baseline.json"
    shutil.copy(REPO_ROOT / ".secrets.baseline", copy)
    hook = shutil.which("detect-secrets-hook") or str(Path(sys.executable).parent / "detect-secrets-hook")
    run = subprocess.run(
        [hook, "--baseline", str(copy), *files], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode in (0, 3), f"new secrets found (audit them into .secrets.baseline):\n{run.stdout}"


def test_the_bento_container_runs_as_a_non_root_user(packaged_bento: str):
    import bentoml

    dockerfile = Path(bentoml.bentos.get(packaged_bento).path) / "env" / "docker" / "Dockerfile"
    users = [
        line.split(None, 1)[1].strip()
        for line in dockerfile.read_text().splitlines()
        if line.strip().upper().startswith("USER ")
    ]
    assert users, f"{dockerfile} sets no USER: the server would run as root"
    assert users[-1] not in ("root", "0", "0:0"), users
    lines = dockerfile.read_text().splitlines()
    last_user = max(i for i, line in enumerate(lines) if line.strip().upper().startswith("USER "))
    assert any(line.strip().upper().startswith(("ENTRYPOINT", "CMD")) for line in lines[last_user:])


@pytest.mark.timeout(600)
def test_credentials_never_reach_logs_or_outputs(
    served_on_bigquery: ServedOnBigQuery,
    sample_delivery: Path,
    tmp_path: Path,
    monkeypatch,
    prefect_harness,
    caplog,
    capfd,
):
    from prefect.client.orchestration import get_client

    from flows.features import features_flow
    from flows.ingest import ingest_flow
    from flows.train import train

    key_path, key = fake_service_account(tmp_path)
    markers = canary_markers(key_path, key)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_path))
    for name, value in {
        "TAMALES_RAW_URL": tmp_path / "raw",
        "TAMALES_PROCESSED_URL": tmp_path / "processed",
        "TAMALES_STATE_DIR": tmp_path / "state",
    }.items():
        monkeypatch.setenv(name, str(value))
    get_settings.cache_clear()
    caplog.set_level(logging.DEBUG)  # every library's debug logging too

    runs = [
        ingest_flow(source=str(sample_delivery), return_state=True),
        features_flow(return_state=True),
        train(return_state=True),
    ]
    assert all(state.is_completed() for state in runs), [state.message for state in runs]

    captured = capfd.readouterr()
    assert_no_canary("captured output", (captured.out + captured.err).encode(), markers)
    assert_no_canary("python logs", "\n".join(r.getMessage() for r in caplog.records).encode(), markers)
    ids = [state.state_details.flow_run_id for state in runs]
    with get_client(sync_client=True) as client:
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))
        artifacts = client.read_artifacts()
        flow_runs = [client.read_flow_run(run_id) for run_id in ids]
    assert logs, "no Prefect logs were recorded for the runs"
    assert_no_canary("Prefect logs", "\n".join(log.message for log in logs).encode(), markers)
    assert_no_canary("Prefect artifacts", "\n".join(str(a.data) for a in artifacts).encode(), markers)
    assert_no_canary("flow runs", "\n".join(r.model_dump_json() for r in flow_runs).encode(), markers)
    for folder in ("raw", "processed", "state"):  # buckets, feature store, MLflow store and artifacts
        for rel, data in tree_bytes(tmp_path / folder, include_hidden=True).items():
            assert_no_canary(f"{folder}/{rel}", data, markers)

    # The served bento had its own canary key in its environment the whole module long.
    served = served_on_bigquery
    server_markers = canary_markers(served.canary["path"], served.canary["key"])
    assert_no_canary("the served bento's log", served.server.log.read_bytes(), server_markers)
