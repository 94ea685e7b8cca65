"""Batch forecasts and realized accuracy, on real stores, real flows and the session's served bento.

1. The batch table equals what the served bento answers — ``/predict`` for every product and
   ``/predict_batch`` for all of them — for the same model and features.
2. Two generated deliveries a month apart (``features.synth`` with ``cut=1``, then ``cut=0``): forecasts
   published after the first are scored against the second's actuals: realized metrics on the forecasting
   version's MLflow run, the ``realized`` table, the ``realized-accuracy`` Prefect artifact.
3. A degraded model (refit on targets ×4, carrying the champion's backtest WAPE) forecasting beside the
   champion: the realized WAPE alert fires for it (WARNING, MLflow tag, Prefect flow-run tag).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import polars as pl
import pytest

from features.forecast_schema import ALL_PRODUCTS, FORECASTS, REALIZED
from training.realized_tracking import ALERT_TAG

if TYPE_CHECKING:
    from flows.forecast import ForecastResult


DEGRADED = "degraded"
DEMO_SEED = 11


def test_batch_table_equals_the_served_bento_for_every_product(
    bento_server, trained_model, processed_version
) -> None:
    """Every product: the published row (bucket and table) equals ``/predict`` and ``/predict_batch``."""
    from features.forecast_tables import get_forecast_tables
    from flows import batch
    from service import contract

    result = batch.publish_forecasts(processed_version, alias=trained_model.alias)
    table = result["table"]
    assert result["model_version"] == trained_model.model_version
    assert table.height == result["products"] > 0
    assert batch.read_published(processed_version).equals(table)
    stored = (
        get_forecast_tables()
        .read(FORECASTS)
        .filter(
            (pl.col("model_version") == result["model_version"])
            & (pl.col("data_version") == processed_version)
        )
    )
    assert stored.drop("published_at").equals(table.drop("published_at"))

    rows = {row["productid"]: row for row in table.to_dicts()}
    with httpx.Client(base_url=bento_server.url, timeout=30) as client:
        for pid, row in rows.items():
            answer = client.post(contract.PREDICT_ROUTE, json={"productid": pid})
            assert answer.status_code == 200, answer.text
            assert _as_answer(row) == answer.json(), pid
        batch_answer = client.post(contract.BATCH_ROUTE, json={"productids": sorted(rows)})
    assert batch_answer.status_code == 200
    for item in batch_answer.json()["results"]:
        assert {**_as_answer(rows[item["productid"]]), "status": 200} == item


def test_batch_forecasts_on_the_bigquery_store(
    trained_model, processed_version, feature_rows, bigquery_settings
) -> None:
    """With ``TAMALES_FEATURE_STORE=bigquery`` the batch reads the features from BigQuery and publishes the
    forecasts table there (emulator): the same numbers as from the local store, idempotent on re-run."""
    from datetime import UTC, datetime

    from features.feature_store import get_feature_store
    from features.forecast_tables import BigQueryForecastTables, get_forecast_tables
    from flows import batch

    get_feature_store().write(pl.DataFrame(list(feature_rows.values()), infer_schema_length=None))
    expected = batch.forecast_table(
        batch.load_forecaster(trained_model.alias), feature_rows, processed_version, datetime.now(UTC)
    )
    for _ in range(2):
        result = batch.publish_forecasts(processed_version, alias=trained_model.alias)
    tables = get_forecast_tables()
    assert isinstance(tables, BigQueryForecastTables)
    stored = tables.read(FORECASTS)
    assert stored.height == len(feature_rows) == result["products"]
    assert stored.drop("published_at").equals(expected.drop("published_at"))
    one = sorted(feature_rows)[0]
    assert tables.latest_forecasts().filter(pl.col("productid") == one)["p50"].to_list() == (
        expected.filter(pl.col("productid") == one)["p50"].to_list()
    )


def _as_answer(row: dict) -> dict:
    """A forecast-table row as the API's answer body."""
    return {
        "productid": row["productid"],
        "prediction": row["p50"],
        "lower": row["p10"],
        "upper": row["p90"],
        "forecast_month": row["forecast_month"],
        "model_version": row["model_version"],
        "features_as_of": row["features_as_of"],
    }


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class TwoDeliveries:
    """What the two-delivery demo produced."""

    first_version: str
    second_version: str
    champion: str  # model version that forecast after the first delivery (the trained one)
    alias: str
    degraded: str  # the degraded model version
    first: ForecastResult
    second: ForecastResult
    second_run_tags: list[str]
    warnings: list[str]


