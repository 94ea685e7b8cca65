"""Structure validation of raw files by BigQuery, where the files are: ingest between two buckets reads no data.

What ``features.raw_csv.parse_raw_csv`` checks on the worker, done by BigQuery for the BigQuery engine:
- one load job per file (``features.bq_load``: from its ``gs://`` URI on GCP) into
  ``<staging dataset>.chk_<source>_<delivery>_<table>_<content>``, every column a STRING, strict CSV options: a
  wrong column count, a stray quote or a quoted line break fails the job; its first error is the reason;
- one query per raw table over the delivery's check tables (``features/sql/check_<table>.sql``): integer
  columns that are not integers, sales neither missing nor a finite number within ±1e12, U+FFFD (bytes
  BigQuery could not decode as UTF-8), and the rows (the manifest's, for the completeness rules);
- a file that does not end with a line break: its last ≤ 64 KiB are read (a ranged read: the only bytes of a
  file the worker sees) and its last line checked as ``parse_raw_csv`` does; whether a last identifier
  occurs on another row is counted by the query.

Differences that come with tables: a reason names no line (a table has no row order), and a header row is
recognised wherever it is in a dimension file (the parser accepts it first only).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from features import bq, bq_load, storage
from features.raw_csv import last_field_problem, quote
from features.raw_layout import MAX_ABS_SALES, TABLES, RawFile
from features.settings import Settings

TAIL_BYTES = 64 * 1024
_EMPTY_FILE = (
    "data_rows",
    "header_rows",
    "bad_integers",
    "bad_numbers",
    "undecodable_rows",
    "last_value_rows",
)
_REASON_CHARS = 200


@dataclass(frozen=True)
class Verdict:
    """A file's check outcome: its rows when valid, else why it is not."""

    rows: int = 0
    reason: str | None = None


def _load_reason(message: str) -> str:
    """BigQuery's load error as a reason: its first line, printable, bounded (it may quote the file)."""
    line = re.sub(r"[^\x20-\x7e]", "?", message.splitlines()[0] if message else "load failed")
    return "rejected by a BigQuery CSV load: " + line[:_REASON_CHARS]


def check_table(raw_file: RawFile, content_id: str) -> str:
    """Name (without project and dataset) of a file's check table: per delivery and table, by content."""
    suffix = hashlib.sha256(content_id.encode()).hexdigest()[:20]
    return f"{_prefix(raw_file)}{suffix}"


def _prefix(raw_file: RawFile) -> str:
    return f"chk_{raw_file.source}_{raw_file.delivery}_{raw_file.kind}_"


def _last_line_value(url: str, size: int, settings: Settings) -> tuple[bool, str | None]:
    """(ends with a line break, the last field of the last line when it does not) from ranged reads."""
    fs, path = storage.filesystem(url, settings), storage.fs_path(url)
    if size == 0 or fs.cat_file(path, start=size - 1, end=size) == b"\n":
        return True, None
    tail = fs.cat_file(path, start=max(0, size - TAIL_BYTES), end=size).rsplit(b"\n", 1)[-1]
    fields = next(csv.reader(io.StringIO(tail.decode("utf-8", errors="replace"))), [None])
    return False, fields[-1] if fields else None


def _parameters(files: Sequence[str], last_values: Sequence[str]) -> list[Any]:
    from google.cloud.bigquery import ArrayQueryParameter as Array
    from google.cloud.bigquery import ScalarQueryParameter as Scalar

    return [
        Array("files", "STRING", list(files)),
        Array("last_values", "STRING", list(last_values)),
        Scalar("max_abs_sales", "FLOAT64", MAX_ABS_SALES),
        Scalar("replacement_character", "STRING", "\ufffd"),
        Scalar("product_header", "STRING", TABLES["tei_product"].header_first_column),
        Scalar("region_header", "STRING", TABLES["tei_region"].header_first_column),
    ]


def _reason(raw_file: RawFile, row: dict, last: tuple[bool, str | None]) -> str | None:
    """Why the checked file is invalid (the first failed check, as parse_raw_csv orders them) or None."""
    spec = raw_file.spec
    if row["bad_integers"] or row["header_rows"] > 1:
        n, value = (
            row["bad_integers"] or row["header_rows"] - 1,
            row["bad_integer"] or spec.header_first_column,
        )
        return f"{spec.int_columns[0]}={quote(value)} is not an integer ({n} such rows)"
    if row["bad_numbers"]:
        column = spec.number_columns[0]
        return (
            f"{column}={quote(row['bad_number'])} is not a finite number within ±1e12"
            f" ({row['bad_numbers']} such rows)"
        )
    if row["undecodable_rows"]:
        return f"not UTF-8: {row['undecodable_rows']} rows hold bytes BigQuery could not decode"
    ends_with_newline, value = last
    if not ends_with_newline and row["data_rows"]:
        return last_field_problem(spec, value, occurs_elsewhere=row["last_value_rows"] > 1)
    return None


def check_files(
    files: Sequence[RawFile], urls: dict[str, str], infos: dict[str, tuple[int, str]], settings: Settings
) -> dict[str, Verdict]:
    """Check the files of one (source, delivery) in BigQuery; ``infos``: relpath → (size, content id)."""
    client = bq.make_client(settings)
    project = settings.bq_project or client.project
    dataset = settings.bq_staging_dataset
    bq.ensure_dataset(client, project, dataset, settings, settings.bq_staging_expiration_hours)
    verdicts: dict[str, Verdict] = {}
    loaded: dict[str, dict[str, list[RawFile]]] = {}  # kind -> check-table suffix -> files (same content)
    for raw_file in files:
        name = check_table(raw_file, infos[raw_file.relpath][1])
        table = bq.table_id(project, dataset, name)
        try:
            bq_load.load_csv(client, settings, [urls[raw_file.relpath]], table, raw_file.spec.columns)
        except bq_load.LoadFailed as exc:
            verdicts[raw_file.relpath] = Verdict(reason=_load_reason(exc.reason))
            continue
        bq.extend_expiration(client, table, settings.bq_staging_expiration_hours)
        loaded.setdefault(raw_file.kind, {}).setdefault(name.removeprefix(_prefix(raw_file)), []).append(
            raw_file
        )
    for kind, by_suffix in loaded.items():
        last = {
            suffix: _last_line_value(urls[same[0].relpath], infos[same[0].relpath][0], settings)
            for suffix, same in by_suffix.items()
        }
        last_values = [f"{s}/{value}" for s, (ends, value) in last.items() if not ends and value is not None]
        sample = next(iter(by_suffix.values()))[0]
        wildcard = bq.table_id(project, dataset, _prefix(sample), wildcard=True)
        sql = bq.render(f"check_{kind}", {"files": wildcard})
        job = bq.run_query(client, sql, _parameters(list(by_suffix), last_values), settings)
        results = {row["file"]: dict(row.items()) for row in job.result()}
        for suffix, same in by_suffix.items():
            row = results.get(suffix) or dict.fromkeys(_EMPTY_FILE, 0)  # an empty file: no row at all
            for raw_file in same:
                verdicts[raw_file.relpath] = Verdict(row["data_rows"], _reason(raw_file, row, last[suffix]))
    return verdicts
