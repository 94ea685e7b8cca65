"""The service's core (``service.forecaster.Forecaster``) without BentoML: a tiny real XGBoost booster and an
in-memory feature source. Every decision of the HTTP contract — 200 body, 404, 503, batch items in order —
is made here; the bento/HTTP tests check the same answers through the server."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from features.feature_store import FeatureStoreUnavailable
from features.schema import encode_row
from service import contract
from service.forecaster import Forecaster
from service.model import LoadedModel
from training import forecast

FEATURES = (
    "source",
    "level_forecast",
    "months_of_history",
    "months_since_sale",
    "seasonal_forecast",
    "lag_1",
)
SPEC = forecast.ModelSpec(FEATURES, "seasonal_forecast")


class MemorySource:
    """A feature source held in a dict; ``down`` makes every query fail like an unreachable store."""

    def __init__(self, rows: dict[str, dict[str, Any]]) -> None:
        self.rows = rows
        self.down = False
        self.point_queries = 0

    def latest_rows(self) -> dict[str, dict[str, Any]]:
        if self.down:
            raise FeatureStoreUnavailable("store down")
        return dict(self.rows)

    def latest_row(self, id_product: str) -> dict[str, Any] | None:
        self.point_queries += 1
        if self.down:
            raise FeatureStoreUnavailable("store down")
        return self.rows.get(id_product)


def _row(sales: float, history: int = 24) -> dict[str, Any]:
    return {
        "source": "erp",
        "year_month": dt.date(2025, 1, 1),
        "level_forecast": sales,
        "seasonal_forecast": sales * 1.1,
        "lag_1": sales,
        "months_of_history": history,
        "months_since_sale": 0,
    }


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    """A real three-quantile booster fitted in a few milliseconds on random rows, carrying its spec."""
    rng = np.random.default_rng(0)
    X = np.column_stack(
        [np.zeros(200), *(rng.uniform(10, 1000, 200) for _ in range(2)), np.full(200, 24.0), np.zeros(200)]
    )
    X = np.column_stack([X[:, :4], X[:, 1] * 1.1, X[:, 1]]).astype(np.float32)
    label = rng.normal(0.0, 0.2, 200)
    dtrain = xgb.DMatrix(forecast.model_inputs(X, SPEC), label=label, feature_names=list(FEATURES))
    params = {"objective": "reg:quantileerror", "quantile_alpha": [0.1, 0.5, 0.9], "max_depth": 2}
    booster = xgb.train(params, dtrain, num_boost_round=5)
    forecast.attach_spec(booster, SPEC)
    return LoadedModel(booster, forecast.spec_of(booster), "7", {}, {})


@pytest.fixture
def source() -> MemorySource:
    return MemorySource({"206050084": _row(1000.0), "85899345920": _row(50.0, history=2)})


@pytest.fixture
def core(model: LoadedModel, source: MemorySource) -> Forecaster:
    forecaster = Forecaster(model, source, ttl=600.0, miss_rate=5.0)
    assert forecaster.cache.refresh()
    return forecaster


def test_a_known_product_gets_the_models_forecast_as_the_published_body(core, model, source):
    answer = asyncio.run(core.predict("206050084"))
    assert answer.status == 200 and tuple(answer.body) == contract.PREDICTION_FIELDS
    expected = forecast.predict_quantiles(model.booster, encode_row(source.rows["206050084"], FEATURES))[0]
    assert [answer.body[k] for k in ("lower", "prediction", "upper")] == [
        round(float(q), 3) for q in expected
    ]
    assert answer.body["lower"] <= answer.body["prediction"] <= answer.body["upper"]
    assert answer.body | {"lower": 0, "prediction": 0, "upper": 0} == {
        "productid": "206050084",
        "prediction": 0,
        "lower": 0,
        "upper": 0,
        "forecast_month": "2025-02",
        "model_version": "7",
        "features_as_of": "2025-01",
    }
    contract.Prediction.model_validate(answer.body)  # the body is exactly the documented schema


def test_concurrent_requests_share_one_model_call(core):
    async def many() -> list:
        return await asyncio.gather(*(core.predict(pid) for pid in ["206050084", "85899345920"] * 10))

    answers = asyncio.run(many())
    assert [a.status for a in answers] == [200] * 20
    assert core.batcher.calls == 1 and core.batcher.rows == 20


def test_an_unknown_product_is_404_without_a_query_while_the_snapshot_is_fresh(core, source):
    answer = asyncio.run(core.predict("nope"))
    assert answer == type(answer)(404, contract.unknown_product("nope"))
    assert source.point_queries == 0


def test_a_store_outage_before_any_snapshot_is_503_and_not_ready(model, source):
    source.down = True
    forecaster = Forecaster(model, source)
    assert not forecaster.cache.refresh() and not forecaster.ready
    answer = asyncio.run(forecaster.predict("206050084"))
    assert (answer.status, answer.body) == (503, contract.store_unavailable("206050084"))
    source.down = False  # the store is back: the miss is a point query
    assert asyncio.run(forecaster.predict("206050084")).status == 200
    assert source.point_queries == 2


def test_a_batch_answers_each_item_as_the_single_call_would_in_order(core):
    answer = core.predict_batch(["85899345920", "nope", "206050084", "85899345920"])
    assert answer.status == 200 and answer.body["model_version"] == "7"
    results = answer.body["results"]
    assert [r["status"] for r in results] == [200, 404, 200, 200]
    single = asyncio.run(core.predict("206050084")).body
    assert {k: results[2][k] for k in contract.PREDICTION_FIELDS} == single
    assert results[1] == {**contract.unknown_product("nope"), "status": 404}
    assert results[0] == results[3]
    contract.BatchResult.model_validate(answer.body)


def test_a_batch_during_an_outage_reports_503_per_unknown_item(model, source):
    source.down = True
    forecaster = Forecaster(model, source)
    results = forecaster.predict_batch(["206050084", "x"]).body["results"]
    assert [r["status"] for r in results] == [503, 503]
    assert results[0] == {**contract.store_unavailable("206050084"), "status": 503}


def test_a_model_that_cannot_score_a_row_fails_at_construction(model, source):
    broken = LoadedModel(
        model.booster, forecast.ModelSpec((*FEATURES, "lag_2"), "seasonal_forecast"), "1", {}, {}
    )
    with pytest.raises(ValueError):
        Forecaster(broken, source)