def _register_degraded(version: str, data_version: str) -> str:
    """A model refit on targets ×4 (it over-forecasts), carrying ``version``'s backtest metrics."""
    import mlflow

    from features.settings import get_settings
    from training import data, model, tracking

    settings = get_settings()
    client = tracking.client(settings)
    good = client.get_model_version(settings.model_name, version)
    rows = data.load_rows(data_version)
    recipe = model.recipe_of(tracking.load_booster(f"models:/{settings.model_name}/{version}"))
    booster = model.fit(rows.with_columns(pl.col("target") * 4), recipe)
    run = client.create_run(tracking.experiment_id(client, settings), run_name="degraded-on-purpose")
    backtest = {
        k: v for k, v in client.get_run(good.run_id).data.metrics.items() if k.startswith("backtest_")
    }
    tracking.log_metrics(client, run.info.run_id, backtest)
    uri = tracking.log_model(client, run.info.run_id, booster, model.matrices(model.labelled(rows), recipe).X)
    client.set_terminated(run.info.run_id)
    degraded = str(mlflow.register_model(uri, settings.model_name).version)
    client.set_registered_model_alias(settings.model_name, DEGRADED, degraded)
    return degraded


@pytest.fixture(scope="module")
def two_deliveries(tmp_path_factory, prefect_harness) -> Iterator[TwoDeliveries]:
    """Delivery 1 (a month early) → ingest, features, train, forecasts of the trained and the degraded
    model; delivery 2 → ingest, features, forecast flow (realized accuracy). Own buckets and state."""
    from prefect.client.orchestration import get_client

    from features.settings import get_settings
    from features.synth import generate
    from flows import batch
    from flows.features import features_flow
    from flows.forecast import forecast_flow
    from flows.ingest import ingest_flow
    from flows.train import train

    root = tmp_path_factory.mktemp("two-deliveries")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAMALES_RAW_URL", str(root / "raw"))
        mp.setenv("TAMALES_PROCESSED_URL", str(root / "processed"))
        mp.setenv("TAMALES_STATE_DIR", str(root / "state"))
        # A registered model of its own: the session's MLflow store is shared, and its @champion must stay the
        # session model's (the rerun and packaging tests expect it).
        mp.setenv("TAMALES_MODEL_NAME", f"{get_settings().model_name}-two-deliveries")
        get_settings.cache_clear()
        delivery = root / "delivery"
        generate(delivery, seed=DEMO_SEED, cut=1)
        ingest_flow(source=str(delivery))
        first_version = features_flow().data_version
        trained = train(data_version=first_version)
        first = forecast_flow(data_version=first_version, alias=trained.alias)
        degraded = _register_degraded(trained.model_version, first_version)
        batch.publish_forecasts(first_version, alias=DEGRADED)

        generate(delivery, seed=DEMO_SEED, cut=0)  # a month later, beside the first
        ingest_flow(source=str(delivery))
        second_version = features_flow().data_version
        records = _Records()
        logging.getLogger("training.realized_tracking").addHandler(records)
        try:
            state = forecast_flow(data_version=second_version, alias=trained.alias, return_state=True)
        finally:
            logging.getLogger("training.realized_tracking").removeHandler(records)
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(state.state_details.flow_run_id)
        yield TwoDeliveries(
            first_version=first_version,
            second_version=second_version,
            champion=trained.model_version,
            alias=trained.alias,
            degraded=degraded,
            first=first,
            second=state.result(),
            second_run_tags=list(run.tags),
            warnings=[r.getMessage() for r in records.records],
        )
        get_settings.cache_clear()


