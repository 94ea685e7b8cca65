"""Loading raw CSV files into a BigQuery table: the one place where real BigQuery and the emulator differ.

On GCP (no endpoint override, files on GCS) one load job reads the files straight from their ``gs://`` URIs:
no raw byte passes through the worker, and a load job is free. Otherwise — bqemulator, which cannot read GCS,
or a raw bucket that is a local folder — the worker reads each file from its bucket and uploads the bytes
through the client, one load job per file (the first replaces the table, the others append).

Uploaded bytes get one synthetic header line and ``skip_leading_rows=1``: bqemulator treats the first line of
every uploaded CSV as a header whatever the job says, real BigQuery honours ``skip_leading_rows``, so the same
upload loads the same rows on both. Every column is loaded as STRING, with BigQuery's strict CSV options
(exact column count, no quoted newlines, no bad record tolerated): typing is the SQL's job, as it is the
cleaners' on the polars engine. An unquoted empty field loads as NULL and a quoted ``""`` as an empty string
on BigQuery (bqemulator loads both as NULL; every rule treats the two alike).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from features import bq, storage
from features.settings import Settings

MAX_URIS_PER_JOB = 10_000  # BigQuery's limit of source URIs in one load job


class LoadFailed(RuntimeError):
    """A load job failed; ``reason`` is BigQuery's first error message (for a single file: why it is bad)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def loads_from_uris(settings: Settings, urls: Sequence[str]) -> bool:
    """Whether the files are loaded by BigQuery from their URIs (GCP) rather than uploaded by the worker."""
    return not settings.bq_endpoint and all(storage.is_gcs(url) for url in urls)


def _config(columns: Sequence[str], first: bool, header: bool) -> Any:
    from google.cloud import bigquery

    return bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.CSV,
        schema=[bigquery.SchemaField(name, "STRING") for name in columns],
        write_disposition="WRITE_TRUNCATE" if first else "WRITE_APPEND",
        create_disposition="CREATE_IF_NEEDED",
        field_delimiter=",",
        quote_character='"',
        encoding="UTF-8",
        skip_leading_rows=1 if header else 0,
        allow_quoted_newlines=False,
        allow_jagged_rows=False,
        ignore_unknown_values=False,
        max_bad_records=0,
        labels=dict(bq.JOB_LABELS),
    )


def _wait(job: Any, settings: Settings, url: str | None = None) -> None:
    """Wait for a load job; ``LoadFailed`` with BigQuery's first error (prefixed by ``url`` when given)."""
    from google.api_core.exceptions import GoogleAPICallError

    try:
        job.result(timeout=settings.bq_job_timeout_seconds)
    except GoogleAPICallError as exc:
        errors = getattr(job, "errors", None) or getattr(exc, "errors", None) or []
        message = next((e.get("message") for e in errors if e.get("message")), None) or str(exc)
        reason = message.splitlines()[0]
        raise LoadFailed(f"{url}: {reason}" if url else reason) from exc


def load_csv(
    client: Any, settings: Settings, urls: Sequence[str], table: str, columns: Sequence[str]
) -> None:
    """Replace ``table`` with the rows of the headerless CSV files at ``urls`` (all STRING ``columns``).

    Raises ``LoadFailed`` when BigQuery rejects a file (wrong column count, stray quote, bad encoding...).
    """
    if not urls:
        raise ValueError(f"no files to load into {table}")
    if loads_from_uris(settings, urls):
        for start in range(0, len(urls), MAX_URIS_PER_JOB):
            batch = [url.replace("gcs://", "gs://", 1) for url in urls[start : start + MAX_URIS_PER_JOB]]
            config = _config(columns, first=start == 0, header=False)
            _wait(client.load_table_from_uri(batch, table, job_config=config, timeout=60), settings)
        return
    for i, url in enumerate(urls):
        data = storage.read_bytes(url, settings)
        # The file's own line ending: bqemulator's CSV sniffer rejects a file whose lines end differently.
        newline = b"\r\n" if data.split(b"\n", 1)[0].endswith(b"\r") else b"\n"
        payload = ",".join(columns).encode() + newline + data
        config = _config(columns, first=i == 0, header=True)
        job = client.load_table_from_file(
            io.BytesIO(payload), table, job_config=config, size=len(payload), timeout=60
        )
        _wait(job, settings, url if len(urls) > 1 else None)
