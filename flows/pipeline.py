"""Pipeline flow ``tamales-pipeline``: ingest → features → train → package → forecast, each step a subflow.

    uv run python -m flows.pipeline [--source DIR_OR_GS_URL]

``--source`` (default: the ``TAMALES_SOURCE_URL`` setting) is where deliveries land; without one, ingest is
skipped and the features flow uses what the raw bucket already holds. Steps run strictly in order and each
consumes what the previous one published (the train step gets the exact data version the features step
published), so a failed step stops the run with a ``PipelineStepError`` naming it and nothing downstream
runs. Packaging runs only when the gate moved ``@champion`` or when no bento serves the current champion yet.
The forecast step (``flows.forecast``) then scores earlier forecasts against the new actuals and publishes
every product's forecast by the champion; it is skipped while no version carries ``@champion``.
Every step is idempotent, so a re-run on unchanged deliveries re-ingests nothing, registers no new model
version and builds no bento.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from features.settings import get_settings
from flows.features import features_flow
from flows.forecast import forecast_flow
from flows.ingest import ingest_flow
from flows.package import package_flow
from flows.train import train
from service import contract, packaging
from training import gate, tracking


class PipelineStepError(RuntimeError):
    """A pipeline step failed; ``step`` names it (the cause is chained)."""

    def __init__(self, step: str, cause: BaseException):
        super().__init__(f"pipeline step '{step}' failed: {type(cause).__name__}: {cause}")
        self.step = step


def run_step(step: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one step (a subflow); any failure becomes a ``PipelineStepError`` naming the step."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        raise PipelineStepError(step, exc) from exc


def bento_serving(champion: packaging.Champion) -> str | None:
    """Tag of a built bento whose model was imported from the champion's MLflow version (None if none)."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:  # the stores raise NotFound rather than return [] when nothing of that name exists
        model_tag = packaging.find_imported(champion)
        bentos = bentoml.bentos.list(contract.SERVICE_NAME) if model_tag else []
    except NotFound:
        return None
    for bento in bentos:
        if any(str(model.tag) == model_tag for model in bento.info.all_models):
            return str(bento.tag)
    return None


def packaging_decision(promoted: bool, alias: str = gate.CHAMPION) -> dict[str, Any]:
    """Whether the package step must run: ``@alias`` moved, or no bento serves its version yet.

    Returns ``{"package": bool, "champion": version or None, "bento": existing tag or None, "reason": str}``.
    """
    settings = get_settings()
    if tracking.alias_version(tracking.client(settings), settings.model_name, alias) is None:
        reason = f"nothing to package: no version of {settings.model_name!r} has alias @{alias}"
        return {"package": False, "champion": None, "bento": None, "reason": reason}
    champion = packaging.resolve_champion(alias, settings)
    decision = {"package": True, "champion": champion.version, "bento": None}
    if promoted:
        return decision | {"reason": f"@{alias} moved to v{champion.version}"}
    tag = bento_serving(champion)
    if tag is None:
        return decision | {"reason": f"no bento serves @{alias} v{champion.version} yet"}
    return decision | {
        "package": False,
        "bento": tag,
        "reason": f"bento {tag} already serves @{alias} v{champion.version}",
    }


@task(name="packaging-decision", retries=2, retry_delay_seconds=[1, 4], cache_policy=NO_CACHE)
def packaging_decision_task(promoted: bool) -> dict[str, Any]:
    """Read the registry and the bento store to decide whether to package."""
    return packaging_decision(promoted)


@flow(name="tamales-pipeline", log_prints=True)
def pipeline_flow(source: str | None = None, allow_incomplete: bool = False) -> dict[str, Any]:
    """Ingest (if there is a source) → features → train → package (if needed); a summary of each step.

    An empty ``source`` (as an unset ``{{ $TAMALES_SOURCE_URL }}`` deploys) means "use the setting".
    ``allow_incomplete`` is passed to the features step: publish deliveries that lack data anyway.
    """
    logger = get_run_logger()
    source = source or get_settings().source_url
    summary: dict[str, Any] = {"source": source}
    if source:
        summary["ingest"] = run_step("ingest", ingest_flow, source=source)
    else:
        logger.info("no source given (TAMALES_SOURCE_URL unset): skipping ingest, using the raw bucket as is")
        summary["ingest"] = None

    features = run_step("features", features_flow, allow_incomplete=allow_incomplete)
    summary["data_version"] = features["version"]

    trained = run_step("train", train, data_version=features["version"])
    summary |= {
        "model_version": trained.model_version,
        "train_status": trained.status,
        "promoted": trained.promoted,
        "gate": trained.reason,
    }

    decision = run_step("package", packaging_decision_task, summary["promoted"])
    logger.info("package: %s", decision["reason"])
    summary |= {
        "champion_version": decision["champion"],
        "packaging": decision["reason"],
        "bento": decision["bento"],
    }
    if decision["package"]:
        summary["bento"] = run_step("package", package_flow)
    elif decision["champion"] is None:
        logger.warning("no model version carries @champion yet: there is nothing to serve")
    summary["forecast"] = None
    if decision["champion"] is not None:
        summary["forecast"] = run_step("forecast", forecast_flow, data_version=features["version"])
    logger.info(
        "pipeline done: %s", json.dumps({k: summary[k] for k in ("data_version", "model_version", "bento")})
    )
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """CLI entry point: run the pipeline, print its summary as JSON; exit 1 naming the failed step."""
    parser = argparse.ArgumentParser(
        prog="python -m flows.pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--source", help="delivery folder or gs:// URL to ingest (default: TAMALES_SOURCE_URL)"
    )
    parser.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="features step: publish the latest deliveries even if they lack a region, a table or rows",
    )
    args = parser.parse_args(argv)
    try:
        summary = pipeline_flow(source=args.source, allow_incomplete=args.allow_incomplete)
    except PipelineStepError as exc:
        print(f"pipeline: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(json.dumps({k: v for k, v in summary.items() if k != "ingest"}, indent=2, default=str))
    return summary


if __name__ == "__main__":
    main()
