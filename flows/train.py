"""Training flow: a recipe's rolling-origin backtest vs the baselines → refit → MLflow → promotion gate.

    uv run python -m flows.train [--data-version V] [--params '{"max_depth": 3}']

The candidate recipe (the default, with ``--params`` overrides) and the current champion's recipe are both
backtested on the same rolling origins as every baseline (naive rules and statsforecast models); the winner
is refit on all data and promoted only if it beats every baseline (``training.gate``). So an unchanged recipe
is refreshed on every new delivery, and a candidate that loses becomes ``@challenger`` with the reason.
Tasks exchange the data version, the run id, recipes and scores, never data frames. Aliases are set by one
registry call each at the very end, so a failure anywhere leaves them as they were. Re-running on the same
data version with the same recipe and code registers nothing and reports "unchanged".
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from features.settings import get_settings
from training import gate, report, steps, tracking
from training.recipe import Recipe
from training.results import TrainResult


@task(name="resolve-data-version", retries=3, retry_delay_seconds=[1, 2, 4], cache_policy=NO_CACHE)
def resolve_data_version_task(data_version: str | None) -> str:
    """The requested processed data version, or the newest published one."""
    return steps.resolve_data_version(data_version)


@task(name="find-unchanged", retries=2, retry_delay_seconds=[1, 4], cache_policy=NO_CACHE)
def find_unchanged_task(fingerprint: str) -> tracking.FoundVersion | None:
    """An earlier complete training of the same data, recipe and code (None if there is none)."""
    return steps.find_unchanged(fingerprint)


@task(name="read-champion", retries=2, retry_delay_seconds=[1, 4], cache_policy=NO_CACHE)
def incumbent_task() -> steps.Incumbent | None:
    """The current champion and the recipe it was trained with."""
    return steps.incumbent()


@task(name="start-run", retries=2, retry_delay_seconds=[1, 4], cache_policy=NO_CACHE)
def start_run_task(data_version: str, recipe: Recipe, fingerprint: str) -> str:
    """Open the MLflow run (provenance params, recipe, data-quality report); its id."""
    return steps.start_run(data_version, recipe, fingerprint)


@task(name="backtest", cache_policy=NO_CACHE)
def evaluate_task(
    run_id: str, data_version: str, candidate: Recipe, rival: Recipe | None
) -> steps.RecipeEvaluation:
    """Backtest the recipes and every baseline on the same origins; table, forecasts and plots to MLflow."""
    return steps.evaluate_recipes(run_id, data_version, candidate, rival)


@task(name="fit-and-register", retries=1, retry_delay_seconds=[4], cache_policy=NO_CACHE)
def fit_task(run_id: str, data_version: str, recipe: Recipe, factors: dict, wape: float) -> str:
    """Refit the recipe on all data (calibrated intervals), log and register it; the new model version."""
    return steps.fit_and_register(run_id, data_version, recipe, factors, wape)


@task(name="promotion-gate", retries=2, retry_delay_seconds=[1, 4], cache_policy=NO_CACHE)
def alias_task(model_version: str, alias: str, reason: str, fingerprint: str) -> None:
    """Record the decision on the model version and move exactly one alias."""
    steps.apply_alias(model_version, alias, reason, fingerprint)


def _fingerprint(data_version: str, recipe: Recipe) -> str:
    return tracking.fingerprint(
        data_version, {"recipe": recipe.to_dict(), "backtest_origins": get_settings().backtest_origins}
    )


def _unchanged(data_version: str, recipe: Recipe, found: tracking.FoundVersion) -> TrainResult:
    settings = get_settings()
    champion = tracking.alias_version(tracking.client(settings), settings.model_name, gate.CHAMPION)
    return TrainResult(
        status="unchanged",
        data_version=data_version,
        model_name=settings.model_name,
        model_version=found.model_version,
        alias=next(iter(sorted(found.aliases)), None),
        promoted=False,
        reason=f"v{found.model_version} was trained on the same data, recipe and code; nothing registered",
        recipe_fingerprint=recipe.fingerprint(),
        run_id=found.run_id,
        champion_version=str(champion.version) if champion is not None else None,
        backtest_wape=float(found.tags["backtest_wape"]) if "backtest_wape" in found.tags else None,
    )


@flow(name="train")
def train(data_version: str | None = None, params: dict[str, Any] | None = None) -> TrainResult:
    """Backtest, refit, track and gate the candidate recipe on a processed data version (default: newest)."""
    logger = get_run_logger()
    settings = get_settings()
    data_version = resolve_data_version_task(data_version)
    candidate = steps.candidate_recipe(params)
    fingerprint = _fingerprint(data_version, candidate)
    found = find_unchanged_task(fingerprint)
    if found is not None:
        result = _unchanged(data_version, candidate, found)
        logger.info("unchanged: %s", result.reason)
        create_markdown_artifact(report.markdown(result, settings.backtest_origins), key="train-report")
        return result

    incumbent = incumbent_task()
    run_id = start_run_task(data_version, candidate, fingerprint)
    registered: list[str] = []
    try:
        evaluation = evaluate_task(run_id, data_version, candidate, incumbent.recipe if incumbent else None)
        scores = evaluation.scores
        candidate_wape = scores["candidate"]["model"]["wape"]
        rival = None
        if incumbent is not None:  # the same recipe as the candidate's was backtested once, as the candidate
            wape = scores["incumbent"]["model"]["wape"] if "incumbent" in scores else candidate_wape
            rival = gate.RecipeScore(
                "incumbent", incumbent.recipe.fingerprint(), wape, incumbent.model_version
            )
        own = gate.RecipeScore("candidate", candidate.fingerprint(), candidate_wape)
        decision = gate.decide(own, rival, evaluation.baseline_wapes())
        expected_champion = incumbent.model_version if incumbent is not None else steps.current_champion()
        model_version = fit_task(
            run_id, data_version, candidate, evaluation.factors["candidate"], candidate_wape
        )
        registered.append(model_version)
        champion_version = None
        if decision.promote and decision.winner == "incumbent":
            assert incumbent is not None and rival is not None
            incumbent_fp = _fingerprint(data_version, incumbent.recipe)
            again = find_unchanged_task(incumbent_fp)
            if again is not None:
                champion_version = again.model_version
            else:
                champion_version = fit_task(
                    run_id, data_version, incumbent.recipe, evaluation.factors["incumbent"], rival.wape
                )
                registered.append(champion_version)
        if decision.promote and steps.champion_moved(expected_champion):
            decision = gate.Decision(
                False, decision.winner, "@champion moved during this run; not compared with it",
                decision.best_baseline, decision.best_baseline_wape,
            )  # fmt: skip
            champion_version = None
        if champion_version is not None and champion_version not in (expected_champion,):
            assert incumbent is not None  # only the incumbent's recipe yields a champion_version here
            alias_task(
                champion_version, gate.CHAMPION, decision.reason, _fingerprint(data_version, incumbent.recipe)
            )
        alias_task(model_version, decision.candidate_alias, decision.reason, fingerprint)
    except BaseException as exc:
        try:
            steps.finish_run(run_id, failed=True, versions=registered, error=f"{type(exc).__name__}: {exc}")
        except Exception:  # the store may be what failed; never hide the original error
            logger.exception("could not mark MLflow run %s as failed", run_id)
        raise
    steps.finish_run(run_id, failed=False)

    model_scores = scores["candidate"]["model"]
    result = TrainResult(
        status="registered",
        data_version=data_version,
        model_name=settings.model_name,
        model_version=model_version,
        alias=decision.candidate_alias,
        promoted=decision.promote,
        reason=decision.reason,
        recipe_fingerprint=candidate.fingerprint(),
        run_id=run_id,
        champion_version=steps.current_champion(),
        backtest_wape=candidate_wape,
        coverage_p10_p90=model_scores["coverage_p10_p90"],
        best_baseline=decision.best_baseline,
        best_baseline_wape=decision.best_baseline_wape,
        scores=scores["candidate"],
        incumbent_scores=scores.get("incumbent", {}),
    )
    log = logger.info if decision.promote else logger.warning
    log("model v%s → @%s: %s", model_version, result.alias, decision.reason)
    create_markdown_artifact(report.markdown(result, settings.backtest_origins), key="train-report")
    create_table_artifact(
        [
            {"forecaster": name, **{k: round(v, 4) for k, v in values.items()}}
            for name, values in result.scores.items()
        ],
        key="backtest-table",
        description=f"Rolling-origin backtest on {data_version}: the model and every baseline",
    )
    return result


def main(argv: list[str] | None = None) -> TrainResult:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m flows.train", description=__doc__.splitlines()[0])
    parser.add_argument("--data-version", help="processed data version (default: the newest published)")
    parser.add_argument("--version", dest="legacy_version", help=argparse.SUPPRESS)  # deprecated alias
    parser.add_argument("--params", type=json.loads, help="JSON object of recipe overrides")
    args = parser.parse_args(argv)
    if args.legacy_version:
        print("flows.train: --version is deprecated, use --data-version", flush=True)
    result = train(data_version=args.data_version or args.legacy_version, params=args.params)
    print(json.dumps(result.summary(), indent=2))
    return result


if __name__ == "__main__":
    main()