def test_second_delivery_realizes_the_first_forecasts(two_deliveries: TwoDeliveries) -> None:
    """The first run had nothing to realize; the second scores its forecasts: table, MLflow, artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from features.forecast_tables import get_forecast_tables
    from features.settings import get_settings
    from training import tracking

    demo = two_deliveries
    assert demo.first_version != demo.second_version
    assert demo.first.realized_rows == 0 and demo.first.alerts == []
    months = set(demo.first.forecast_months)  # each source's month after the first delivery
    assert 1 <= len(months) <= 2
    summary = [r for r in demo.second.realized if r["model_version"] == demo.champion]
    assert {r["source"] for r in summary} == {"erp", "teinvento"}
    for row in summary:
        print(
            f"realized {row['source']} {row['forecast_month']}: n={row['n_products']} WAPE {row['wape']:.4f}"
            f" (backtest {row['backtest_wape']:.4f}) bias {row['bias']:+.4f} coverage {row['coverage']:.3f}"
        )
        assert row["forecast_month"] in months and row["data_version"] == demo.first_version
        assert 0 <= row["wape"] < 1 and 0 <= row["coverage"] <= 1 and row["backtest_wape"] > 0

    tables = get_forecast_tables()
    realized = tables.read(REALIZED)
    products = realized.filter(
        (pl.col("productid") != ALL_PRODUCTS) & (pl.col("model_version") == demo.champion)
    )
    assert products.height == sum(r["n_products"] for r in summary)
    assert set(realized["actuals_version"]) == {demo.second_version}

    settings = get_settings()
    client = tracking.client(settings)
    run_id = client.get_model_version(settings.model_name, demo.champion).run_id
    for row in summary:
        history = client.get_metric_history(run_id, f"realized_wape_{row['source']}")
        step = int(row["forecast_month"].replace("-", ""))
        assert [(m.step, round(m.value, 9)) for m in history] == [(step, round(row["wape"], 9))]
        assert client.get_metric_history(run_id, f"realized_coverage_p10_p90_{row['source']}")
        assert client.get_metric_history(run_id, f"realized_wape_ratio_{row['source']}")
    assert client.get_run(run_id).data.tags[ALERT_TAG] in ("true", "false")
    assert any(a.path.startswith("realized") for a in client.list_artifacts(run_id, "realized"))

    with get_client(sync_client=True) as prefect:
        artifacts = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["realized-accuracy"]))
        )
        reports = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["forecast-report"]))
        )
    assert artifacts and reports
    body = artifacts[-1].data
    assert "Realized accuracy" in body and "data:image/png;base64," in body
    assert all(month in body for month in months)


def test_a_degraded_model_fires_the_realized_wape_alert(two_deliveries: TwoDeliveries) -> None:
    """The degraded version's realized WAPE exceeds 1.5 × its backtest WAPE: WARNING, tags in MLflow and on
    the Prefect flow run."""
    from features.settings import get_settings
    from training import tracking

    demo = two_deliveries
    flagged = [a for a in demo.second.alerts if a["model_version"] == demo.degraded]
    assert {a["source"] for a in flagged} == {"erp", "teinvento"}
    for alert in flagged:
        print(f"alert {alert}")
        assert alert["wape"] > get_settings().realized_wape_alert_factor * alert["backtest_wape"]
    assert any(f"v{demo.degraded}," in w and "realized WAPE alert" in w for w in demo.warnings)
    assert ALERT_TAG in demo.second_run_tags
    settings = get_settings()
    client = tracking.client(settings)
    version = client.get_model_version(settings.model_name, demo.degraded)
    assert version.tags[ALERT_TAG] == "true"
    assert client.get_run(version.run_id).data.tags[ALERT_TAG] == "true"
