"""Training flow: processed train/test split → quantile XGBoost + baselines → MLflow → promotion gate.

    uv run python -m flows.train [--version V] [--params '{"max_depth": 4}']

Tasks exchange the data version, the MLflow run id and the model URI, never data frames. The model version
is registered without an alias; ``@champion`` (or ``@challenger``) is set by one registry call at the very
end, so a failure anywhere leaves the aliases as they were. Re-running on the same data version with the same
parameters and code registers nothing and reports "unchanged".
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from features.settings import get_settings
from training import baselines, gate, report, steps, tracking


@task(name="resolve-data-version", retries=3, retry_delay_seconds=[1, 2, 4], cache_policy=NO_CACHE)
def resolve_version_task(version: str | None) -> str:
    """The requested processed version, or the newest published one."""
    return steps.resolve_data_version(version)


@task(name="find-unchanged", retries=2, retry_delay_seconds=[1, 4], cache_policy=NO_CACHE)
def find_unchanged_task(data_version: str, fingerprint: str) -> dict | None:
    """An earlier complete training of the same data, parameters and code (None if there is none)."""
    return steps.find_unchanged(data_version, fingerprint)


@task(name="start-run", retries=2, retry_delay_seconds=[1, 4], cache_policy=NO_CACHE)
def start_run_task(data_version: str, params: dict[str, Any], fingerprint: str) -> str:
    """Open the MLflow run (provenance params, data-quality report); its id."""
    return steps.start_run(data_version, params, fingerprint)


@task(name="fit", cache_policy=NO_CACHE)
def fit_task(run_id: str, data_version: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Tune on the validation fold, refit, log the model; its URI and the chosen parameters."""
    return steps.fit_and_log(run_id, data_version, overrides)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(run_id: str, data_version: str, model_uri: str) -> dict[str, dict[str, float]]:
    """Model and baselines on the test split; metrics and plots to MLflow."""
    return steps.evaluate_and_log(run_id, data_version, model_uri)


@task(name="backtest", cache_policy=NO_CACHE)
def backtest_task(run_id: str, data_version: str, params: dict[str, Any], num_rounds: int) -> dict[str, Any]:
    """Rolling-origin backtest (refit per origin)."""
    return steps.backtest_and_log(run_id, data_version, params, num_rounds)


@task(name="rescore-champion", cache_policy=NO_CACHE)
def rescore_champion_task(run_id: str, data_version: str) -> gate.ChampionScore | None:
    """The current champion's metrics on this test set, computed now."""
    return steps.rescore_champion(run_id, data_version)


@task(name="register-model", retries=2, retry_delay_seconds=[1, 4], cache_policy=NO_CACHE)
def register_task(run_id: str, model_uri: str, data_version: str, test_wape: float) -> str:
    """New registered model version (no alias yet)."""
    return steps.register(run_id, model_uri, data_version, test_wape)


@task(name="promotion-gate", cache_policy=NO_CACHE)
def promote_task(
    version: str, scores: dict[str, dict[str, float]], champion: gate.ChampionScore | None, fingerprint: str
) -> gate.Decision:
    """Decide and move exactly one alias."""
    return steps.promote(version, scores, champion, fingerprint)


@flow(name="train")
def train(version: str | None = None, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train, score, track and gate a model on a processed data version (default: the newest).

    Returns ``{"status": "registered"|"unchanged", "version", "promoted", "alias", "reason", "data_version",
    "test_wape", "run_id", ...}``; ``version`` is the registered model version.
    """
    logger = get_run_logger()
    data_version = resolve_version_task(version)
    effective = steps.effective_params(params)
    fingerprint = tracking.fingerprint(data_version, effective)
    previous = find_unchanged_task(data_version, fingerprint)
    if previous is not None:
        logger.info("unchanged: %s", previous["reason"])
        create_markdown_artifact(report.markdown(previous), key="train-report", description="Training result")
        return previous

    run_id = start_run_task(data_version, effective, fingerprint)
    model_version = None
    try:
        fitted = fit_task(run_id, data_version, params)
        scores = evaluate_task(run_id, data_version, fitted["model_uri"])
        backtest = backtest_task(run_id, data_version, fitted["params"], fitted["num_rounds"])
        champion = rescore_champion_task(run_id, data_version)
        if champion is not None and champion.metrics is not None:
            scores = {**scores, "champion": champion.metrics}
        model_version = register_task(run_id, fitted["model_uri"], data_version, scores["model"]["wape"])
        decision = promote_task(model_version, scores, champion, fingerprint)
    except BaseException as exc:
        try:
            steps.finish_run(run_id, failed=True, version=model_version, error=f"{type(exc).__name__}: {exc}")
        except Exception:  # the store may be what failed; never hide the original error
            logger.exception("could not mark MLflow run %s as failed", run_id)
        raise
    steps.finish_run(run_id, failed=False)

    result = {
        "status": "registered",
        "version": model_version,
        "promoted": decision.promote,
        "alias": decision.alias,
        "reason": decision.reason,
        "data_version": data_version,
        "test_wape": scores["model"]["wape"],
        "coverage_p10_p90": scores["model"]["coverage_p10_p90"],
        "baseline_wapes": {name: scores[name]["wape"] for name in baselines.BASELINES},
        "champion_version": champion.version if champion is not None else None,
        "champion_wape": champion.wape if champion is not None else None,
        "backtest_wape_mean": backtest["wape_mean"],
        "backtest": backtest,
        "scores": scores,
        "run_id": run_id,
        "model_name": get_settings().model_name,
    }
    logger.info("model v%s → @%s: %s", model_version, decision.alias, decision.reason)
    create_markdown_artifact(report.markdown(result), key="train-report", description="Training result")
    return result


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m flows.train", description=__doc__.splitlines()[0])
    parser.add_argument("--version", help="processed data version (default: the newest published)")
    parser.add_argument("--params", type=json.loads, help="JSON object of training parameter overrides")
    args = parser.parse_args(argv)
    result = train(version=args.version, params=args.params)
    print(json.dumps({k: v for k, v in result.items() if k not in ("scores", "backtest")}, indent=2))


if __name__ == "__main__":
    main()
