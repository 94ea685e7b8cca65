"""The ``train`` flow under the session's Prefect harness, against the real MLflow store (SQLite + local
artifacts in the session's temp state dir): tracking, the promotion gate, idempotency and failure atomicity.

The module trains on the sample data version and on *degraded* copies of it (training targets shuffled,
same test split) to obtain genuinely worse candidates; it uses a registered model of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from features import processed
from features.schema import FEATURE_COLUMNS
from features.settings import get_settings
from tests.fixtures import mlflow as mlflow_fixtures
from training import baselines, gate, tracking

isolated_model = mlflow_fixtures.isolated_model


@pytest.fixture(scope="module")
def history(isolated_model: str, processed_version: str, prefect_harness) -> dict:
    """Four trainings in a row, with the aliases after each:

    1. bad data first (must not become champion), 2. good data (first champion), 3. bad data again (must
    not move the champion), 4. after the champion was pointed back at the bad version 1 *and* its stored
    test WAPE tag was replaced by a flattering stale 0.0, good data with another seed (must win against the
    champion re-scored now, not against the tag).
    """
    from flows.train import train

    client = mlflow_fixtures.client()
    result: dict = {}
    result["bad_first"] = train(version=mlflow_fixtures.publish_shuffled_version(processed_version, 1))
    result["aliases_bad_first"] = mlflow_fixtures.aliases(isolated_model)
    result["good"] = train(version=processed_version)
    result["aliases_good"] = mlflow_fixtures.aliases(isolated_model)
    result["bad_later"] = train(version=mlflow_fixtures.publish_shuffled_version(processed_version, 2))
    result["aliases_bad_later"] = mlflow_fixtures.aliases(isolated_model)
    bad_version = result["bad_first"]["version"]
    client.set_registered_model_alias(isolated_model, gate.CHAMPION, bad_version)
    client.set_model_version_tag(isolated_model, bad_version, "test_wape", "0.0")
    result["better"] = train(version=processed_version, params={"seed": 7})
    result["aliases_better"] = mlflow_fixtures.aliases(isolated_model)
    return result


def test_first_model_that_loses_to_a_baseline_is_only_a_challenger(history: dict, isolated_model: str):
    bad = history["bad_first"]
    assert bad["status"] == "registered" and bad["promoted"] is False and bad["alias"] == gate.CHALLENGER
    assert bad["champion_version"] is None
    assert bad["test_wape"] > min(bad["baseline_wapes"].values())
    assert "does not beat baseline" in bad["reason"]
    assert history["aliases_bad_first"] == {gate.CHALLENGER: bad["version"]}
    tags = mlflow_fixtures.client().get_model_version(isolated_model, bad["version"]).tags
    assert tags["gate_decision"] == gate.CHALLENGER and tags["gate_reason"] == bad["reason"]


def test_first_model_that_beats_the_baselines_becomes_champion(history: dict):
    good = history["good"]
    assert good["promoted"] is True and good["alias"] == gate.CHAMPION
    assert "first champion" in good["reason"]
    assert set(good["baseline_wapes"]) == set(baselines.BASELINES)
    assert good["test_wape"] < min(good["baseline_wapes"].values())
    assert history["aliases_good"] == {
        gate.CHALLENGER: history["bad_first"]["version"],
        gate.CHAMPION: good["version"],
    }


def test_worse_candidate_does_not_move_the_champion(history: dict):
    good, bad = history["good"], history["bad_later"]
    assert bad["promoted"] is False and bad["alias"] == gate.CHALLENGER
    assert bad["champion_version"] == good["version"]
    # The champion was re-scored on the candidate's test split (the same test rows): the same number.
    assert bad["champion_wape"] == pytest.approx(good["test_wape"], rel=1e-12)
    assert history["aliases_bad_later"] == {gate.CHALLENGER: bad["version"], gate.CHAMPION: good["version"]}


def test_better_candidate_wins_against_the_champion_re_scored_now(history: dict):
    better, bad = history["better"], history["bad_first"]
    assert better["champion_version"] == bad["version"]
    # Not the stale "0.0" tag: the champion's WAPE was computed again on this test split.
    assert better["champion_wape"] == pytest.approx(bad["test_wape"], rel=1e-12)
    assert better["promoted"] is True and f"beats champion v{bad['version']}" in better["reason"]
    assert history["aliases_better"][gate.CHAMPION] == better["version"]
    assert history["aliases_better"][gate.CHALLENGER] == history["bad_later"]["version"]


def test_rerun_on_the_same_data_registers_nothing(history: dict, isolated_model: str, processed_version: str):
    from flows.train import train

    before = mlflow_fixtures.versions(isolated_model)
    again = train(version=processed_version, params={"seed": 7})
    assert again["status"] == "unchanged" and again["promoted"] is False
    assert again["version"] == history["better"]["version"] and again["alias"] == gate.CHAMPION
    assert again["test_wape"] == pytest.approx(history["better"]["test_wape"], abs=1e-6)
    assert mlflow_fixtures.versions(isolated_model) == before


def test_failure_after_registering_leaves_the_aliases_and_a_rerun_finishes(
    history: dict, isolated_model: str, processed_version: str, monkeypatch: pytest.MonkeyPatch
):
    from flows.train import train

    before_aliases = mlflow_fixtures.aliases(isolated_model)
    before_versions = mlflow_fixtures.versions(isolated_model)

    def registry_down(self, name, alias, version):
        raise ConnectionError("registry unavailable (injected)")

    # The one fault we cannot produce for real at this exact point: the registry failing on the alias move.
    with monkeypatch.context() as patch:
        patch.setattr(MlflowClient, "set_registered_model_alias", registry_down)
        with pytest.raises(ConnectionError, match="injected"):
            train(version=processed_version, params={"seed": 11})

    assert mlflow_fixtures.aliases(isolated_model) == before_aliases
    new_versions = [v for v in mlflow_fixtures.versions(isolated_model) if v not in before_versions]
    assert len(new_versions) == 1  # registered, then the fault
    client = mlflow_fixtures.client()
    orphan = client.get_model_version(isolated_model, new_versions[0])
    assert "injected" in orphan.tags["failed"] and "fingerprint" not in orphan.tags
    assert client.get_run(orphan.run_id).info.status == "FAILED"

    # The orphan is not mistaken for a complete training: the re-run trains, registers and gates again.
    rerun = train(version=processed_version, params={"seed": 11})
    assert rerun["status"] == "registered" and rerun["version"] not in before_versions + new_versions
    assert mlflow_fixtures.aliases(isolated_model)[rerun["alias"]] == rerun["version"]


def test_the_run_records_params_metrics_plots_quality_report_and_model(
    history: dict, isolated_model: str, processed_version: str
):
    good = history["good"]
    client = mlflow_fixtures.client()
    run = client.get_run(good["run_id"])
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["data_version"] == processed_version
    assert json.loads(params["features"]) == list(FEATURE_COLUMNS)
    assert params["objective"] == "reg:quantileerror"
    assert json.loads(params["quantile_alpha"]) == [0.1, 0.5, 0.9]
    assert params["git_commit"] and params["code_digest"] == tracking.code_digest()
    metrics = run.data.metrics
    assert metrics["test_wape"] == pytest.approx(good["test_wape"])
    for name in baselines.BASELINES:
        for key in ("wape", "mae", "rmse", "bias", "wape_erp", "wape_teinvento"):
            assert f"{name}_test_{key}" in metrics
        assert f"{name}_backtest_wape_mean" in metrics
    for key in ("test_coverage_p10_p90", "backtest_wape_mean", "backtest_wape_origin_1", "validation_wape"):
        assert key in metrics
    assert "champion_test_wape" in client.get_run(history["bad_later"]["run_id"]).data.metrics

    artifacts = {a.path for a in client.list_artifacts(good["run_id"])}
    assert {"plots", "data_quality.json", "test_predictions.csv", "tuning.json", "backtest.json"} <= artifacts
    plots = {a.path for a in client.list_artifacts(good["run_id"], "plots")}
    assert "plots/feature_importance.png" in plots and "plots/forecast_vs_actual_01.png" in plots
    quality = json.loads(Path(client.download_artifacts(good["run_id"], "data_quality.json")).read_text())
    assert quality == processed.read_quality_report(processed_version)

    version = client.get_model_version(isolated_model, good["version"])
    assert version.run_id == good["run_id"]
    assert version.tags["data_version"] == processed_version
    assert float(version.tags["test_wape"]) == pytest.approx(good["test_wape"], abs=1e-6)
    # The model's files live with the run's experiment under the state dir (not in the CWD's ./mlruns).
    assert version.source.startswith("models:/m-")
    logged = client.get_logged_model(version.source.removeprefix("models:/"))
    assert logged.experiment_id == run.info.experiment_id and logged.source_run_id == good["run_id"]
    assert logged.artifact_location.startswith(get_settings().mlflow_artifact_root)
    booster = tracking.load_booster(f"models:/{isolated_model}@{gate.CHAMPION}")
    assert type(booster).__name__ == "Booster" and booster.num_features() == len(FEATURE_COLUMNS)


def test_the_flow_publishes_a_markdown_report(history: dict):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    only_reports = ArtifactFilter(key=ArtifactFilterKey(any_=["train-report"]))
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=only_reports)
    texts = [a.data for a in found]
    better = history["better"]
    decision = f"v{better['version']} → `@champion`"
    report = next(t for t in texts if decision in t)
    assert "| model |" in report and "| seasonal_naive |" in report
    assert f"champion v{history['bad_first']['version']} (re-scored)" in report
    assert "Rolling-origin backtest WAPE" in report
