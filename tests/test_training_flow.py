"""The ``train`` flow under the session's Prefect harness, against the real MLflow store (SQLite + local
artifacts in the session's temp state dir): tracking, the recipe gate, idempotency and failure atomicity.

The module trains on the sample data version, on a *degraded* copy of it (model inputs shuffled across rows,
same targets and sales) to obtain a genuinely worse candidate, and with a worse recipe on the same data; it
uses a registered model of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from features import processed
from features.settings import get_settings
from tests.fixtures import mlflow as mlflow_fixtures
from training import gate, reference, tracking
from training.recipe import Recipe

WORSE_RECIPE = {
    "features": ["level_forecast", "months_of_history", "months_since_sale", "source"],
    "base": "level_forecast",
}


@pytest.fixture(scope="module")
def history(isolated_model: str, processed_version: str, prefect_harness) -> dict:
    """Trainings in a row, with the aliases after each: 1. degraded data first (must not become champion),
    2. the sample data (first champion), 3. a worse recipe on the same data (refused; the champion stays)."""
    from flows.train import train

    result: dict = {}
    result["degraded"] = train(data_version=mlflow_fixtures.publish_degraded_version(processed_version, 1))
    result["aliases_degraded"] = mlflow_fixtures.aliases(isolated_model)
    result["good"] = train(data_version=processed_version)
    result["aliases_good"] = mlflow_fixtures.aliases(isolated_model)
    result["worse"] = train(data_version=processed_version, params=WORSE_RECIPE)
    result["aliases_worse"] = mlflow_fixtures.aliases(isolated_model)
    return result


def test_a_recipe_that_loses_to_the_best_statistical_baseline_is_refused(history: dict, isolated_model: str):
    degraded = history["degraded"]
    assert degraded.status == "registered" and not degraded.promoted and degraded.alias == gate.CHALLENGER
    assert degraded.backtest_wape >= degraded.best_baseline_wape  # it genuinely loses ...
    assert degraded.reason.startswith(
        "no XGBoost recipe beats the best statistical baseline"
    )  # ... and says so
    assert degraded.best_baseline in reference.BASELINES and degraded.champion_version is None
    assert history["aliases_degraded"] == {gate.CHALLENGER: degraded.model_version}
    tags = mlflow_fixtures.client().get_model_version(isolated_model, degraded.model_version).tags
    assert tags["gate_decision"] == gate.CHALLENGER and tags["gate_reason"] == degraded.reason


def test_the_default_recipe_beats_every_baseline_and_becomes_champion(history: dict):
    good = history["good"]
    assert good.promoted and good.alias == gate.CHAMPION and "first champion" in good.reason
    assert set(reference.BASELINES) <= set(good.scores)
    assert all(good.backtest_wape < good.scores[name]["wape"] for name in reference.BASELINES)
    assert 0.6 <= good.coverage_p10_p90 <= 0.95  # calibrated out of sample: nominal 0.8
    assert history["aliases_good"] == {
        gate.CHALLENGER: history["degraded"].model_version,
        gate.CHAMPION: good.model_version,
    }


def test_a_worse_recipe_on_the_same_data_is_refused(history: dict):
    good, worse = history["good"], history["worse"]
    assert worse.incumbent_scores["model"]["wape"] == pytest.approx(good.backtest_wape, rel=1e-12)
    assert worse.backtest_wape > good.backtest_wape  # the champion's recipe, refit on the same origins, wins
    assert worse.alias == gate.CHALLENGER and "loses to the champion's recipe" in worse.reason
    assert (
        worse.champion_version == good.model_version
    )  # the same recipe on the same data: nothing to refresh
    assert history["aliases_worse"] == {
        gate.CHALLENGER: worse.model_version,
        gate.CHAMPION: good.model_version,
    }


def test_rerun_on_the_same_data_registers_nothing(history: dict, isolated_model: str, processed_version: str):
    from flows.train import train

    before = mlflow_fixtures.versions(isolated_model)
    again = train(data_version=processed_version)
    assert again.status == "unchanged" and not again.promoted
    assert again.model_version == history["good"].model_version and again.alias == gate.CHAMPION
    assert again.backtest_wape == pytest.approx(history["good"].backtest_wape, abs=1e-6)
    assert mlflow_fixtures.versions(isolated_model) == before


def test_failure_after_registering_leaves_the_aliases_and_a_rerun_finishes(
    history: dict, isolated_model: str, processed_version: str, monkeypatch: pytest.MonkeyPatch
):
    from flows.train import train

    before_aliases = mlflow_fixtures.aliases(isolated_model)
    before_versions = mlflow_fixtures.versions(isolated_model)
    params = {"num_rounds": 90}

    def registry_down(self, name, alias, version):
        raise ConnectionError("registry unavailable (injected)")

    # The one fault we cannot produce for real at this exact point: the registry failing on the alias move.
    with monkeypatch.context() as patch:
        patch.setattr(MlflowClient, "set_registered_model_alias", registry_down)
        with pytest.raises(ConnectionError, match="injected"):
            train(data_version=processed_version, params=params)

    assert mlflow_fixtures.aliases(isolated_model) == before_aliases
    new_versions = [v for v in mlflow_fixtures.versions(isolated_model) if v not in before_versions]
    assert len(new_versions) == 1  # registered, then the fault
    client = mlflow_fixtures.client()
    orphan = client.get_model_version(isolated_model, new_versions[0])
    assert "injected" in orphan.tags["failed"] and "fingerprint" not in orphan.tags
    assert client.get_run(orphan.run_id).info.status == "FAILED"

    # The orphan is not mistaken for a complete training: the re-run trains, registers and gates again.
    rerun = train(data_version=processed_version, params=params)
    assert rerun.status == "registered" and rerun.model_version not in before_versions + new_versions
    assert mlflow_fixtures.aliases(isolated_model)[rerun.alias] == rerun.model_version


def test_the_run_records_the_recipe_backtest_table_plots_and_model(
    history: dict, isolated_model: str, processed_version: str
):
    good = history["good"]
    client = mlflow_fixtures.client()
    run = client.get_run(good.run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["data_version"] == processed_version
    recipe = Recipe.from_json(params["recipe"])
    assert recipe.fingerprint() == good.recipe_fingerprint and recipe.calendars == get_settings().calendars
    assert params["git_commit"] and params["code_digest"] == tracking.code_digest()
    metrics = run.data.metrics
    assert metrics["backtest_wape"] == pytest.approx(good.backtest_wape)
    for key in ("wape_erp", "wape_teinvento", "bias", "coverage_p10_p90", "coverage_p10_p90_teinvento"):
        assert f"backtest_{key}" in metrics
    for name in ("AutoETS_cycle", "AutoTheta_12", "AutoARIMA_12", "last_value", "seasonal_naive"):
        assert f"backtest_{name}_wape" in metrics

    artifacts = {a.path for a in client.list_artifacts(good.run_id)}
    expected = {"plots", "data_quality.json", "recipe.json", "backtest_table.md", "backtest_predictions.csv"}
    assert expected <= artifacts
    table = Path(client.download_artifacts(good.run_id, "backtest_table.md")).read_text()
    assert "| model |" in table and "| AutoARIMA(cycle) |" in table
    plots = {a.path for a in client.list_artifacts(good.run_id, "plots")}
    assert {"plots/backtest_error_by_origin.png", "plots/backtest_teinvento_01.png"} <= plots
    quality = json.loads(Path(client.download_artifacts(good.run_id, "data_quality.json")).read_text())
    assert quality == processed.read_quality_report(processed_version)

    version = client.get_model_version(isolated_model, good.model_version)
    assert version.run_id == good.run_id and version.tags["data_version"] == processed_version
    assert Recipe.from_json(version.tags["recipe"]) == recipe
    # The model's files live with the run's experiment under the state dir (not in the CWD's ./mlruns).
    logged = client.get_logged_model(version.source.removeprefix("models:/"))
    assert logged.experiment_id == run.info.experiment_id and logged.source_run_id == good.run_id
    assert logged.artifact_location.startswith(get_settings().mlflow_artifact_root)
    booster = tracking.load_booster(f"models:/{isolated_model}/{good.model_version}")
    from training import forecast, model

    assert model.recipe_of(booster) == recipe and forecast.spec_of(booster).features == recipe.features
    assert set(forecast.spec_of(booster).calibration) == {"erp", "teinvento"}


def test_the_flow_publishes_the_report_and_the_backtest_table(history: dict):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    keys = ArtifactFilter(key=ArtifactFilterKey(any_=["train-report", "backtest-table"]))
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=keys)
    good = history["good"]
    report = next(
        a.data for a in found if a.key == "train-report" and f"v{good.model_version} → `@champion`" in a.data
    )
    assert "| model |" in report and "| AutoETS(cycle) |" in report and "first champion" in report
    assert any(a.key == "backtest-table" for a in found)
