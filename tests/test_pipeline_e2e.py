"""The one-command experience, for real: prefect.yaml deployed to a local Prefect server, run by a worker.

``test_daily_deployment_end_to_end`` (marked ``e2e``; ~2 min on 2 busy cores, it builds a bento) starts
``prefect server``, starts a worker (which creates the process pool), runs ``prefect deploy --all`` on the
repository's ``prefect.yaml``, checks what was stored (nothing of the deploying checkout), runs
``tamales-pipeline/daily`` on generated deliveries, then checks the run and its four sub-flow runs completed,
``@champion`` exists in the run's MLflow store and one bento of that champion's model was built; then the next
month's delivery lands and a second run refreshes the recipe on it, moves ``@champion`` and packages it.
In-process (Prefect test harness): a failing step stops the run naming it; a re-run on the session's
unchanged sample reuses everything; the packaging decision follows the registry and the bento store.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from features.settings import get_settings
from tests.fixtures.prefect_server import (
    PREFECT,
    REPO_ROOT,
    PrefectServer,
    kill_processes_using,
    start_group,
    stop_group,
    tail,
)

SUBFLOWS = {"ingest", "features", "train", "package", "forecast"}


def _check(result: subprocess.CompletedProcess, what: str) -> str:
    assert result.returncode == 0, (
        f"{what} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


def _flow_runs(api_url: str, body: dict) -> list[dict]:
    runs = httpx.post(f"{api_url}/flow_runs/filter", json=body, timeout=30)
    runs.raise_for_status()
    return runs.json()


def _flow_names(api_url: str) -> dict[str, str]:
    flows = httpx.post(f"{api_url}/flows/filter", json={}, timeout=30)
    flows.raise_for_status()
    return {f["id"]: f["name"] for f in flows.json()}


@pytest.fixture
def e2e_env(prefect_server: PrefectServer, tmp_path: Path) -> dict[str, str]:
    """Worker/CLI environment: every TAMALES_* location, BentoML and MLflow state in this test's temp dir."""
    from features.synth import generate

    delivery = tmp_path / "landing"
    generate(delivery, seed=11, cut=1)  # the test adds the next month's delivery later
    env = {k: v for k, v in prefect_server.env.items() if not k.startswith(("TAMALES_", "MLFLOW_TRACKING"))}
    env |= {
        "TAMALES_STATE_DIR": str(tmp_path / "state"),
        "TAMALES_RAW_URL": str(tmp_path / "lake" / "opi_raw_data"),
        "TAMALES_PROCESSED_URL": str(tmp_path / "lake" / "opi_processed_data"),
        "TAMALES_FEATURE_STORE": "local",
        "BENTOML_HOME": str(tmp_path / "bentoml"),
    }
    env.pop("TAMALES_PROJECT_DIR", None)
    # Deploy-time only: templated into the daily deployment's `source` parameter by prefect.yaml.
    return env | {"TAMALES_SOURCE_URL": str(delivery)}


_STORES = """
import json, bentoml
print(json.dumps({
    "bentos": [{"tag": str(b.tag), "models": [str(m.tag) for m in b.info.all_models]} for b in bentoml.bentos.list()],
    "models": [{"tag": str(m.tag), "labels": m.info.labels} for m in bentoml.models.list()],
}))
"""


