"""Ingest raw deliveries into the raw bucket: validate, copy, quarantine, and record one manifest per delivery.

A delivery tree (local folder or ``gs://`` prefix) holds files at the same relative paths they keep in the raw
bucket (see ``features.raw_layout``). Valid data files are copied verbatim; files that ``parse_raw_csv``
rejects go to ``<raw>/_quarantine/<relpath>`` with a ``<relpath>.reason.json`` next to them. Entries that are
not read at all — symbolic links (never followed), directories, FIFOs, unreadable files — get only the reason
note. One bad entry never stops the others. ``<raw>/_manifests/<source>/<YYYYMMDD>.json`` (see
``features.manifests``) records what each (source, delivery) holds, keyed by content hash, so re-ingesting the
same files copies nothing and rewrites nothing; it is written once every file of the delivery was handled, so
an interrupted ingest leaves the previous manifest, never a partial one. Concurrent ingests of the same
delivery are not supported (the last manifest write wins).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import posixpath
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from features import delivery_fs, storage
from features.manifests import (
    MANIFESTS,
    FileEntry,
    Manifest,
    QuarantineEntry,
    latest_delivery,
    list_deliveries,
    load_manifest,
    manifest_url,
)
from features.raw_csv import RawFileError, iter_raw_csv
from features.raw_layout import RawFile, classify, is_not_data
from features.settings import Settings, get_settings

QUARANTINE = "_quarantine"
_PROGRESS_EVERY_FILES, _PROGRESS_EVERY_SECONDS = 50, 10.0
_OUTCOMES = ("copied", "unchanged", "skipped_not_data", "skipped_unknown", "quarantined")

logger = logging.getLogger(__name__)
Log = logging.Logger | logging.LoggerAdapter


@dataclass
class IngestReport:
    """Outcome of one ingest run; lists hold relpaths relative to the delivery root / raw bucket."""

    copied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped_not_data: list[str] = field(default_factory=list)
    skipped_unknown: list[str] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (relpath, reason)
    deliveries: list[str] = field(default_factory=list)  # "<source>/<YYYYMMDD>" of every data file seen
    rows_validated: int = 0
    bytes_copied: int = 0

    def merge(self, other: IngestReport) -> IngestReport:
        """A new report combining both (lists sorted, deliveries deduplicated)."""
        outcomes = {name: sorted(getattr(self, name) + getattr(other, name)) for name in _OUTCOMES}
        return IngestReport(
            **outcomes,
            deliveries=sorted(set(self.deliveries + other.deliveries)),
            rows_validated=self.rows_validated + other.rows_validated,
            bytes_copied=self.bytes_copied + other.bytes_copied,
        )

    def counts(self) -> dict[str, int]:
        """Number of files per outcome."""
        return {name: len(getattr(self, name)) for name in _OUTCOMES}


@dataclass(frozen=True)
class SourceScan:
    """The files of a delivery tree, classified by relative path."""

    data: list[RawFile]
    not_data: list[str]
    unknown: list[str]
    links: list[str] = field(default_factory=list)  # symbolic links among all the above: never followed

    def groups(self) -> dict[tuple[str, str], list[RawFile]]:
        """Data files per (source, delivery), sorted."""
        out: dict[tuple[str, str], list[RawFile]] = {}
        for raw_file in sorted(self.data, key=lambda f: f.relpath):
            out.setdefault((raw_file.source, raw_file.delivery), []).append(raw_file)
        return dict(sorted(out.items()))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def scan_source(source_url: str, settings: Settings | None = None) -> SourceScan:
    """Classify every entry under ``source_url`` by its path relative to it (raises if it does not exist).

    Symbolic links are listed (and classified by their own path) but never followed.
    """
    relpaths, links = delivery_fs.list_entries(source_url, settings)
    data, not_data, unknown = [], [], []
    for relpath in relpaths:
        if is_not_data(relpath):
            not_data.append(relpath)
        elif (raw_file := classify(relpath)) is not None:
            data.append(raw_file)
        else:
            unknown.append(relpath)
    return SourceScan(data, not_data, unknown, links)


def _existing_sizes(raw_url: str, relpaths: Iterable[str], settings: Settings) -> dict[str, int]:
    """Sizes of the raw-bucket objects at ``relpaths`` (one listing of their common folder)."""
    relpaths = list(relpaths)
    if not relpaths:
        return {}
    common = posixpath.commonpath([posixpath.dirname(r) for r in relpaths])
    folder = storage.join(raw_url, common)
    fs = storage.filesystem(folder, settings)
    root = storage.fs_path(folder).rstrip("/")
    if not fs.isdir(root):
        return {}
    listing = fs.find(root, detail=True)
    return {posixpath.join(common, p[len(root) :].lstrip("/")): int(i["size"]) for p, i in listing.items()}


def write_quarantine_note(
    raw_url: str, raw_file: RawFile, entry: QuarantineEntry, content_kept: bool, settings: Settings
) -> None:
    """Write ``_quarantine/<relpath>.reason.json``: why the file was rejected."""
    target = storage.join(raw_url, QUARANTINE, raw_file.relpath)
    note = {"reason": entry.reason, "sha256": entry.sha256, "content_kept": content_kept}
    if entry.checksum:
        note["checksum"] = entry.checksum
    note |= {"source": raw_file.source, "delivery": raw_file.delivery, "relpath": raw_file.relpath}
    note["detected_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    storage.write_bytes_atomic(
        f"{target}.reason.json", json.dumps(note, indent=2, sort_keys=True).encode(), settings
    )


def _quarantine(
    raw_url: str, raw_file: RawFile, data: bytes | None, entry: QuarantineEntry, settings: Settings
) -> None:
    """Keep a rejected file's bytes (if it was read) under ``_quarantine/`` with a note saying why."""
    if data is not None:
        storage.write_bytes_atomic(storage.join(raw_url, QUARANTINE, raw_file.relpath), data, settings)
    write_quarantine_note(raw_url, raw_file, entry, data is not None, settings)


