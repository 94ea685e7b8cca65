"""The steps of one training run, as plain functions the ``train`` flow's tasks call.

Steps exchange small values only (data version, run id, model URI, metric dicts): each step reads the split
it needs from the processed bucket and the model from MLflow.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import mlflow

from features import processed
from features.schema import FEATURE_COLUMNS
from features.settings import Settings, get_settings
from training import backtest, baselines, data, evaluate, forecast, gate, model, plots, tracking


def resolve_data_version(version: str | None, settings: Settings | None = None) -> str:
    """``version`` if given, else the newest published processed version."""
    return version or processed.latest_version(settings)


def effective_params(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Everything that configures the fit (defaults, overrides, the tuning grid), for provenance/identity."""
    fixed, grid = model.resolve_params(overrides)
    return {**fixed, "search_grid": grid}


def find_unchanged(data_version: str, fingerprint: str, settings: Settings | None = None) -> dict | None:
    """The result of an earlier complete training with the same fingerprint (None if there is none)."""
    settings = settings or get_settings()
    mlflow_client = tracking.client(settings)
    found = tracking.find_version(mlflow_client, settings.model_name, "fingerprint", fingerprint)
    if found is None:
        return None
    found = mlflow_client.get_model_version(settings.model_name, found.version)  # search omits aliases
    champion = tracking.alias_version(mlflow_client, settings.model_name, gate.CHAMPION)
    is_champion = champion is not None and str(champion.version) == str(found.version)
    return {
        "status": "unchanged",
        "version": str(found.version),
        "promoted": False,
        "is_champion": is_champion,
        # The alias it holds now (None once newer versions took its alias).
        "alias": gate.CHAMPION if is_champion else (sorted(found.aliases) or [None])[0],
        "aliases": list(found.aliases),
        "data_version": data_version,
        "test_wape": float(found.tags["test_wape"]),
        "run_id": found.run_id,
        "reason": f"v{found.version} was trained on the same data, parameters and code; nothing registered",
    }


def start_run(
    data_version: str, params: dict[str, Any], fingerprint: str, settings: Settings | None = None
) -> str:
    """Create the MLflow run with provenance params, tags and the data-quality report; returns its id."""
    settings = settings or get_settings()
    mlflow_client = tracking.client(settings)
    quality = processed.read_quality_report(data_version, settings)  # before the run: no orphan on failure
    provenance = {
        "data_version": data_version,
        "git_commit": tracking.git_commit(),
        "code_digest": tracking.code_digest(),
        "features": list(FEATURE_COLUMNS),
        "transform": forecast.TRANSFORM,
        "quantiles": list(forecast.QUANTILES),
    }
    run = mlflow_client.create_run(
        tracking.experiment_id(mlflow_client, settings),
        run_name=f"train-{data_version}",
        tags={"data_version": data_version, "fingerprint": fingerprint, "mlflow.source.name": "flows.train"},
    )
    run_id = run.info.run_id
    try:
        tracking.log_params(mlflow_client, run_id, {**provenance, **params})
        mlflow_client.log_dict(run_id, quality, "data_quality.json")
    except Exception:
        mlflow_client.set_terminated(run_id, "FAILED")
        raise
    return run_id


