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
from dataclasses import asdict, dataclass
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from features.results import FeaturesResult, IngestResult
from features.settings import get_settings
from flows import packaging
from flows.features import features_flow
from flows.forecast import ForecastResult, forecast_flow
from flows.ingest import ingest_flow
from flows.package import package_flow
from flows.train import train
from training.results import TrainResult


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


@dataclass(frozen=True)
class PipelineResult:
    """What each step of one pipeline run did (``ingest`` is None when there was no source)."""

    source: str | None
    ingest: IngestResult | None
    data_version: str
    model_version: str
    train_status: str
    promoted: bool
    gate: str
    champion_version: str | None
    packaging: str
    bento: str | None
    forecast: ForecastResult | None  # None when there is no champion to forecast with

    def summary(self) -> dict[str, Any]:
        """The result without the ingest report's file lists (for logs and the CLI)."""
        return {k: v for k, v in asdict(self).items() if k != "ingest"}


@task(name="packaging-decision", retries=2, retry_delay_seconds=[1, 4], cache_policy=NO_CACHE)
def packaging_decision_task(promoted: bool) -> packaging.PackagingDecision:
    """Read the registry and the bento store to decide whether to package."""
    return packaging.packaging_decision(promoted)


@flow(name="tamales-pipeline", log_prints=True)
def pipeline_flow(source: str | None = None, allow_incomplete: bool = False) -> PipelineResult:
    """Ingest (if there is a source) → features → train → package (if needed); what each step did.

    An empty ``source`` (as an unset ``{{ $TAMALES_SOURCE_URL }}`` deploys) means "use the setting".
    ``allow_incomplete`` is passed to the features step: publish deliveries that lack data anyway.
    """
    logger = get_run_logger()
    source = source or get_settings().source_url
    ingested: IngestResult | None = None
    if source:
        ingested = run_step("ingest", ingest_flow, source=source)
    else:
        logger.info("no source given (TAMALES_SOURCE_URL unset): skipping ingest, using the raw bucket as is")

    features: FeaturesResult = run_step("features", features_flow, allow_incomplete=allow_incomplete)
    trained: TrainResult = run_step("train", train, data_version=features.data_version)
    decision: packaging.PackagingDecision = run_step("package", packaging_decision_task, trained.promoted)
    (logger.warning if decision.provisional else logger.info)("package: %s", decision.reason)
    bento = decision.bento
    if decision.package:
        bento = run_step("package", package_flow, alias=decision.alias)
    elif decision.champion_version is None:
        logger.warning("no model version carries @champion or @challenger: there is nothing to serve")
    forecast = None
    if decision.champion_version is not None:
        forecast = run_step(
            "forecast", forecast_flow, data_version=features.data_version, alias=decision.alias
        )
    result = PipelineResult(
        source=source,
        ingest=ingested,
        data_version=features.data_version,
        model_version=trained.model_version,
        train_status=trained.status,
        promoted=trained.promoted,
        gate=trained.reason,
        champion_version=decision.champion_version,
        packaging=decision.reason,
        bento=bento,
        forecast=forecast,
    )
    logger.info(
        "pipeline done: %s",
        json.dumps(
            {"data_version": result.data_version, "model_version": result.model_version, "bento": bento}
        ),
    )
    return result


def main(argv: list[str] | None = None) -> PipelineResult:
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
        result = pipeline_flow(source=args.source, allow_incomplete=args.allow_incomplete)
    except PipelineStepError as exc:
        print(f"pipeline: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(json.dumps(result.summary(), indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
