"""The forecast service on the BigQuery feature store (the real client against bqemulator on 127.0.0.1).

The session's feature table is loaded into the emulator; the service is started in-process with
``TAMALES_FEATURE_STORE=bigquery``. Ids absent from the fresh snapshot, SQL-looking ones included, are plain
unknown products; while the emulator is down, hits are still served from memory and, once a refresh has
failed, misses are 503 (their point queries fail); once it is back (restarted empty, reloaded) a product
published meanwhile answers 200.
"""

from __future__ import annotations

import socket
import time

import polars as pl
import pytest

from service.contract import BATCH_ROUTE, PREDICT_ROUTE, PREDICTION_FIELDS

NEW_PRODUCT = "NEW-206059999"
INJECTIONS = [
    "206050084' OR '1'='1",
    "x'; DROP TABLE features; --",
    "\\' OR 1=1 --",
    "` OR TRUE --",
    "@id_product",
]


@pytest.fixture
def local_table(features_run) -> pl.DataFrame:
    """The session's feature table, from the local store (whatever backend the settings select)."""
    from features.feature_store import LocalFeatureStore
    from features.settings import get_settings

    return LocalFeatureStore(get_settings().local_feature_store_path).read_all()


def _wait_until_free(*ports: int, timeout: float = 15.0) -> None:
    """Wait until the stopped emulator's ports can be bound again (its dying children may still hold them)."""
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", port))
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
            time.sleep(0.1)


def _eventually(call, status: int, timeout: float = 30.0):
    """``call()`` until it answers ``status`` (or ``timeout``): the last response."""
    deadline = time.monotonic() + timeout
    while (response := call()).status_code != status and time.monotonic() < deadline:
        time.sleep(0.2)
    return response


def _with_new_product(table: pl.DataFrame, source_id: str) -> pl.DataFrame:
    """The table plus a copy of ``source_id``'s rows under ``NEW_PRODUCT`` (published after start-up)."""
    copy = table.filter(pl.col("id_product") == source_id).with_columns(id_product=pl.lit(NEW_PRODUCT))
    return pl.concat([table, copy])


def test_bigquery_backend_lookup_outage_and_recovery(
    local_table, bigquery_settings, bigquery_emulator, forecast_app, known_product, monkeypatch
):
    from starlette.testclient import TestClient

    from features.feature_store import BigQueryFeatureStore, get_feature_store
    from features.settings import get_settings

    monkeypatch.setenv("TAMALES_BQ_TIMEOUT_SECONDS", "2")  # an unreachable store fails fast
    monkeypatch.setenv("TAMALES_FEATURE_CACHE_TTL_SECONDS", "1")  # and the refresher notices within seconds
    get_settings.cache_clear()
    store = get_feature_store()
    assert isinstance(store, BigQueryFeatureStore)
    store.write(local_table)

    with TestClient(forecast_app, raise_server_exceptions=False) as client:
        assert client.get("/readyz").status_code == 200
        hit = client.post(PREDICT_ROUTE, json={"productid": known_product})
        assert hit.status_code == 200, hit.text
        assert tuple(hit.json()) == PREDICTION_FIELDS

        for productid in INJECTIONS:
            response = client.post(PREDICT_ROUTE, json={"productid": productid})
            assert response.status_code == 404, (productid, response.text)
        batch = client.post(BATCH_ROUTE, json={"productids": [known_product, *INJECTIONS[:2]]}).json()
        assert [r["status"] for r in batch["results"]] == [200, 404, 404]
        assert store.latest_rows().keys() == set(local_table["id_product"])  # the table is intact

        bigquery_emulator.stop()
        try:
            assert client.post(PREDICT_ROUTE, json={"productid": known_product}).json() == hit.json()
            down = _eventually(lambda: client.post(PREDICT_ROUTE, json={"productid": NEW_PRODUCT}), 503)
            assert down.status_code == 503, down.text  # once a refresh has failed, a miss asks the store
            assert "feature store unavailable" in down.json()["error"] and "Traceback" not in down.text
        finally:
            _wait_until_free(bigquery_emulator.rest_port, bigquery_emulator.grpc_port)
            bigquery_emulator.start()  # ephemeral: it comes back empty
        store.write(_with_new_product(local_table, known_product))

        back = _eventually(lambda: client.post(PREDICT_ROUTE, json={"productid": NEW_PRODUCT}), 200)
        assert back.status_code == 200, back.text
        assert {k: v for k, v in back.json().items() if k != "productid"} == {
            k: v for k, v in hit.json().items() if k != "productid"
        }