def _wait_for_pool(
    api_url: str, name: str, worker: subprocess.Popen, log: Path, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert worker.poll() is None, f"worker exited:\n{tail(log)}"
        if httpx.get(f"{api_url}/work_pools/{name}", timeout=10).status_code == 200:
            return
        time.sleep(0.5)
    pytest.fail(f"work pool {name} not created by the worker:\n{tail(log)}")


@pytest.mark.e2e
@pytest.mark.timeout(1500)
def test_daily_deployment_end_to_end(prefect_server: PrefectServer, e2e_env: dict[str, str], tmp_path: Path):
    server = prefect_server
    # The worker gets the settings; flow runs read them at run time. Started first: it creates the pool.
    worker_env = {k: v for k, v in e2e_env.items() if k != "TAMALES_SOURCE_URL"} | {
        "PREFECT_WORKER_QUERY_SECONDS": "2"
    }
    worker_log = tmp_path / "worker.log"
    worker = start_group(
        [*PREFECT, "worker", "start", "--pool", "tamales-process", "--type", "process"],
        worker_env,
        worker_log,
    )
    run = None
    try:
        _wait_for_pool(server.api_url, "tamales-process", worker, worker_log)
        _check(server.cli("--no-prompt", "deploy", "--all", env=e2e_env), "prefect deploy --all")
        run = subprocess.Popen(
            [*PREFECT, "deployment", "run", "tamales-pipeline/daily", "--watch", "--watch-timeout", "780"],
            cwd=REPO_ROOT,
            env=server.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        # While it runs: what `prefect deploy` stored — nothing of the deploying checkout.
        raw = _check(
            server.cli("deployment", "inspect", "tamales-pipeline/daily", "-o", "json"), "deployment inspect"
        )
        assert str(REPO_ROOT) not in raw, "a path of the deploying checkout was baked into the deployment"
        daily = json.loads(raw)
        assert daily["pull_steps"] == [] and daily["path"] is None
        assert daily["job_variables"] == {"working_dir": ""}  # → the worker's own directory
        assert daily["parameters"] == {"source": e2e_env["TAMALES_SOURCE_URL"]}
        assert daily["entrypoint"] == "flows.pipeline.pipeline_flow"
        print(
            "CONCURRENCY",
            daily.get("concurrency_limit"),
            daily.get("global_concurrency_limit"),
            daily.get("concurrency_options"),
        )
        [schedule] = daily["schedules"]
        assert schedule["schedule"] == {
            "cron": "0 20 * * *",
            "timezone": "America/Mexico_City",
            "day_or": True,
        }
        deployments = httpx.post(f"{server.api_url}/deployments/filter", json={}, timeout=30).json()
        names = _flow_names(server.api_url)
        deployed = {f"{names[d['flow_id']]}/{d['name']}": bool(d["schedules"]) for d in deployments}
        assert deployed == {
            "tamales-pipeline/daily": True,
            **{f"{flow}/on-demand": False for flow in SUBFLOWS},
        }
        output, _ = run.communicate(timeout=840)
    finally:
        if run is not None and run.poll() is None:
            run.kill()
        stop_group(worker)
        kill_processes_using(server.api_url)  # flow-run processes run in their own groups
    assert run.returncode == 0, (
        f"pipeline run failed:\n{output[-3000:]}\n--- worker:\n{tail(worker_log, 8000)}"
    )
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", output).group(1)

    [pipeline_run] = _flow_runs(server.api_url, {"flow_runs": {"id": {"any_": [flow_run_id]}}})
    assert pipeline_run["state_type"] == "COMPLETED", pipeline_run["state"]
    sub_runs = _flow_runs(server.api_url, {"flow_runs": {"parent_flow_run_id": {"any_": [flow_run_id]}}})
    assert {names[r["flow_id"]]: r["state_type"] for r in sub_runs} == dict.fromkeys(SUBFLOWS, "COMPLETED")

    from mlflow import MlflowClient

    store = f"sqlite:///{Path(e2e_env['TAMALES_STATE_DIR']) / 'mlflow' / 'mlflow.db'}"
    champion = MlflowClient(tracking_uri=store, registry_uri=store).get_model_version_by_alias(
        "tamales-sales-forecaster", "champion"
    )
    # The run's BentoML home: one model (imported from the champion's MLflow version) in one bento.
    stores = json.loads(_check(_run([PREFECT[0], "-c", _STORES], e2e_env), "bento store listing"))
    [model] = stores["models"]
    assert model["labels"]["mlflow_version"] == str(champion.version), model
    assert stores["bentos"] == [{"tag": stores["bentos"][0]["tag"], "models": [model["tag"]]}], stores
    assert stores["bentos"][0]["tag"].startswith("tamales-forecast:")

    # A month later the next delivery lands beside the first: the same (unchanged) recipe is refit on the newer
    # data, beats the baselines again, takes @champion and is packaged.
    from features.synth import generate

    generate(Path(e2e_env["TAMALES_SOURCE_URL"]), seed=11)
    output = _run_daily(server, worker_env, tmp_path / "worker-2.log")
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    refreshed = client.get_model_version_by_alias("tamales-sales-forecaster", "champion")
    assert int(refreshed.version) > int(champion.version), output[-2000:]
    assert refreshed.tags["recipe"] == champion.tags["recipe"]
    assert refreshed.tags["data_version"] != champion.tags["data_version"]
    assert "refreshed on the newest data" in refreshed.tags["gate_reason"]
    stores = json.loads(_check(_run([PREFECT[0], "-c", _STORES], e2e_env), "bento store listing"))
    newest = {m["labels"]["mlflow_version"]: m["tag"] for m in stores["models"]}
    assert set(newest) == {str(champion.version), str(refreshed.version)}
    assert len(stores["bentos"]) == 2
    assert any(b["models"] == [newest[str(refreshed.version)]] for b in stores["bentos"]), stores
    # The fifth step realized the first champion's forecasts with the second delivery's actuals.
    for source in ("erp", "teinvento"):
        assert client.get_metric_history(champion.run_id, f"realized_wape_{source}"), output[-2000:]


def _run_daily(server: PrefectServer, worker_env: dict[str, str], worker_log: Path) -> str:
    """Run the deployed daily pipeline once more with a fresh worker; its output (asserts it completed)."""
    worker = start_group(
        [*PREFECT, "worker", "start", "--pool", "tamales-process", "--type", "process"],
        worker_env,
        worker_log,
    )
    try:
        run = subprocess.run(
            [*PREFECT, "deployment", "run", "tamales-pipeline/daily", "--watch", "--watch-timeout", "780"],
            cwd=REPO_ROOT,
            env=server.env,
            capture_output=True,
            text=True,
            timeout=840,
        )
    finally:
        stop_group(worker)
        kill_processes_using(server.api_url)
    assert run.returncode == 0, f"second pipeline run failed:\n{run.stdout[-3000:]}\n{tail(worker_log, 8000)}"
    return run.stdout


def _run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_a_failed_step_stops_the_pipeline_naming_it(prefect_harness, tmp_path: Path, monkeypatch):
    """Nothing ingested and no source: the features step fails, the run says so, train/package never start."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    from flows.pipeline import PipelineStepError, pipeline_flow

    for var, sub in (("RAW_URL", "raw"), ("PROCESSED_URL", "processed"), ("STATE_DIR", "state")):
        monkeypatch.setenv(f"TAMALES_{var}", str(tmp_path / sub))
    monkeypatch.delenv("TAMALES_SOURCE_URL", raising=False)

    state = pipeline_flow(return_state=True)
    assert state.is_failed()
    with pytest.raises(PipelineStepError, match="pipeline step 'features' failed") as failure:
        state.result()
    assert failure.value.step == "features"

    async def children() -> list[str]:
        async with get_client() as client:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[state.state_details.flow_run_id])
                )
            )
            return sorted([(await client.read_flow(r.flow_id)).name for r in runs])

    assert asyncio.run(children()) == ["features"]
    assert not (tmp_path / "state" / "mlflow").exists() and not (tmp_path / "processed").exists()


def test_a_rerun_on_unchanged_deliveries_reuses_everything(
    sample_delivery: Path, processed_version: str, trained_model, packaged_bento: str, prefect_harness
):
    """The session's chain already ingested, built, trained and packaged the sample: the pipeline on the same
    delivery copies nothing, registers no model version and builds no bento."""
    import bentoml

    from flows.pipeline import pipeline_flow
    from training import tracking

    settings = get_settings()
    registry = tracking.client(settings)
    versions_before = {v.version for v in registry.search_model_versions(f"name = '{settings.model_name}'")}
    bentos_before = {str(b.tag) for b in bentoml.bentos.list()}

    summary = pipeline_flow(source=str(sample_delivery))

    assert summary.ingest is not None
    assert summary.ingest.counts["copied"] == 0 and summary.ingest.counts["unchanged"] > 0
    assert summary.data_version == processed_version
    assert summary.train_status == "unchanged" and summary.model_version == trained_model.model_version
    assert summary.promoted is False
    assert {
        v.version for v in registry.search_model_versions(f"name = '{settings.model_name}'")
    } == versions_before
    assert {str(b.tag) for b in bentoml.bentos.list()} == bentos_before
    assert trained_model.alias == "champion", "the sample's model should beat the baselines"
    assert summary.bento == packaged_bento and summary.champion_version == trained_model.model_version
    assert summary.packaging.startswith(f"bento {packaged_bento} already serves @champion")
    # the fifth step: every product's forecast by the champion, nothing realized on the same data version
    assert summary.forecast is not None and summary.forecast.model_version == trained_model.model_version
    assert summary.forecast.products > 0 and summary.forecast.alerts == []


def test_packaging_decision_follows_the_registry_and_the_bento_store(monkeypatch, tmp_path: Path):
    """A model of its own in the session's real MLflow store: no alias → nothing to package; only a
    challenger → package it provisionally; a champion
    without a bento → package; a champion just moved → package (the bento store is checked by the rerun test)."""
    import uuid

    from flows.packaging import PackagingDecision, packaging_decision
    from training import tracking

    name = f"test-pipeline-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("TAMALES_MODEL_NAME", name)
    get_settings.cache_clear()
    registry = tracking.client()
    registry.create_registered_model(name)
    version = registry.create_model_version(
        name, source=(tmp_path / "no-model").as_uri(), run_id=None
    ).version

    assert packaging_decision(promoted=False) == PackagingDecision(
        package=False, reason=f"nothing to package: no version of {name!r} has alias @champion"
    )
    # A first model refused by the gate (@challenger) is served provisionally rather than nothing.
    registry.set_registered_model_alias(name, "challenger", version)
    provisional = packaging_decision(promoted=False)
    assert provisional.package and provisional.provisional and provisional.alias == "challenger"
    assert provisional.champion_version == str(version)
    assert (
        provisional.reason
        == f"no @champion yet: serving @challenger provisionally; no bento serves @challenger v{version} yet"
    )
    registry.delete_registered_model_alias(name, "challenger")
    registry.set_registered_model_alias(name, "champion", version)
    assert packaging_decision(promoted=False) == PackagingDecision(
        package=True, reason=f"no bento serves @champion v{version} yet", champion_version=str(version)
    )
    assert packaging_decision(promoted=True).reason == f"@champion moved to v{version}"