@dataclass
class DeliveryGroup:
    """The state of one (source, delivery) being ingested."""

    source_url: str
    raw_url: str
    settings: Settings
    log: Log
    manifest: Manifest
    report: IngestReport
    existing: dict[str, int]

    def reject(self, raw_file: RawFile, data: bytes | None, digest: str | None, reason: str) -> None:
        """Quarantine a file (once per content and reason) and report it."""
        entry = QuarantineEntry(digest, reason)
        if self.manifest.quarantined.get(raw_file.relpath) != entry:
            _quarantine(self.raw_url, raw_file, data, entry, self.settings)
            self.manifest.quarantined[raw_file.relpath] = entry
            self.log.warning("quarantined %s: %s", raw_file.relpath, reason)
        self.report.quarantined.append((raw_file.relpath, reason))

    def accept(self, raw_file: RawFile, data: bytes, digest: str) -> None:
        """Validate a new or changed file, then copy it (or find its copy already there) or reject it."""
        rel = raw_file.relpath
        try:
            rows = sum(frame.height for frame in iter_raw_csv(io.BytesIO(data), raw_file.spec))
        except RawFileError as exc:
            self.reject(raw_file, data, digest, exc.reason)
            return
        self.report.rows_validated += rows
        url = storage.join(self.raw_url, rel)
        if self.existing.get(rel) == len(data) and _sha256(storage.read_bytes(url, self.settings)) == digest:
            self.report.unchanged.append(
                rel
            )  # copied by an earlier, interrupted run (or the manifest was lost)
        else:
            storage.write_bytes_atomic(url, data, self.settings)
            self.report.copied.append(rel)
            self.report.bytes_copied += len(data)
        self.manifest.files[rel] = FileEntry(digest, len(data), raw_file.kind, rows)
        self.manifest.quarantined.pop(rel, None)

    def ingest(self, raw_file: RawFile) -> None:
        """Handle one data file of the delivery."""
        rel = raw_file.relpath
        try:
            data = delivery_fs.read_entry(self.source_url, rel, self.settings)
        except delivery_fs.UnreadableEntry as exc:
            self.reject(raw_file, None, None, exc.reason)
            return
        digest = _sha256(data)
        known, rejected = self.manifest.files.get(rel), self.manifest.quarantined.get(rel)
        if rejected and rejected.sha256 == digest:
            self.report.quarantined.append((rel, rejected.reason))
        elif self.existing.get(rel) == len(data) and known and known.sha256 == digest:
            self.report.unchanged.append(rel)
        else:
            self.accept(raw_file, data, digest)


