"""Features flow: latest raw deliveries → clean features → feature store + versioned train/test parquet.

    uv run python -m flows.features [--force] [--allow-incomplete]

Tasks exchange version names and URLs, never data frames. The version directory is published atomically
before the feature store is replaced and ``LATEST`` is moved, so a crash at any point leaves the previous
outputs in force and a re-run finishes the job. An incomplete delivery (``features.completeness``: a missing
region or table, a quarantined file, far fewer rows than the previous delivery) fails the run before anything
is published, naming what is missing, unless ``--allow-incomplete`` says to publish it anyway. Data errors
are not retried (the same input fails the same way); I/O errors are.
"""

from __future__ import annotations

import argparse
import json

from prefect import Task, flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import State, TaskRun

from features import dataset, processed, storage
from features.completeness import IncompleteDeliveryError, describe
from features.feature_store import get_feature_store
from features.raw_csv import RawFileError
from features.results import FeaturesResult
from features.settings import get_settings


def retry_unless_data_error(task: Task, task_run: TaskRun, state: State) -> bool:
    """Prefect retry condition: retry a failure unless it is a data error (bad or incomplete input)."""
    try:
        state.result()
    except (RawFileError, IncompleteDeliveryError):
        return False
    except Exception:
        return True
    return True


@task(
    name="resolve-inputs",
    retries=3,
    retry_delay_seconds=[1, 2, 4],
    retry_condition_fn=retry_unless_data_error,
)
def resolve_inputs_task() -> dict:
    """Pick the latest ingested delivery of each source, derive the data version, list what each lacks."""
    inputs = dataset.resolve_inputs()
    deliveries = {s: m.delivery for s, m in inputs.manifests.items()}
    return {"data_version": inputs.version, "deliveries": deliveries, "problems": inputs.problems}


@task(name="check-completeness")
def check_completeness_task(inputs: dict, allow_incomplete: bool) -> None:
    """Fail, keeping the published version, when a delivery is incomplete, unless explicitly allowed."""
    if not any(inputs["problems"].values()):
        return
    message = describe(inputs["problems"], inputs["deliveries"])
    if not allow_incomplete:
        raise IncompleteDeliveryError(
            f"{message}. Nothing was published: the previous data version stays in force. Re-deliver what is"
            " missing, or publish this delivery anyway with --allow-incomplete (flow parameter"
            " allow_incomplete=True)."
        )
    get_run_logger().warning("publishing it anyway (allow_incomplete): %s", message)


@task(
    name="build-and-publish-version",
    retries=2,
    retry_delay_seconds=[2, 8],
    retry_condition_fn=retry_unless_data_error,
)
def build_and_publish_task(data_version: str, force: bool = False) -> str:
    """Build features, splits and the data-quality report; publish them as ``<processed>/<version>/``."""
    logger = get_run_logger()
    url = processed.version_url(data_version)
    if not force and storage.is_published(url):
        logger.info("version %s already published at %s: reusing it", data_version, url)
        return url
    inputs = dataset.resolve_inputs()
    if inputs.version != data_version:
        raise RuntimeError(
            f"raw deliveries changed during the run ({data_version} → {inputs.version}); re-run the flow"
        )
    logger.info("feature engine: %s", get_settings().feature_engine)
    features, report = dataset.build_dataset(inputs, progress=logger.info)
    logger.info("built %d feature rows (train %d, test %d)", report["rows"]["features"], *_split_rows(report))
    return dataset.publish_version(features, report)


def _split_rows(report: dict) -> tuple[int, int]:
    return report["rows"]["train"], report["rows"]["test"]


@task(name="publish-feature-store", retries=3, retry_delay_seconds=[2, 4, 8])
def publish_feature_store_task(data_version: str) -> int:
    """Replace the feature-store table with the version's feature rows (one load job / atomic file)."""
    rows = get_feature_store().write(dataset.read_features(data_version))
    get_run_logger().info("feature store (%s) now holds %d rows", get_settings().feature_store, rows)
    return rows


@task(name="set-latest-version", retries=3, retry_delay_seconds=[1, 2, 4])
def set_latest_task(data_version: str) -> None:
    """Move the ``LATEST`` pointer of the processed bucket."""
    dataset.set_latest(data_version)


def _report_markdown(report: dict, engine: str) -> str:
    lines = [f"# Data quality — version `{report['version']}`", "", f"Feature engine of this run: {engine}"]
    lines += ["", "| rule | count |", "|---|---:|"]
    lines += [f"| {rule} | {n:,} |" for rule, n in report["rules"].items()]
    lines += ["", "| source | delivery | files | products | months |", "|---|---|---:|---:|---|"]
    for source, info in report["sources"].items():
        lines.append(
            f"| {source} | {report['deliveries'][source]} | {report['files_read'][source]} "
            f"| {info['products']} | {info['first_month']} … {info['last_month']} |"
        )
    incomplete = [f"{s}: {p}" for s, listed in report.get("incomplete", {}).items() for p in listed]
    if incomplete:
        lines += ["", "**Published although incomplete (allow_incomplete):**", ""]
        lines += [f"- {item}" for item in incomplete]
    quarantined = report["files_quarantined"]
    lines += ["", f"Quarantined files: {len(quarantined)}"]
    lines += [f"- `{q['relpath']}`: {q['reason']}" for q in quarantined]
    lines += ["", f"Rows: {json.dumps(report['rows'])}"]
    return "\n".join(lines)


@flow(name="features", log_prints=True)
def features_flow(force: bool = False, allow_incomplete: bool = False) -> FeaturesResult:
    """Build and publish the feature table and the train/test split of the latest deliveries.

    ``allow_incomplete`` publishes a delivery that lacks data (see ``features.completeness``) anyway.
    """
    inputs = resolve_inputs_task()
    check_completeness_task(inputs, allow_incomplete)
    data_version = inputs["data_version"]
    url = build_and_publish_task(data_version, force=force)
    rows = publish_feature_store_task(data_version)
    set_latest_task(data_version)
    report = processed.read_quality_report(data_version)
    engine = get_settings().feature_engine
    create_markdown_artifact(
        markdown=_report_markdown(report, engine), key="data-quality", description=data_version
    )
    get_run_logger().info("published version %s at %s (feature engine: %s)", data_version, url, engine)
    return FeaturesResult(
        engine=engine,
        data_version=data_version,
        url=url,
        feature_store_rows=rows,
        deliveries=inputs["deliveries"],
        incomplete=inputs["problems"],
    )


def main(argv: list[str] | None = None) -> FeaturesResult:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--force", action="store_true", help="rebuild even if the version is already published"
    )
    parser.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="publish the latest deliveries even if they lack a region, a table or rows (see the docs)",
    )
    args = parser.parse_args(argv)
    return features_flow(force=args.force, allow_incomplete=args.allow_incomplete)


if __name__ == "__main__":
    main()
