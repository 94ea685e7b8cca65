"""MLflow unreachable during training: the flow fails with a clear message and no registry alias moves.

Two outages: a tracking URI whose port nothing listens on (the flow cannot even start a run), and a real
``mlflow server`` (SQLite backend holding the session's registry, champion included) SIGKILLed while the
training flow runs in a child process. MLflow's client retries a failed request for ~4 minutes by default
(``MLFLOW_HTTP_REQUEST_MAX_RETRIES=7``, meant for rate limits); the tests shorten that so they fail fast.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path

import httpx
import pytest

from features.settings import get_settings
from tests.fixtures.faults import kill_when
from tests.fixtures.prefect_server import REPO_ROOT, free_port, start_group, stop_group, tail

FAST_FAIL = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def _registry(tracking_uri: str, model_name: str) -> tuple[dict[str, str], list[str]]:
    """(alias -> version, every version) of the registered model in the store at ``tracking_uri``."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    model = client.get_registered_model(model_name)
    versions = sorted(str(v.version) for v in client.search_model_versions(f"name = '{model_name}'"))
    return {alias: str(version) for alias, version in model.aliases.items()}, versions


@pytest.fixture
def restore_mlflow_uri():
    """Point the ``mlflow`` module back at the session's store after a test that pointed it elsewhere."""
    yield
    import mlflow

    get_settings.cache_clear()
    mlflow.set_tracking_uri(get_settings().mlflow_tracking_uri)
    mlflow.set_registry_uri(get_settings().mlflow_tracking_uri)


@pytest.mark.timeout(300)
def test_unreachable_tracking_server_fails_the_flow_clearly(
    trained_model, monkeypatch, prefect_harness, restore_mlflow_uri
):
    from flows.train import train

    session_store = get_settings().mlflow_tracking_uri
    before = _registry(session_store, trained_model.model_name)
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    for key, value in FAST_FAIL.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()

    started = time.monotonic()
    state = train(data_version=trained_model.data_version, params={"max_depth": 3}, return_state=True)

    assert state.is_failed()
    message = state.message or ""
    with pytest.raises(Exception) as raised:
        state.result()
    text = f"{message}\n{raised.value}"
    assert dead.removeprefix("http://") in text, text  # names the server it could not reach
    assert "Connection refused" in text or "Max retries exceeded" in text, text
    assert time.monotonic() - started < 180
    # Nothing fell back to another store: the session's registry is untouched.
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert _registry(session_store, trained_model.model_name) == before


def _running_runs(db: Path, experiment: str) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            row = conn.execute(
                "SELECT count(*) FROM runs r JOIN experiments e ON r.experiment_id = e.experiment_id "
                "WHERE e.name = ? AND r.status = 'RUNNING'",
                (experiment,),
            ).fetchone()
        return int(row[0])
    except sqlite3.Error:  # locked or not created yet: not there yet
        return 0


@pytest.mark.timeout(600)
def test_tracking_server_killed_mid_training_moves_no_alias(trained_model, tmp_path: Path, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    model_name = trained_model.model_name
    session_db = Path(get_settings().mlflow_tracking_uri.removeprefix("sqlite:///"))
    db = tmp_path / "mlflow.db"
    with sqlite3.connect(session_db) as source, sqlite3.connect(db) as copy:
        source.backup(copy)  # the session's registry: its champion is the one that must not move
    store = f"sqlite:///{db}"
    before = _registry(store, model_name)
    assert before[0], "the session's training set no alias"

    port = free_port()
    server_env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    server_cmd = [
        str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", store,
        "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    server = start_group(server_cmd, server_env, tmp_path / "mlflow-server.log", cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    flow = None
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, tail(tmp_path / "mlflow-server.log")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, tail(tmp_path / "mlflow-server.log")
            time.sleep(0.25)

        experiment = "reliability-mlflow-killed"
        env = dict(
            os.environ,
            MLFLOW_TRACKING_URI=url,
            PREFECT_API_URL=PREFECT_API_URL.value(),
            TAMALES_MLFLOW_EXPERIMENT=experiment,
            **FAST_FAIL,
        )
        version = trained_model.data_version
        cmd = [sys.executable, "-m", "flows.train", "--version", version, "--params", '{"max_depth": 3}']
        flow = start_group(cmd, env, tmp_path / "train.log", cwd=REPO_ROOT)
        # SIGKILL the tracking server (its whole process group) as soon as the training run is open.
        opened = kill_when(server, lambda: _running_runs(db, experiment) > 0, timeout=240, interval=0.02)
        assert opened, tail(tmp_path / "train.log")
        assert flow.wait(timeout=240) != 0
    finally:
        if flow is not None and flow.poll() is None:
            stop_group(flow)
        stop_group(server, timeout=5)

    log = tail(tmp_path / "train.log", 20000)
    assert f"127.0.0.1:{port}" in log and ("Connection refused" in log or "Max retries exceeded" in log), log
    assert "Finished in state Failed" in log, log
    # No alias moved and no version was added: the registry is exactly as before the run.
    assert _registry(store, model_name) == before
    shutil.rmtree(tmp_path / "artifacts", ignore_errors=True)