def _ingest_group(
    source_url: str, raw_url: str, files: list[RawFile], settings: Settings, log: Log
) -> IngestReport:
    """Ingest the files of one (source, delivery), then write its manifest (only if it changed)."""
    source, delivery = files[0].source, files[0].delivery
    old = load_manifest(raw_url, source, delivery, settings)
    group = DeliveryGroup(
        source_url,
        raw_url,
        settings,
        log,
        Manifest.from_json(old.to_json()) if old else Manifest(source, delivery),
        IngestReport(deliveries=[f"{source}/{delivery}"]),
        _existing_sizes(raw_url, (f.relpath for f in files), settings),
    )
    if storage.is_gcs(source_url) and storage.is_gcs(raw_url):
        from features import ingest_gcs  # bucket to bucket: no byte through the worker (imports this module)

        ingest_gcs.ingest_server_side(group, files)
    else:
        last_log = time.monotonic()
        for i, raw_file in enumerate(files, start=1):
            group.ingest(raw_file)
            if i % _PROGRESS_EVERY_FILES == 0 or time.monotonic() - last_log > _PROGRESS_EVERY_SECONDS:
                last_log = time.monotonic()
                log.info("%s/%s: %d/%d files %s", source, delivery, i, len(files), group.report.counts())
    # Written only now: an ingest interrupted above leaves the previous manifest, never a partial one.
    if old is None or group.manifest.to_json() != old.to_json():
        storage.write_bytes_atomic(
            manifest_url(raw_url, source, delivery), group.manifest.to_json(), settings
        )
    return group.report


def ingest_files(
    source_url: str,
    raw_url: str,
    files: Iterable[RawFile],
    settings: Settings | None = None,
    log: Log | None = None,
) -> IngestReport:
    """Validate and copy the given data files of the tree at ``source_url``; one manifest per delivery."""
    settings = settings or get_settings()
    log = log or logger
    report = IngestReport()
    scan = SourceScan(list(files), [], [])
    for (source, delivery), group in scan.groups().items():
        log.info("ingesting %s/%s: %d data files", source, delivery, len(group))
        group_report = _ingest_group(source_url, raw_url, group, settings, log)
        log.info("%s/%s done: %s", source, delivery, group_report.counts())
        report = report.merge(group_report)
    return report


def ingest_delivery(
    source_url: str, raw_url: str, settings: Settings | None = None, log: Log | None = None
) -> IngestReport:
    """Ingest every data file of the delivery tree at ``source_url`` into ``raw_url`` (see module doc)."""
    scan = scan_source(source_url, settings)
    report = ingest_files(source_url, raw_url, scan.data, settings, log)
    report.skipped_not_data, report.skipped_unknown = scan.not_data, scan.unknown
    warn_skipped(scan, log or logger)
    return report


def warn_skipped(scan: SourceScan, log: Log) -> None:
    """Log the entries a scan set aside: outside the known layout, symbolic links (never followed)."""
    if scan.unknown:
        log.warning("skipped %d files outside the known layout: %r", len(scan.unknown), scan.unknown[:5])
    if scan.links:
        log.warning("%d symbolic links not followed: %r", len(scan.links), scan.links[:5])


__all__ = [
    "MANIFESTS",
    "QUARANTINE",
    "FileEntry",
    "IngestReport",
    "Manifest",
    "QuarantineEntry",
    "SourceScan",
    "ingest_delivery",
    "ingest_files",
    "latest_delivery",
    "list_deliveries",
    "load_manifest",
    "manifest_url",
    "scan_source",
]
