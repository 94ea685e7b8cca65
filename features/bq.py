"""BigQuery plumbing shared by the feature store and the BigQuery engine: client, identifiers, SQL, jobs.

Values never enter SQL text: they are query parameters. Table names cannot be parameters, so the ``.sql``
files under ``features/sql/`` name their tables with placeholders (a backticked ``{name}``) that ``render``
replaces with identifiers from settings or code, each checked against BigQuery's naming rules first
(``table_id``): anything else raises, nothing is escaped or guessed.

Jobs run with ``client.query(...).result()`` (``jobs.insert``), never ``query_and_wait``: against bqemulator a
failing ``jobs.query`` can come back as an empty result instead of an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from features.settings import Settings

SQL_DIR = Path(__file__).with_name("sql")
JOB_LABELS = {"app": "tamales", "component": "features"}
_PROJECT = re.compile(r"(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]")  # optionally domain-scoped
_NAME = re.compile(r"[A-Za-z0-9_]{1,1024}")  # datasets; tables (this project only names them so)
_PLACEHOLDER = re.compile(r"`\{([a-z_]+)\}`")
_PARAMETER = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)")


class BigQueryIdentifierError(ValueError):
    """A project, dataset or table name that is not a plain BigQuery identifier."""


def check_name(kind: str, name: str, pattern: re.Pattern = _NAME) -> str:
    """``name`` if it is a valid BigQuery ``kind`` identifier; raises ``BigQueryIdentifierError`` otherwise."""
    if not isinstance(name, str) or not pattern.fullmatch(name):
        raise BigQueryIdentifierError(f"not a valid BigQuery {kind} name: {name!r}")
    return name


def table_id(project: str, dataset: str, table: str, *, wildcard: bool = False) -> str:
    """``project.dataset.table`` after checking each part (``wildcard``: the table is a prefix, ``*`` added)."""
    check_name("project", project, _PROJECT)
    check_name("dataset", dataset)
    check_name("table", table)
    return f"{project}.{dataset}.{table}{'*' if wildcard else ''}"


@cache
def sql_text(name: str) -> str:
    """The text of ``features/sql/<name>.sql``."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


def render(name: str, tables: Mapping[str, str]) -> str:
    """``features/sql/<name>.sql`` with each `` `{placeholder}` `` replaced by its (already checked) table id.

    Raises ``KeyError`` for a placeholder without a table and ``ValueError`` for a table the SQL never uses,
    so a renamed placeholder cannot silently read the wrong table.
    """
    text = sql_text(name)
    used = set(_PLACEHOLDER.findall(text))
    if missing := used - set(tables):
        raise KeyError(f"{name}.sql: no table for placeholders {sorted(missing)}")
    if unused := set(tables) - used:
        raise ValueError(f"{name}.sql does not use {sorted(unused)}")
    for value in tables.values():  # table ids come from ``table_id``; re-check the shape anyway
        if "`" in value or not re.fullmatch(r"[A-Za-z0-9_.:\-]+\*?", value):
            raise BigQueryIdentifierError(f"not a checked table id: {value!r}")
    return _PLACEHOLDER.sub(lambda m: f"`{tables[m.group(1)]}`", text)


@contextmanager
def reaching(what: str, error: type[Exception]) -> Iterator[None]:
    """Turn any failure to talk to BigQuery (API, auth, transport, timeout) into ``error`` naming ``what``."""
    import requests
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError

    try:
        yield
    except (GoogleAPIError, GoogleAuthError, requests.RequestException, TimeoutError, OSError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else ""
        raise error(f"BigQuery {what} failed: {type(exc).__name__}: {message}") from exc


def make_client(settings: Settings) -> Any:
    """A ``google.cloud.bigquery.Client``: the emulator endpoint (anonymous) when set, else ADC."""
    from google.cloud import bigquery

    if settings.bq_endpoint:
        # Emulator only: an endpoint override means a local stand-in, which takes no credentials.
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(
            project=settings.bq_project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": settings.bq_endpoint},
            location=settings.bq_location,
        )
    return bigquery.Client(project=settings.bq_project, location=settings.bq_location)


def ensure_dataset(
    client: Any, project: str, dataset: str, settings: Settings, expiration_hours: float | None = None
) -> None:
    """Create ``project.dataset`` if missing (with a default table expiration when given)."""
    from google.cloud import bigquery

    ds = bigquery.Dataset(f"{check_name('project', project, _PROJECT)}.{check_name('dataset', dataset)}")
    if settings.bq_location:
        ds.location = settings.bq_location
    if expiration_hours is not None:
        ds.default_table_expiration_ms = int(expiration_hours * 3_600_000)
    client.create_dataset(ds, exists_ok=True, timeout=60)


def extend_expiration(client: Any, table: str, hours: float) -> None:
    """Make ``table`` expire ``hours`` from now (a rewrite keeps the old expiration otherwise)."""
    meta = client.get_table(table)
    meta.expires = datetime.now(UTC) + timedelta(hours=hours)
    client.update_table(meta, ["expires"])


def run_query(
    client: Any,
    sql: str,
    params: Sequence[Any],
    settings: Settings,
    *,
    dry_run: bool = False,
    labels: Mapping[str, str] | None = None,
) -> Any:
    """Run one query job to completion and return it; ``dry_run`` only estimates it.

    ``params`` may hold more parameters than ``sql`` names (``@name``): only those it names are sent.
    """
    from google.cloud import bigquery

    used = set(_PARAMETER.findall(sql))
    if missing := used - {p.name for p in params}:
        raise KeyError(f"no value for query parameters {sorted(missing)}")
    config = bigquery.QueryJobConfig(
        query_parameters=[p for p in params if p.name in used],  # bqemulator rejects unused parameters
        dry_run=dry_run,
        use_query_cache=not dry_run,
        labels={**JOB_LABELS, **(labels or {})},
    )
    job = client.query(sql, job_config=config, timeout=60)
    if not dry_run:
        job.result(timeout=settings.bq_job_timeout_seconds)
    return job


def table_exists(client: Any, table: str) -> bool:
    """Whether ``table`` exists."""
    from google.api_core.exceptions import NotFound

    try:
        client.get_table(table)
    except NotFound:
        return False
    return True
