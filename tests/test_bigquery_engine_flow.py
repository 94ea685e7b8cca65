"""``TAMALES_FEATURE_ENGINE=bigquery`` end to end on the emulators: ingest → features → BigQuery feature store
→ the forecast service, against the session's polars-engine run of the same sample delivery; and a bad file
or a failing BigQuery leaves nothing half-published.

The served forecasts are compared through the real service (``TamalesForecast`` in-process, its model from
the session's training and packaging flows): one lifespan on the polars run's local feature store, one on
the BigQuery engine's feature store in bqemulator.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from starlette.testclient import TestClient

from features import processed, storage
from features.completeness import IncompleteDeliveryError
from features.dataset import read_features
from features.feature_store import get_feature_store
from features.raw_layout import ERP_ROOT
from features.settings import get_settings
from service.contract import PREDICT_ROUTE
from tests.fixtures import emulators, faults


def use_bigquery_engine(
    monkeypatch, gcs: str, bigquery: emulators.BigQueryEmulator, endpoint: str | None = None
):
    """Buckets on the GCS emulator (emptied), the engine and the feature store on bqemulator (or ``endpoint``)."""
    bigquery.start()
    emulators.point_settings_at(monkeypatch, gcs=gcs, bigquery=bigquery)
    monkeypatch.setenv("TAMALES_FEATURE_ENGINE", "bigquery")
    if endpoint:
        monkeypatch.setenv("TAMALES_BQ_ENDPOINT", endpoint)
    get_settings.cache_clear()
    emulators.empty_buckets()


def forecasts(app, products: list[str]) -> dict[str, dict]:
    """The service's answer for each product (a fresh service lifespan: it reads the current settings)."""
    with TestClient(app, raise_server_exceptions=False) as client:
        answers = {pid: client.post(PREDICT_ROUTE, json={"productid": pid}) for pid in products}
    assert all(a.status_code == 200 for a in answers.values()), {p: a.text for p, a in answers.items()}
    return {pid: answer.json() for pid, answer in answers.items()}


def test_bigquery_engine_publishes_and_serves_what_the_polars_engine_does(
    monkeypatch, sample_delivery: Path, processed_version: str, packaged_bento, forecast_app, gcs_emulator,
    bigquery_emulator, prefect_harness,
):  # fmt: skip
    from flows.features import features_flow
    from flows.ingest import ingest_flow

    polars_features = read_features(processed_version)  # the session's run: polars engine, local lake
    polars_report = processed.read_quality_report(processed_version)
    products = sorted(get_feature_store().latest_rows())
    polars_answers = forecasts(forecast_app, products)

    use_bigquery_engine(monkeypatch, gcs_emulator, bigquery_emulator)
    ingest_flow(source=str(sample_delivery))
    result = features_flow()

    assert result.engine == "bigquery" and result.data_version == processed_version
    assert processed.read_quality_report(processed_version) == polars_report
    stored = get_feature_store().read_all()
    assert get_settings().feature_store == "bigquery"
    assert_frame_equal(stored, polars_features, rel_tol=1e-9, abs_tol=0)
    bigquery_answers = forecasts(forecast_app, products)
    for pid in products:
        mine, theirs = bigquery_answers[pid], polars_answers[pid]
        assert {k: v for k, v in mine.items() if not isinstance(v, float)} == {
            k: v for k, v in theirs.items() if not isinstance(v, float)
        }
        for field in ("prediction", "lower", "upper"):
            assert mine[field] == pytest.approx(theirs[field], rel=1e-6)


def test_a_bad_file_or_a_failing_bigquery_publishes_nothing(
    monkeypatch, sample_delivery: Path, tmp_path: Path, gcs_emulator, bigquery_emulator, prefect_harness
):
    from flows.features import features_flow
    from flows.ingest import ingest_flow

    proxy = faults.start_fault_proxy(bigquery_emulator.endpoint)
    try:
        use_bigquery_engine(monkeypatch, gcs_emulator, bigquery_emulator, endpoint=proxy.url)
        settings = get_settings()
        landing = storage.join(settings.processed_url, "landing")  # bucket to bucket: checked by BigQuery
        fs = storage.filesystem(landing)
        delivery = tmp_path / "delivery"
        shutil.copytree(sample_delivery, delivery)
        bad = next((delivery / ERP_ROOT).rglob("ventas_mensuales_Norte.csv"))
        bad.write_text("2024,Jan,Mexico,Regular\nnot,a,valid,row\n", encoding="utf-8")
        for path in (p for p in delivery.rglob("*") if p.is_file()):
            fs.pipe_file(
                f"{storage.fs_path(landing)}/{path.relative_to(delivery).as_posix()}", path.read_bytes()
            )
        processed_root = storage.fs_path(settings.processed_url)

        def published() -> list[str]:
            return [p for p in fs.find(processed_root) if not p.startswith(storage.fs_path(landing))]

        report = ingest_flow(source=landing)
        relpath = str(bad.relative_to(delivery))
        assert [q.relpath for q in report.quarantined] == [relpath]
        assert report.quarantined[0].reason.startswith("rejected by a BigQuery CSV load")
        with pytest.raises(IncompleteDeliveryError, match="ERP region Norte missing"):
            features_flow()
        assert published() == []
        store_before = feature_store_rows(settings, bigquery_emulator.endpoint)

        # Every query job fails while BigQuery is "down": the build fails, nothing is published.
        def query_job(method: str, path: str) -> bool:
            return method == "POST" and "/upload/" not in path and path.split("?")[0].endswith("/jobs")

        proxy.fail(10, 400, query_job)
        with pytest.raises(Exception, match="injected fault"):
            features_flow(allow_incomplete=True)
        assert published() == []  # no version, no LATEST
        assert feature_store_rows(settings, bigquery_emulator.endpoint) == store_before

        proxy.reset()
        result = features_flow(allow_incomplete=True)
        quality = processed.read_quality_report(result.data_version)
        assert [q["relpath"] for q in quality["files_quarantined"]] == [relpath]
        assert quality["files_read"]["erp"] == 3
        assert get_feature_store().read_all().filter(pl.col("source") == "erp").height > 0
    finally:
        assert proxy.server is not None
        proxy.server.shutdown()
        proxy.server.server_close()


def feature_store_rows(settings, endpoint: str) -> list[tuple] | None:
    """The BigQuery feature-store table's rows (None when there is none), read at ``endpoint`` directly."""
    from features import bq

    client = bq.make_client(settings.model_copy(update={"bq_endpoint": endpoint}))
    table = get_feature_store(settings).table_id
    return sorted(map(tuple, client.list_rows(table)), key=repr) if bq.table_exists(client, table) else None
