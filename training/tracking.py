"""MLflow plumbing: store configuration, experiment, run bookkeeping, provenance and the model registry.

Everything goes through an explicit ``MlflowClient`` and explicit run ids (no fluent "active run"), because
Prefect runs each task in its own worker thread. The embedded default is SQLite plus a local artifact folder
under the state dir; ``MLFLOW_TRACKING_URI`` points at a remote server instead (see ``features.settings``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import infer_signature
from mlflow.utils.time import get_current_time_millis

from features.settings import Settings, get_settings
from features.telemetry import quiet_tools
from training import forecast

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The code whose change must produce a new model version (see ``fingerprint``).
CODE_FILES = (*sorted((PROJECT_ROOT / "training").glob("*.py")), PROJECT_ROOT / "features" / "schema.py")
MODEL_ARTIFACT = "model"


def client(settings: Settings | None = None) -> MlflowClient:
    """The one MLflow client factory: a client for the configured store; also points the ``mlflow`` module
    (model logging, registration) at it, and switches MLflow's telemetry off whatever the entry point."""
    quiet_tools()
    settings = settings or get_settings()
    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(mlflow_client: MlflowClient, settings: Settings | None = None) -> str:
    """Id of the project's experiment, created on first use (local artifact root for a local store)."""
    settings = settings or get_settings()
    name = settings.mlflow_experiment
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            mlflow_client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    remote = settings.mlflow_tracking_uri.startswith(("http://", "https://", "databricks"))
    location = None if remote else settings.mlflow_artifact_root
    try:
        return mlflow_client.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:
        # Another process created it between our lookup and the create.
        experiment = mlflow_client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def git_commit() -> str:
    """The checked-out commit (suffixed ``-dirty`` with uncommitted changes), or ``unknown`` outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "training", "features/schema.py"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def code_digest() -> str:
    """SHA-256 over the training code and the feature schema (what decides the model besides data/params)."""
    digest = hashlib.sha256()
    for path in CODE_FILES:
        digest.update(path.relative_to(PROJECT_ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def fingerprint(data_version: str, params: dict[str, Any]) -> str:
    """Identity of a training: same data version, effective parameters and code -> same fingerprint."""
    payload = json.dumps({"data": data_version, "params": params, "code": code_digest()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def log_params(mlflow_client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    """Log parameters (non-string values JSON-encoded)."""
    items = [Param(k, v if isinstance(v, str) else json.dumps(v)) for k, v in sorted(params.items())]
    for start in range(0, len(items), 100):
        mlflow_client.log_batch(run_id, params=items[start : start + 100])


def log_metrics(mlflow_client: MlflowClient, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    """Log metrics in one batch."""
    now = get_current_time_millis()
    items = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items())]
    for start in range(0, len(items), 1000):
        mlflow_client.log_batch(run_id, metrics=items[start : start + 1000])


def set_tags(mlflow_client: MlflowClient, run_id: str, tags: dict[str, str]) -> None:
    """Set run tags in one batch."""
    mlflow_client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def log_model(mlflow_client: MlflowClient, run_id: str, booster: xgb.Booster, X: np.ndarray) -> str:
    """Log ``booster`` (xgboost flavour, so ``mlflow.xgboost.load_model`` returns a Booster); its model URI.

    ``X`` holds encoded feature rows (the booster's spec columns). The signature and input example describe
    the booster's own input, i.e. ``forecast.model_inputs(X, spec)``; the MLmodel metadata records the spec
    (features, base, interval calibration) that ``forecast.predict_quantiles`` applies around it.
    """
    spec = forecast.spec_of(booster)
    run = mlflow_client.get_run(run_id)
    # Created here, in the run's experiment: left to itself MLflow files a model logged for a run that is not
    # the thread's active run under the *default* experiment, whose artifact root is ./mlruns in the CWD.
    logged = mlflow_client.create_logged_model(
        experiment_id=run.info.experiment_id,
        name=MODEL_ARTIFACT,
        source_run_id=run_id,
        params={k: v[:6000] for k, v in run.data.params.items()},
    )
    finite = X[np.isfinite(X).all(axis=1)]
    rows = (finite if len(finite) else X)[:5]
    example = pd.DataFrame(forecast.model_inputs(rows, spec), columns=list(spec.features))
    output = np.asarray(booster.inplace_predict(example.to_numpy()), dtype=np.float32)
    info = mlflow.xgboost.log_model(
        booster,
        name=MODEL_ARTIFACT,
        signature=infer_signature(example, output),
        input_example=example,
        model_format="ubj",
        metadata=forecast.model_metadata(spec),
        # Explicit: otherwise MLflow infers them by exporting the whole uv lock file (slow, and not what the
        # booster needs). The bento pins its own environment from the ``serving`` dependency group.
        pip_requirements=_requirements(),
        run_id=run_id,
        model_id=logged.model_id,
    )
    return info.model_uri


def _requirements() -> list[str]:
    found = []
    for dist in ("xgboost-cpu", "xgboost", "numpy"):
        try:
            found.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


@dataclass(frozen=True)
class FoundVersion:
    """A complete registered version found by its fingerprint, and the aliases it holds now."""

    model_version: str
    run_id: str
    aliases: tuple[str, ...]
    tags: dict[str, str]


def find_complete(mlflow_client: MlflowClient, model_name: str, fingerprint: str) -> FoundVersion | None:
    """The newest complete (``fingerprint``-tagged, not failed) version of ``model_name`` with that fingerprint."""
    quoted_name = model_name.replace("'", "\\'")
    found = mlflow_client.search_model_versions(
        f"name = '{quoted_name}' AND tags.fingerprint = '{fingerprint}'"
    )
    complete = [v for v in found if "failed" not in (v.tags or {})]
    newest = max(complete, key=lambda v: int(v.version), default=None)
    if newest is None:
        return None
    newest = mlflow_client.get_model_version(model_name, newest.version)  # search omits aliases
    return FoundVersion(str(newest.version), newest.run_id or "", tuple(newest.aliases), dict(newest.tags))


def alias_version(mlflow_client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    """The version holding ``alias``, or None (no such alias or no such registered model)."""
    try:
        return mlflow_client.get_model_version_by_alias(model_name, alias)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def load_booster(model_uri: str) -> xgb.Booster:
    """Load a logged/registered model as an ``xgboost.Booster``."""
    booster = mlflow.xgboost.load_model(model_uri)
    if not isinstance(booster, xgb.Booster):
        booster = booster.get_booster()
    return booster