def fit_and_log(run_id: str, data_version: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Tune and fit on ``train_set``; log the choice, the search and the model. Returns model URI + choice."""
    mlflow_client = tracking.client()
    train = data.load_split(data_version, "train_set")
    fit = model.tune_and_fit(train, overrides)
    chosen = {k: fit.params[k] for k in model.SEARCH_GRID[0]}
    tracking.log_params(mlflow_client, run_id, {f"chosen_{k}": v for k, v in chosen.items()})
    tracking.log_params(mlflow_client, run_id, {"num_rounds": fit.num_rounds, "train_rows": train.height})
    tracking.log_metrics(mlflow_client, run_id, {"validation_wape": fit.validation_wape})
    mlflow_client.log_dict(run_id, {"search": fit.search}, "tuning.json")
    with tempfile.TemporaryDirectory() as tmp:
        path = plots.feature_importance(fit.booster, Path(tmp) / "feature_importance.png")
        mlflow_client.log_artifact(run_id, str(path), "plots")
    model_uri = tracking.log_model(mlflow_client, run_id, fit.booster, data.matrices(train).X)
    return {"model_uri": model_uri, "params": fit.params, "num_rounds": fit.num_rounds}


def evaluate_and_log(run_id: str, data_version: str, model_uri: str) -> dict[str, dict[str, float]]:
    """Score the model and the baselines on ``test_set``; log metrics, predictions and forecast plots."""
    mlflow_client = tracking.client()
    test = data.load_split(data_version, "test_set")
    history = data.load_split(data_version, "train_set")
    result = evaluate.evaluate(tracking.load_booster(model_uri), test)
    tracking.log_metrics(
        mlflow_client, run_id, {**evaluate.flat_metrics(result.metrics), "test_rows": test.height}
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        result.predictions.write_csv(out / "test_predictions.csv")
        mlflow_client.log_artifact(run_id, str(out / "test_predictions.csv"))
        for path in plots.forecast_vs_actual(history, result.predictions, out / "plots"):
            mlflow_client.log_artifact(run_id, str(path), "plots")
    return result.metrics


def backtest_and_log(
    run_id: str, data_version: str, params: dict[str, Any], num_rounds: int
) -> dict[str, Any]:
    """Rolling-origin backtest over the last origins (refit per origin); logs mean and per-origin WAPE."""
    mlflow_client = tracking.client()
    result = backtest.rolling_origin(
        data.load_all(data_version), params, num_rounds, get_settings().test_months
    )
    flat = {"backtest_wape_mean": result["wape_mean"]}
    flat.update({f"{name}_backtest_wape_mean": v for name, v in result["baseline_wape_mean"].items()})
    flat.update({f"backtest_wape_origin_{r['origin']}": r["wape"] for r in result["origins"]})
    tracking.log_metrics(mlflow_client, run_id, flat)
    mlflow_client.log_dict(run_id, result, "backtest.json")
    return result


def rescore_champion(
    run_id: str, data_version: str, settings: Settings | None = None
) -> gate.ChampionScore | None:
    """The current ``@champion`` scored on this data version's test set now (None if there is no champion)."""
    settings = settings or get_settings()
    mlflow_client = tracking.client(settings)
    champion = tracking.alias_version(mlflow_client, settings.model_name, gate.CHAMPION)
    if champion is None:
        return None
    try:
        booster = tracking.load_booster(f"models:/{settings.model_name}/{champion.version}")
        transform = json.loads(booster.attr("transform") or "null")
        if transform != forecast.TRANSFORM:
            raise ValueError(f"it uses transform {transform!r}, this code scores {forecast.TRANSFORM!r}")
        _, scores = evaluate.score_booster(booster, data.load_split(data_version, "test_set"))
    except Exception as exc:  # any failure to reproduce its score blocks promotion (see gate.decide)
        score = gate.ChampionScore(str(champion.version), error=f"{type(exc).__name__}: {exc}")
        tracking.set_tags(mlflow_client, run_id, {"champion_rescore_error": score.error})
        return score
    tracking.log_metrics(mlflow_client, run_id, evaluate.flat_metrics({"champion": scores}))
    tracking.set_tags(mlflow_client, run_id, {"champion_version": str(champion.version)})
    return gate.ChampionScore(str(champion.version), wape=scores["wape"], metrics=scores)


def register(
    run_id: str, model_uri: str, data_version: str, test_wape: float, settings: Settings | None = None
) -> str:
    """Register the run's model as a new version of the registered model (no alias yet); its version."""
    settings = settings or get_settings()
    tracking.client(settings)
    tags = {"data_version": data_version, "test_wape": f"{test_wape:.6f}", "transform": forecast.TRANSFORM}
    version = mlflow.register_model(model_uri, settings.model_name, tags=tags)
    return str(version.version)


def promote(
    version: str,
    scores: dict[str, dict[str, float]],
    champion: gate.ChampionScore | None,
    fingerprint: str,
    settings: Settings | None = None,
) -> gate.Decision:
    """Apply the promotion gate to a registered version (tags, then one alias move)."""
    settings = settings or get_settings()
    naive = {name: scores[name]["wape"] for name in baselines.BASELINES}
    decision = gate.decide(scores[evaluate.MODEL]["wape"], naive, champion)
    scored = champion.version if champion is not None else None
    return gate.apply(tracking.client(settings), settings.model_name, version, decision, scored, fingerprint)


def finish_run(run_id: str, failed: bool, version: str | None = None, error: str | None = None) -> None:
    """Close the run; on failure tag the registered version (if any) so it is never mistaken for complete."""
    settings = get_settings()
    mlflow_client = tracking.client(settings)
    if failed and version is not None:
        mlflow_client.set_model_version_tag(
            settings.model_name, version, "failed", error or "training failed"
        )
    if failed:
        tracking.set_tags(mlflow_client, run_id, {"error": (error or "")[:5000]})
    mlflow_client.set_terminated(run_id, "FAILED" if failed else "FINISHED")
