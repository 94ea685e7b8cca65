"""From the raw bucket to a published data version: read, clean, build features, split, report.

These are the plain functions behind the features flow's tasks. A *data version* is derived from the input
deliveries' fingerprints (and ``FEATURES_VERSION``, bumped when the feature logic changes), so the same input
always yields the same version and byte-identical parquet files.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import cast

import polars as pl
import pyarrow.parquet as pq

from features import processed, storage
from features.build import build_features, densify, latest_rows, temporal_split
from features.clean import CleaningCounts, clean_erp, clean_teinvento, combine_netted, monthly_totals
from features.completeness import input_problems
from features.manifests import Manifest, latest_delivery
from features.raw_csv import RawFileError, iter_raw_csv
from features.raw_layout import TABLES, TableKind
from features.schema import FEATURE_STORE_SCHEMA, SOURCES
from features.settings import Settings, get_settings

FEATURES_VERSION = "2"
FEATURES_FILE = "features/features.parquet"


@dataclass(frozen=True)
class Inputs:
    """The deliveries a data version is built from, and what each lacks (``features.completeness``)."""

    manifests: dict[str, Manifest]
    problems: dict[str, list[str]] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """``<erp delivery>-<teinvento delivery>-<hash>``: readable and determined by the input files."""
        digest = hashlib.sha256(FEATURES_VERSION.encode())
        for source in SOURCES:
            digest.update(f"|{source}:{self.manifests[source].fingerprint()}".encode())
        dates = "-".join(self.manifests[s].delivery for s in SOURCES)
        return f"{dates}-{digest.hexdigest()[:10]}"


def resolve_inputs(settings: Settings | None = None) -> Inputs:
    """The latest ingested delivery of each source (with its completeness problems); raises if one has none."""
    settings = settings or get_settings()
    manifests = {}
    for source in SOURCES:
        manifest = latest_delivery(settings.raw_url, source, settings)
        if manifest is None:
            raise FileNotFoundError(
                f"no ingested {source} delivery under {settings.raw_url}: run the ingest flow"
            )
        manifests[source] = manifest
    return Inputs(manifests, input_problems(manifests, settings))


def iter_files(
    manifest: Manifest, settings: Settings, progress: Callable[[str], None] | None = None
) -> Iterator[tuple[TableKind, pl.DataFrame]]:
    """Each valid raw file of a delivery, parsed (all strings), streamed in chunks of a bounded size.

    Number values were validated at ingest and are not checked again here: ``features.clean`` sets aside any
    that a file ingested before that check holds. A file that fails the other checks raises ``RawFileError``
    naming it.
    """
    items = sorted(manifest.files.items())
    for i, (relpath, entry) in enumerate(items, start=1):
        spec = TABLES[entry.kind]
        url = storage.join(settings.raw_url, relpath)
        try:
            with storage.filesystem(url, settings).open(storage.fs_path(url), "rb") as handle:
                for frame in iter_raw_csv(handle, spec, check_numbers=False):
                    yield spec.kind, frame
        except RawFileError as exc:
            raise RawFileError(f"{relpath} (in the raw bucket) no longer validates: {exc.reason}") from None
        if progress and (i % 50 == 0 or i == len(items)):
            progress(f"{manifest.source}: read {i}/{len(items)} files")


def read_tables(
    manifest: Manifest, settings: Settings, progress: Callable[[str], None] | None = None
) -> dict[TableKind, pl.LazyFrame]:
    """Every valid raw file of a delivery, parsed and concatenated per table (lazily combined)."""
    frames: dict[TableKind, list[pl.DataFrame]] = {}
    for kind, frame in iter_files(manifest, settings, progress):
        frames.setdefault(kind, []).append(frame)
    empty = {kind: pl.DataFrame(schema=dict.fromkeys(TABLES[kind].columns, pl.String)) for kind in TABLES}
    return {kind: pl.concat(frames.get(kind) or [empty[kind]]).lazy() for kind in TABLES}


def clean_erp_delivery(
    manifest: Manifest,
    settings: Settings,
    counts: CleaningCounts,
    progress: Callable[[str], None] | None = None,
) -> pl.DataFrame:
    """ERP files cleaned and netted chunk by chunk (peak memory ~ one chunk, not a file or the delivery)."""
    parts = [clean_erp(frame.lazy(), counts) for _, frame in iter_files(manifest, settings, progress)]
    return combine_netted(parts, counts)


def polars_series(
    inputs: Inputs, settings: Settings, counts: CleaningCounts, progress: Callable[[str], None] | None = None
) -> pl.DataFrame:
    """Both sources' raw files read and cleaned on the worker: netted (product, category, region, month) rows."""
    tei = read_tables(inputs.manifests["teinvento"], settings, progress)
    return pl.concat(
        [
            clean_erp_delivery(inputs.manifests["erp"], settings, counts, progress),
            clean_teinvento(tei["tei_fact"], tei["tei_product"], tei["tei_region"], counts),
        ],
        how="diagonal_relaxed",
    )


