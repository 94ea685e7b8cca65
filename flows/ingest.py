"""Ingest flow: a delivery tree (folder or gs:// URL) → validated copies in the raw bucket + manifests.

    uv run --frozen python -m flows.ingest --source DIR_OR_GS_URL

The raw bucket comes from the ``TAMALES_RAW_URL`` setting. One task scans the tree, then one task per
(source, delivery) validates and copies its files; both retry on I/O errors and are idempotent (content
hashes decide what is new), so a retry or a re-run copies only what is missing. Malformed files are
quarantined and reported, never fatal.
"""

from __future__ import annotations

import argparse
import json

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from features import ingest
from features.raw_layout import RawFile
from features.results import IngestResult
from features.settings import get_settings


@task(name="scan-delivery", retries=3, retry_delay_seconds=[1, 2, 4], cache_policy=NO_CACHE)
def scan_task(source_url: str) -> ingest.SourceScan:
    """Classify every file of the delivery tree."""
    scan = ingest.scan_source(source_url)
    get_run_logger().info(
        "%s: %d data files in %d deliveries, %d not data, %d unknown",
        source_url,
        len(scan.data),
        len(scan.groups()),
        len(scan.not_data),
        len(scan.unknown),
    )
    ingest.warn_skipped(scan, get_run_logger())
    return scan


@task(name="ingest-delivery", retries=3, retry_delay_seconds=[1, 2, 4], cache_policy=NO_CACHE)
def ingest_group_task(source_url: str, raw_url: str, files: list[RawFile]) -> ingest.IngestReport:
    """Validate, copy or quarantine the data files of one (source, delivery); update its manifest."""
    return ingest.ingest_files(source_url, raw_url, files, log=get_run_logger())


def report_markdown(source_url: str, raw_url: str, report: ingest.IngestReport) -> str:
    """Markdown summary of an ingest run (counts per outcome, then every quarantined file)."""
    counts = report.counts()
    lines = [
        f"# Ingest of `{source_url}` into `{raw_url}`",
        "",
        f"Deliveries: {', '.join(report.deliveries) or 'none'}",
        "",
        "| outcome | files |",
        "|---|---|",
        *(f"| {name} | {n} |" for name, n in counts.items()),
        "",
        f"Rows validated: {report.rows_validated:,}; bytes copied: {report.bytes_copied:,}",
    ]
    if report.quarantined:
        lines += ["", "## Quarantined", "", "| file | reason |", "|---|---|"]
        lines += [f"| `{rel}` | {reason.replace('|', '/')} |" for rel, reason in report.quarantined]
    if report.skipped_unknown:
        lines += ["", "## Skipped (not in the known layout)", ""]
        lines += [f"- `{rel}`" for rel in report.skipped_unknown]
    return "\n".join(lines) + "\n"


@flow(name="ingest")
def ingest_flow(source: str, raw_url: str | None = None) -> IngestResult:
    """Ingest the delivery tree at ``source`` into the raw bucket; what it copied, skipped and quarantined."""
    logger = get_run_logger()
    raw_url = raw_url or get_settings().raw_url
    scan = scan_task(source)
    report = ingest.IngestReport(skipped_not_data=scan.not_data, skipped_unknown=scan.unknown)
    for (source_name, delivery), files in scan.groups().items():
        logger.info("%s/%s: %d data files", source_name, delivery, len(files))
        report = report.merge(ingest_group_task(source, raw_url, files))
    create_markdown_artifact(
        markdown=report_markdown(source, raw_url, report),
        key="ingest-report",
        description="Raw files copied, unchanged, skipped and quarantined",
    )
    logger.info("ingest done: %s", report.counts())
    if report.quarantined:
        logger.warning("%d files quarantined under %s/_quarantine", len(report.quarantined), raw_url)
    return IngestResult.of(report)


def main(argv: list[str] | None = None) -> IngestResult:
    """CLI entry point: run the flow, print the counts and quarantined files as JSON."""
    parser = argparse.ArgumentParser(prog="python -m flows.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="delivery folder or gs:// URL")
    args = parser.parse_args(argv)
    result = ingest_flow(source=args.source)
    printed = result.to_dict()
    print(json.dumps({k: printed[k] for k in ("counts", "deliveries", "quarantined")}, indent=2))
    return result


if __name__ == "__main__":
    main()
