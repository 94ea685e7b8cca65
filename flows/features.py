"""Features flow: latest raw deliveries → clean features → feature store + versioned train/test parquet.

    uv run python -m flows.features [--force]

Tasks exchange version names and URLs, never data frames. The version directory is published atomically
before the feature store is replaced and ``LATEST`` is moved, so a crash at any point leaves the previous
outputs in force and a re-run finishes the job.
"""

from __future__ import annotations

import argparse
import json

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from features import dataset, processed, storage
from features.feature_store import get_feature_store
from features.settings import get_settings


@task(name="resolve-inputs", retries=3, retry_delay_seconds=[1, 2, 4])
def resolve_inputs_task() -> dict:
    """Pick the latest ingested delivery of each source and derive the data version."""
    inputs = dataset.resolve_inputs()
    return {"version": inputs.version, "deliveries": {s: m.delivery for s, m in inputs.manifests.items()}}


@task(name="build-and-publish-version", retries=2, retry_delay_seconds=[2, 8])
def build_and_publish_task(version: str, force: bool = False) -> str:
    """Build features, splits and the data-quality report; publish them as ``<processed>/<version>/``."""
    logger = get_run_logger()
    url = processed.version_url(version)
    if not force and storage.is_published(url):
        logger.info("version %s already published at %s: reusing it", version, url)
        return url
    inputs = dataset.resolve_inputs()
    if inputs.version != version:
        raise RuntimeError(
            f"raw deliveries changed during the run ({version} → {inputs.version}); re-run the flow"
        )
    features, report = dataset.build_dataset(inputs, progress=logger.info)
    logger.info("built %d feature rows (train %d, test %d)", report["rows"]["features"], *_split_rows(report))
    return dataset.publish_version(features, report)


def _split_rows(report: dict) -> tuple[int, int]:
    return report["rows"]["train"], report["rows"]["test"]


@task(name="publish-feature-store", retries=3, retry_delay_seconds=[2, 4, 8])
def publish_feature_store_task(version: str) -> int:
    """Replace the feature-store table with the version's feature rows (one load job / atomic file)."""
    rows = get_feature_store().write(dataset.read_features(version))
    get_run_logger().info("feature store (%s) now holds %d rows", get_settings().feature_store, rows)
    return rows


@task(name="set-latest-version", retries=3, retry_delay_seconds=[1, 2, 4])
def set_latest_task(version: str) -> None:
    """Move the ``LATEST`` pointer of the processed bucket."""
    dataset.set_latest(version)


def _report_markdown(report: dict) -> str:
    lines = [f"# Data quality — version `{report['version']}`", "", "| rule | count |", "|---|---:|"]
    lines += [f"| {rule} | {n:,} |" for rule, n in report["rules"].items()]
    lines += ["", "| source | delivery | files | products | months |", "|---|---|---:|---:|---|"]
    for source, info in report["sources"].items():
        lines.append(
            f"| {source} | {report['deliveries'][source]} | {report['files_read'][source]} "
            f"| {info['products']} | {info['first_month']} … {info['last_month']} |"
        )
    quarantined = report["files_quarantined"]
    lines += ["", f"Quarantined files: {len(quarantined)}"]
    lines += [f"- `{q['relpath']}`: {q['reason']}" for q in quarantined]
    lines += ["", f"Rows: {json.dumps(report['rows'])}"]
    return "\n".join(lines)


@flow(name="features", log_prints=True)
def features_flow(force: bool = False) -> dict:
    """Build and publish the feature table and the train/test split of the latest deliveries."""
    inputs = resolve_inputs_task()
    version = inputs["version"]
    url = build_and_publish_task(version, force=force)
    rows = publish_feature_store_task(version)
    set_latest_task(version)
    report = processed.read_quality_report(version)
    create_markdown_artifact(markdown=_report_markdown(report), key="data-quality", description=version)
    get_run_logger().info("published version %s at %s", version, url)
    return {"version": version, "url": url, "feature_store_rows": rows, "deliveries": inputs["deliveries"]}


def main(argv: list[str] | None = None) -> dict:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--force", action="store_true", help="rebuild even if the version is already published"
    )
    args = parser.parse_args(argv)
    return features_flow(force=args.force)


if __name__ == "__main__":
    main()
