"""The forecast service's HTTP contract, in-process (``TamalesForecast.to_asgi()`` + a test client).

Runs on the session's sample data: the real features flow filled the local feature store, the real training
flow registered the model, the packaging flow imported it into the BentoML store.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from pathlib import Path

import pytest

from service.contract import BATCH_ROUTE, MAX_BATCH_SIZE, PREDICT_ROUTE, PREDICTION_FIELDS


def _json_error(response, status: int | None = None) -> dict:
    """Assert an error answer: the status (any 4xx if None), a JSON object with a reason, no traceback."""
    if status is None:
        assert 400 <= response.status_code < 500, response.text
    else:
        assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict) and isinstance(body["error"], str) and body["error"], body
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body


def _next_month(month: str) -> str:
    year, mon = int(month[:4]), int(month[5:7])
    return f"{year + mon // 12:04d}-{mon % 12 + 1:02d}"


def test_predict_contract(forecast_client, known_product, feature_rows, trained_model):
    response = forecast_client.post(PREDICT_ROUTE, json={"productid": known_product})
    assert response.status_code == 200, response.text
    body = response.json()
    assert tuple(body) == PREDICTION_FIELDS
    assert body["productid"] == known_product
    assert 0.0 <= body["lower"] <= body["prediction"] <= body["upper"]
    row = feature_rows[known_product]
    assert body["features_as_of"] == f"{row['year_month']:%Y-%m}"
    assert body["forecast_month"] == _next_month(body["features_as_of"])
    assert body["model_version"] == str(trained_model.model_version)


def test_predictions_are_the_training_code_applied_to_the_stored_row(
    forecast_client, feature_rows, trained_model
):
    """The same encoding and the same model as training: the MLflow model on the stored row."""
    import mlflow.xgboost

    from features.schema import encode_row
    from features.settings import get_settings
    from training.forecast import predict_quantiles, spec_of

    settings = get_settings()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    booster = mlflow.xgboost.load_model(f"models:/{settings.model_name}/{trained_model.model_version}")
    for product_id in sorted(feature_rows)[:5]:
        expected = predict_quantiles(
            booster, encode_row(feature_rows[product_id], spec_of(booster).features)
        )[0]
        body = forecast_client.post(PREDICT_ROUTE, json={"productid": product_id}).json()
        got = (body["lower"], body["prediction"], body["upper"])
        assert got == pytest.approx(tuple(expected), rel=1e-4, abs=1e-2), product_id


def test_unknown_product_is_a_404_with_a_reason(forecast_client):
    body = _json_error(forecast_client.post(PREDICT_ROUTE, json={"productid": "999999999"}), 404)
    assert body["productid"] == "999999999" and "unknown product" in body["error"]


@pytest.mark.parametrize(
    "productid",
    ["' OR '1'='1", "1; DROP TABLE features; --", '" OR 1=1 --', "%", "*", "206050084' --", "`x`"],
)
def test_sql_like_ids_are_just_unknown_products(forecast_client, productid):
    _json_error(forecast_client.post(PREDICT_ROUTE, json={"productid": productid}), 404)


def test_the_longest_valid_id_is_accepted(forecast_client):
    _json_error(forecast_client.post(PREDICT_ROUTE, json={"productid": "9" * 64}), 404)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"productid": None},
        {"productid": 206050084},
        {"productid": 2.5},
        {"productid": ["206050084"]},
        {"productid": {"id": "206050084"}},
        {"productid": ""},
        {"productid": "9" * 65},
        {"productid": "2060\x0050084"},
        {"productid": "206050084\n"},
        {"productid": "\x1b[31m206050084"},
        {"productid": "206\u200b050084"},
        {"product_id": "206050084"},
    ],
    ids=lambda b: repr(b)[:40],
)
def test_invalid_bodies_are_4xx_with_a_json_reason(forecast_client, body):
    _json_error(forecast_client.post(PREDICT_ROUTE, json=body), 400)


@pytest.mark.parametrize("raw", [b"not json", b'{"productid": ', b"[]", b'"206050084"', b"null", b"\xff\xfe"])
def test_malformed_json_is_a_400(forecast_client, raw):
    headers = {"content-type": "application/json"}
    _json_error(forecast_client.post(PREDICT_ROUTE, content=raw, headers=headers), 400)


def test_non_json_and_oversized_bodies_are_rejected(forecast_client):
    form = {"content-type": "application/x-www-form-urlencoded"}
    _json_error(forecast_client.post(PREDICT_ROUTE, content=b"productid=1", headers=form), 415)
    multipart = {"content-type": "multipart/form-data; boundary=x"}
    _json_error(forecast_client.post(PREDICT_ROUTE, content=b"--x\r\n", headers=multipart), 415)
    _json_error(forecast_client.post(PREDICT_ROUTE, json={"productid": "1", "pad": "x" * 300_000}), 413)


def test_a_chunked_body_without_content_length_is_capped_too(forecast_client):
    def chunks():  # no Content-Length: the server only learns the size while reading
        yield b'{"productid": "1", "pad": "'
        for _ in range(64):
            yield b"x" * 65536
        yield b'"}'

    headers = {"content-type": "application/json"}
    response = forecast_client.post(PREDICT_ROUTE, content=chunks(), headers=headers)
    assert "content-length" not in response.request.headers
    _json_error(response, 413)
    # the batch route reads its body the same way
    batch = forecast_client.post("/predict_batch", content=chunks(), headers=headers)
    _json_error(batch, 413)


def test_other_routes_and_methods_answer_json(forecast_client):
    _json_error(forecast_client.get(PREDICT_ROUTE), 405)
    _json_error(forecast_client.post("/apis/products/predict/2.0.0", json={"productid": "1"}), 404)
    assert forecast_client.get("/readyz").status_code == 200
    assert forecast_client.get("/livez").status_code == 200


def test_batch_answers_every_id_in_order(forecast_client, feature_rows, trained_model):
    known = sorted(feature_rows)[:3]
    ids = [known[0], "999999999", known[1], known[0], "' OR 1=1 --", known[2]]
    response = forecast_client.post(BATCH_ROUTE, json={"productids": ids})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == str(trained_model.model_version)
    results = body["results"]
    assert [r["productid"] for r in results] == ids
    assert [r["status"] for r in results] == [200, 404, 200, 200, 404, 200]
    single = forecast_client.post(PREDICT_ROUTE, json={"productid": known[1]}).json()
    assert {k: results[2][k] for k in PREDICTION_FIELDS} == single
    assert results[0] == results[3]
    assert "unknown product" in results[1]["error"]


def test_batch_limits(forecast_client, feature_rows):
    ids = (sorted(feature_rows) * MAX_BATCH_SIZE)[:MAX_BATCH_SIZE]
    response = forecast_client.post(BATCH_ROUTE, json={"productids": ids})
    assert response.status_code == 200 and len(response.json()["results"]) == MAX_BATCH_SIZE
    _json_error(forecast_client.post(BATCH_ROUTE, json={"productids": ids + ["x"]}), 400)
    _json_error(forecast_client.post(BATCH_ROUTE, json={"productids": []}), 400)
    _json_error(forecast_client.post(BATCH_ROUTE, json={"productids": ["ok", "bad\x00"]}), 400)
    _json_error(forecast_client.post(BATCH_ROUTE, json={"productids": "206050084"}), 400)
    _json_error(forecast_client.post(BATCH_ROUTE, json={}), 400)


def _hide(path: Path) -> Path:
    hidden = path.with_name(f".hidden-{path.name}")
    path.rename(hidden)
    return hidden


@pytest.fixture
def fast_refresh(monkeypatch):
    """The next service instance refreshes its snapshot every half second (request it before the client)."""
    from features.settings import get_settings

    monkeypatch.setenv("TAMALES_FEATURE_CACHE_TTL_SECONDS", "0.5")
    get_settings.cache_clear()


def _eventually(call, status: int, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while (response := call()).status_code != status and time.monotonic() < deadline:
        time.sleep(0.1)
    return response


def test_store_outage_503_then_recovery(fast_refresh, forecast_client, known_product, packaged_bento):
    """Hits are served from memory during an outage. Once a refresh has failed the snapshot no longer settles
    misses: a miss is a 503 (not a cached 404), from predict and inside a large batch alike, until the store
    is back."""
    from features.settings import get_settings

    store = get_settings().local_feature_store_path
    unknown = [f"12345678{i}" for i in range(10)] + [f"98765432{i}" for i in range(10)]
    hidden = _hide(store)
    try:
        assert forecast_client.post(PREDICT_ROUTE, json={"productid": known_product}).status_code == 200
        miss = _eventually(lambda: forecast_client.post(PREDICT_ROUTE, json={"productid": unknown[0]}), 503)
        assert _json_error_5xx(miss)["productid"] == unknown[0]
        batch = forecast_client.post(BATCH_ROUTE, json={"productids": [known_product, *unknown]}).json()
        assert [r["status"] for r in batch["results"]] == [200] + [503] * len(unknown)
    finally:
        hidden.rename(store)
    back = _eventually(lambda: forecast_client.post(PREDICT_ROUTE, json={"productid": unknown[0]}), 404)
    _json_error(back, 404)
    deadline = time.monotonic() + 20  # until the next refresh has made the snapshot fresh again
    while True:
        batch = forecast_client.post(BATCH_ROUTE, json={"productids": [known_product, *unknown]}).json()
        statuses = [r["status"] for r in batch["results"]]
        if statuses == [200] + [404] * len(unknown) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert statuses == [200] + [404] * len(unknown)


def _json_error_5xx(response) -> dict:
    assert response.status_code == 503, response.text
    body = response.json()
    assert "feature store unavailable" in body["error"] and "Traceback" not in response.text
    return body


def test_not_ready_until_the_feature_store_answers(forecast_app, known_product):
    """Started without a feature store: /readyz is 503 and predictions are 503; ready once it appears."""
    from starlette.testclient import TestClient

    from features.settings import get_settings

    store = get_settings().local_feature_store_path
    hidden = _hide(store)
    try:
        with TestClient(forecast_app, raise_server_exceptions=False) as client:
            _json_error_any(client.get("/readyz"), 503)
            _json_error_5xx(client.post(PREDICT_ROUTE, json={"productid": known_product}))
            hidden.rename(store)
            deadline = time.monotonic() + 30
            while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert client.get("/readyz").status_code == 200
            assert client.post(PREDICT_ROUTE, json={"productid": known_product}).status_code == 200
    finally:
        if hidden.exists():
            hidden.rename(store)


def _json_error_any(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, dict) and body["error"]
    return body


def test_features_as_of_is_the_latest_month_of_the_product(forecast_client, feature_rows):
    latest = max(row["year_month"] for row in feature_rows.values())
    product_id = next(pid for pid, row in sorted(feature_rows.items()) if row["year_month"] == latest)
    body = forecast_client.post(PREDICT_ROUTE, json={"productid": product_id}).json()
    assert body["features_as_of"] == f"{latest:%Y-%m}"
    assert isinstance(latest, dt.date)


def test_short_stale_and_discontinued_products_get_the_wide_fallback(forecast_client, feature_rows):
    """Issue #10 item 6 through the API: a product with 1-2 months of history, one whose latest months are
    missing, a discontinued one — each gets a finite forecast at its last known level with a wide band."""
    from training.forecast import FALLBACK_BAND, MIN_HISTORY, STALE_MONTHS

    odd = {
        pid: row
        for pid, row in feature_rows.items()
        if (row["months_of_history"] or 0) < MIN_HISTORY or (row["months_since_sale"] or 0) > 0
    }
    assert any((r["months_of_history"] or 0) < MIN_HISTORY for r in odd.values())  # the sample has a launch
    assert any((r["months_since_sale"] or 0) > 0 for r in odd.values())  # ... and products that stopped
    for pid, row in odd.items():
        body = forecast_client.post(PREDICT_ROUTE, json={"productid": pid}).json()
        low, mid, high = body["lower"], body["prediction"], body["upper"]
        assert all(map(math.isfinite, (low, mid, high))) and 0 <= low <= mid <= high, body
        assert mid == pytest.approx(
            row["seasonal_forecast"] or row["level_forecast"] or 0.0, rel=1e-3, abs=1e-3
        )
        assert low <= mid * FALLBACK_BAND[0] + 1e-3 and high >= mid * FALLBACK_BAND[1] - 1e-3, body
        if (row["months_since_sale"] or 0) >= STALE_MONTHS:
            assert low == 0.0, body
