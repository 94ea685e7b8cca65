"""The BUILT bento served by ``bentoml serve`` in a child process, called over real HTTP on 127.0.0.1."""

from __future__ import annotations

import httpx
import pytest

from service.contract import BATCH_ROUTE, PREDICT_ROUTE, PREDICTION_FIELDS


@pytest.fixture(scope="module")
def http(bento_server):
    with httpx.Client(base_url=bento_server.url, timeout=30) as client:
        yield client


def test_the_served_bento_answers_the_contract(http, known_product, trained_model):
    response = http.post(PREDICT_ROUTE, json={"productid": known_product})
    assert response.status_code == 200, response.text
    body = response.json()
    assert tuple(body) == PREDICTION_FIELDS
    assert body["productid"] == known_product
    assert body["model_version"] == str(trained_model.model_version)
    assert 0 <= body["lower"] <= body["prediction"] <= body["upper"]


def test_errors_over_http_are_json_without_tracebacks(http):
    cases = [
        (http.post(PREDICT_ROUTE, json={"productid": "no-such-product"}), 404),
        (http.post(PREDICT_ROUTE, json={"productid": 206050084}), 400),
        (http.post(PREDICT_ROUTE, json={"productid": "x" * 65}), 400),
        (http.post(PREDICT_ROUTE, json={}), 400),
        (http.post(PREDICT_ROUTE, content=b"{nope", headers={"content-type": "application/json"}), 400),
        (http.post(PREDICT_ROUTE, content=b"a", headers={"content-type": "text/plain"}), 415),
        (http.get(PREDICT_ROUTE), 405),
        (http.get("/no/such/route"), 404),
    ]
    for response, status in cases:
        assert response.status_code == status, (status, response.text)
        assert response.headers["content-type"].startswith("application/json"), response.headers
        assert response.json()["error"] and "Traceback" not in response.text


def test_batch_over_http(http, feature_rows):
    ids = [*sorted(feature_rows)[:2], "no-such-product"]
    response = http.post(BATCH_ROUTE, json={"productids": ids})
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == [200, 200, 404]


def test_health_and_metrics(http):
    assert http.get("/readyz").status_code == 200
    assert http.get("/livez").status_code == 200
    metrics = http.get("/metrics")
    assert metrics.status_code == 200 and "bentoml_service_request" in metrics.text