def polars_monthly_totals(
    inputs: Inputs, settings: Settings, progress: Callable[[str], None] | None = None
) -> tuple[pl.DataFrame, CleaningCounts]:
    """The polars engine: national monthly totals and rule counts, computed on the worker."""
    counts = CleaningCounts()
    return monthly_totals(polars_series(inputs, settings, counts, progress), counts), counts


def engine_monthly_totals(
    inputs: Inputs, settings: Settings, progress: Callable[[str], None] | None = None
) -> tuple[pl.DataFrame, CleaningCounts]:
    """National monthly totals and rule counts from the engine ``settings.feature_engine`` names.

    The one seam between the engines: both return the table of ``features.clean.monthly_totals`` and the
    same rule counts; everything after it (densify, features, split, report) is shared.
    """
    if settings.feature_engine == "bigquery":
        from features import bq_engine  # the BigQuery client is only imported when that engine runs

        return bq_engine.monthly_totals(inputs, settings, progress)
    return polars_monthly_totals(inputs, settings, progress)


def build_dataset(
    inputs: Inputs, settings: Settings | None = None, progress: Callable[[str], None] | None = None
) -> tuple[pl.DataFrame, dict]:
    """The full feature table and the data-quality report for ``inputs``."""
    settings = settings or get_settings()
    totals, counts = engine_monthly_totals(inputs, settings, progress)
    features = build_features(densify(totals, counts))
    return features, quality_report(inputs, features, counts, settings)


def quality_report(
    inputs: Inputs, features: pl.DataFrame, counts: CleaningCounts, settings: Settings
) -> dict:
    """Deterministic data-quality summary (no timestamps: same input → same bytes)."""
    train, test = temporal_split(features, settings.test_months)
    per_source = features.group_by("source").agg(
        products=pl.col("id_product").n_unique(),
        first_month=pl.col("year_month").min().cast(pl.String),
        last_month=pl.col("year_month").max().cast(pl.String),
        unknown_key_products=pl.col("id_product").filter(pl.col("unknown_key")).n_unique(),
    )
    return {
        "version": inputs.version,
        "deliveries": {s: inputs.manifests[s].delivery for s in SOURCES},
        "files_read": {s: len(inputs.manifests[s].files) for s in SOURCES},
        "files_quarantined": [
            {"relpath": rel, "reason": q.reason}
            for s in SOURCES
            for rel, q in sorted(inputs.manifests[s].quarantined.items())
        ],
        "rules": counts.as_dict(),
        "incomplete": {s: inputs.problems.get(s, []) for s in SOURCES},
        "sources": {row.pop("source"): row for row in per_source.sort("source").to_dicts()},
        "rows": {"features": features.height, "train": train.height, "test": test.height},
        "test_months": settings.test_months,
    }


def parquet_bytes(df: pl.DataFrame) -> bytes:
    """Deterministic parquet encoding (fixed writer options, rows already sorted by the caller)."""
    buffer = io.BytesIO()
    pq.write_table(df.to_arrow(), buffer, compression="zstd", write_statistics=True)
    return buffer.getvalue()


def publish_version(features: pl.DataFrame, report: dict, settings: Settings | None = None) -> str:
    """Publish features, splits and report as one version directory (atomically); returns its URL."""
    settings = settings or get_settings()
    train, test = temporal_split(features, settings.test_months)
    files = {
        FEATURES_FILE: parquet_bytes(features),
        "train_set/part-00000.parquet": parquet_bytes(train),
        "test_set/part-00000.parquet": parquet_bytes(test),
        processed.QUALITY_REPORT: json.dumps(report, indent=2, sort_keys=True).encode(),
    }
    url = processed.version_url(report["version"], settings)
    storage.publish_files(url, files, settings)
    return url


def read_features(version: str, settings: Settings | None = None) -> pl.DataFrame:
    """The full feature table of a published version."""
    url = storage.join(processed.version_url(version, settings), FEATURES_FILE)
    frame = cast(pl.DataFrame, pl.from_arrow(pq.read_table(io.BytesIO(storage.read_bytes(url, settings)))))
    return frame.select(list(FEATURE_STORE_SCHEMA))


def set_latest(version: str, settings: Settings | None = None) -> None:
    """Point ``LATEST`` at ``version`` (after the version and the feature store were published)."""
    settings = settings or get_settings()
    storage.write_bytes_atomic(
        storage.join(settings.processed_url, processed.LATEST_POINTER), f"{version}\n".encode()
    )


__all__ = ["Inputs", "build_dataset", "latest_rows", "publish_version", "read_features", "resolve_inputs"]
