"""The steps of one training run, as plain functions the ``train`` flow's tasks call.

Steps exchange small values only (data version, run id, recipes as JSON, scores): each step reads the
feature rows it needs from the processed bucket and writes its outputs to MLflow.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow

from features import processed
from features.settings import Settings, get_settings
from training import backtest, evaluate, gate, model, plots, reference, report, tracking
from training.data import load_rows
from training.recipe import Recipe


@dataclass(frozen=True)
class Incumbent:
    """The current ``@champion``: its model version, recipe and data version."""

    model_version: str
    recipe: Recipe
    data_version: str


@dataclass(frozen=True)
class RecipeEvaluation:
    """What the backtests found: scores per forecaster and interval factors of each recipe evaluated."""

    scores: dict[str, dict[str, dict[str, float]]]  # "candidate"/"incumbent" -> forecaster -> metric
    factors: dict[str, dict[str, tuple[float, float]]]  # role -> source -> (low, high)
    best_baseline: str
    best_baseline_wape: float

    def baseline_wapes(self) -> dict[str, float]:
        """Backtest WAPE of every baseline (same origins for every recipe)."""
        return {name: self.scores["candidate"][name]["wape"] for name in reference.BASELINES}


def resolve_data_version(data_version: str | None, settings: Settings | None = None) -> str:
    """``data_version`` if given, else the newest published processed version."""
    return data_version or processed.latest_version(settings)


def candidate_recipe(overrides: dict | None = None, settings: Settings | None = None) -> Recipe:
    """This run's recipe: the default one with ``overrides``, recording the settings' calendars."""
    settings = settings or get_settings()
    calendars: dict[str, str] = dict(settings.calendars)
    return Recipe(calendars=calendars).with_overrides(overrides)


def incumbent(settings: Settings | None = None) -> Incumbent | None:
    """The current champion and its recipe (None without a champion or when it records no recipe)."""
    settings = settings or get_settings()
    found = tracking.alias_version(tracking.client(settings), settings.model_name, gate.CHAMPION)
    if found is None or "recipe" not in (found.tags or {}):
        return None
    tags = found.tags
    return Incumbent(str(found.version), Recipe.from_json(tags["recipe"]), tags.get("data_version", ""))


def find_unchanged(fingerprint: str, settings: Settings | None = None) -> tracking.FoundVersion | None:
    """An earlier complete training with the same fingerprint (data, recipe and code), if any."""
    settings = settings or get_settings()
    return tracking.find_complete(tracking.client(settings), settings.model_name, fingerprint)


def start_run(data_version: str, recipe: Recipe, fingerprint: str, settings: Settings | None = None) -> str:
    """Create the MLflow run with provenance params, tags and the data-quality report; returns its id."""
    settings = settings or get_settings()
    mlflow_client = tracking.client(settings)
    quality = processed.read_quality_report(data_version, settings)  # before the run: no orphan on failure
    run = mlflow_client.create_run(
        tracking.experiment_id(mlflow_client, settings),
        run_name=f"train-{data_version}",
        tags={"data_version": data_version, "fingerprint": fingerprint, "mlflow.source.name": "flows.train"},
    )
    run_id = run.info.run_id
    try:
        tracking.log_params(
            mlflow_client,
            run_id,
            {
                "data_version": data_version,
                "git_commit": tracking.git_commit(),
                "code_digest": tracking.code_digest(),
                "recipe": recipe.to_json(),
                "recipe_fingerprint": recipe.fingerprint(),
                "backtest_origins": settings.backtest_origins,
            },
        )
        mlflow_client.log_dict(run_id, quality, "data_quality.json")
        mlflow_client.log_dict(run_id, recipe.to_dict(), "recipe.json")
    except Exception:
        mlflow_client.set_terminated(run_id, "FAILED")
        raise
    return run_id


def evaluate_recipes(
    run_id: str, data_version: str, candidate: Recipe, rival: Recipe | None, settings: Settings | None = None
) -> RecipeEvaluation:
    """Backtest the candidate (and the incumbent's recipe when it differs) and every baseline on the same
    origins; log the comparison table, the per-row forecasts and the plots."""
    settings = settings or get_settings()
    mlflow_client = tracking.client(settings)
    rows = load_rows(data_version, settings)
    recipes = {"candidate": candidate}
    if rival is not None and rival.fingerprint() != candidate.fingerprint():
        recipes["incumbent"] = rival
    results = {role: backtest.run(rows, r, settings.backtest_origins) for role, r in recipes.items()}
    origins = results["candidate"].origins
    baselines = reference.baseline_forecasts(rows, origins, settings.calendars)
    compared = {role: evaluate.compare(result.predictions, baselines) for role, result in results.items()}
    best_name, best = compared["candidate"].best_baseline()
    for role, comparison in compared.items():
        prefix = "backtest" if role == "candidate" else "incumbent_backtest"
        tracking.log_metrics(mlflow_client, run_id, evaluate.flat_metrics(comparison.scores, prefix))
    table = report.backtest_table(compared["candidate"].scores)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "backtest_table.md").write_text(table)
        compared["candidate"].rows.write_csv(out / "backtest_predictions.csv")
        for name in ("backtest_table.md", "backtest_predictions.csv"):
            mlflow_client.log_artifact(run_id, str(out / name))
        for path in plots.backtest_plots(compared["candidate"].rows, rows, out / "plots"):
            mlflow_client.log_artifact(run_id, str(path), "plots")
    mlflow_client.log_table(run_id, compared["candidate"].rows.to_pandas(), "backtest_predictions.json")
    return RecipeEvaluation(
        scores={role: c.scores for role, c in compared.items()},
        factors={role: result.factors for role, result in results.items()},
        best_baseline=best_name,
        best_baseline_wape=best,
    )


def fit_and_register(
    run_id: str,
    data_version: str,
    recipe: Recipe,
    factors: dict[str, tuple[float, float]],
    backtest_wape: float,
    settings: Settings | None = None,
) -> str:
    """Refit ``recipe`` on every labelled row with the backtest's interval factors, log the model in the run
    and register it (no alias yet); returns the new model version."""
    settings = settings or get_settings()
    mlflow_client = tracking.client(settings)
    rows = load_rows(data_version, settings)
    booster = model.with_calibration(model.fit(rows, recipe), factors)
    with tempfile.TemporaryDirectory() as tmp:
        path = plots.feature_importance(booster, Path(tmp) / f"feature_importance_{recipe.fingerprint()}.png")
        mlflow_client.log_artifact(run_id, str(path), "plots")
    model_uri = tracking.log_model(
        mlflow_client, run_id, booster, model.matrices(model.labelled(rows), recipe).X
    )
    tags = {
        "data_version": data_version,
        "recipe": recipe.to_json(),
        "recipe_fingerprint": recipe.fingerprint(),
        "backtest_wape": f"{backtest_wape:.6f}",
        "transform": tracking.forecast.TRANSFORM,
    }
    return str(mlflow.register_model(model_uri, settings.model_name, tags=tags).version)


def current_champion(settings: Settings | None = None) -> str | None:
    """The version behind ``@champion`` now (None if there is none)."""
    settings = settings or get_settings()
    current = tracking.alias_version(tracking.client(settings), settings.model_name, gate.CHAMPION)
    return str(current.version) if current is not None else None


def champion_moved(expected: str | None, settings: Settings | None = None) -> bool:
    """True if ``@champion`` no longer points at ``expected`` (a concurrent training promoted another)."""
    return current_champion(settings) != expected


def apply_alias(
    model_version: str, alias: str, reason: str, fingerprint: str, settings: Settings | None = None
) -> None:
    """Tag ``model_version`` with the gate's outcome and move ``alias`` to it (``training.gate.apply``)."""
    settings = settings or get_settings()
    gate.apply(tracking.client(settings), settings.model_name, model_version, alias, reason, fingerprint)


def finish_run(
    run_id: str, failed: bool, versions: list[str] | None = None, error: str | None = None
) -> None:
    """Close the run; on failure tag the registered versions so they are never mistaken for complete."""
    settings = get_settings()
    mlflow_client = tracking.client(settings)
    if failed:
        for version in versions or []:
            mlflow_client.set_model_version_tag(
                settings.model_name, version, "failed", error or "training failed"
            )
        tracking.set_tags(mlflow_client, run_id, {"error": (error or "")[:5000]})
    mlflow_client.set_terminated(run_id, "FAILED" if failed else "FINISHED")
