"""Ingest raw deliveries into the raw bucket: validate, copy, quarantine, and record one manifest per delivery.

A delivery tree (local folder or ``gs://`` prefix) holds files at the same relative paths they keep in the raw
bucket (see ``features.raw_layout``). Valid data files are copied verbatim; files that ``parse_raw_csv``
rejects go to ``<raw>/_quarantine/<relpath>`` with a ``<relpath>.reason.json`` next to them; one bad file
never stops the others. ``<raw>/_manifests/<source>/<YYYYMMDD>.json`` records what each (source, delivery)
holds, keyed by content hash, so re-ingesting the same files copies nothing and rewrites nothing.
Concurrent ingests of the same delivery are not supported (the last manifest write wins).
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from features import storage
from features.raw_csv import RawFileError, parse_raw_csv
from features.raw_layout import RawFile, TableKind, classify, is_not_data
from features.settings import Settings, get_settings

MANIFESTS = "_manifests"
QUARANTINE = "_quarantine"
_PROGRESS_EVERY_FILES, _PROGRESS_EVERY_SECONDS = 50, 10.0
_OUTCOMES = ("copied", "unchanged", "skipped_not_data", "skipped_unknown", "quarantined")

logger = logging.getLogger(__name__)
Log = logging.Logger | logging.LoggerAdapter


@dataclass(frozen=True)
class FileEntry:
    """A valid raw file of a delivery."""

    sha256: str
    size: int
    kind: TableKind


@dataclass(frozen=True)
class QuarantineEntry:
    """A rejected raw file of a delivery (its content hash and why it was rejected)."""

    sha256: str
    reason: str


@dataclass
class Manifest:
    """What the raw bucket holds for one (source, delivery); ``files`` and ``quarantined`` keyed by relpath."""

    source: str
    delivery: str
    files: dict[str, FileEntry] = field(default_factory=dict)
    quarantined: dict[str, QuarantineEntry] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """sha256 over the sorted (relpath, sha256) of the valid files: the delivery's data version."""
        digest = hashlib.sha256()
        for relpath, entry in sorted(self.files.items()):
            digest.update(f"{relpath}\0{entry.sha256}\n".encode())
        return digest.hexdigest()

    def to_json(self) -> bytes:
        """Canonical JSON (sorted keys, no timestamps): unchanged content gives identical bytes."""
        return (json.dumps(asdict(self), sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse a manifest written by ``to_json``."""
        raw = json.loads(data)
        files = {k: FileEntry(**v) for k, v in raw["files"].items()}
        quarantined = {k: QuarantineEntry(**v) for k, v in raw["quarantined"].items()}
        return cls(raw["source"], raw["delivery"], files, quarantined)


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

    def to_dict(self) -> dict:
        """Plain JSON-able types (``quarantined`` as ``[{"relpath", "reason"}]``, plus ``counts``)."""
        out = asdict(self)
        out["quarantined"] = [{"relpath": rel, "reason": reason} for rel, reason in self.quarantined]
        out["counts"] = self.counts()
        return out


@dataclass(frozen=True)
class SourceScan:
    """The files of a delivery tree, classified by relative path."""

    data: list[RawFile]
    not_data: list[str]
    unknown: list[str]

    def groups(self) -> dict[tuple[str, str], list[RawFile]]:
        """Data files per (source, delivery), sorted."""
        out: dict[tuple[str, str], list[RawFile]] = {}
        for raw_file in sorted(self.data, key=lambda f: f.relpath):
            out.setdefault((raw_file.source, raw_file.delivery), []).append(raw_file)
        return dict(sorted(out.items()))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_url(raw_url: str, source: str, delivery: str) -> str:
    """Where the manifest of (source, delivery) lives in the raw bucket."""
    return storage.join(raw_url, MANIFESTS, source, f"{delivery}.json")


def load_manifest(
    raw_url: str, source: str, delivery: str, settings: Settings | None = None
) -> Manifest | None:
    """The manifest of (source, delivery), or None if that delivery was never ingested."""
    url = manifest_url(raw_url, source, delivery)
    if not storage.exists(url, settings):
        return None
    return Manifest.from_json(storage.read_bytes(url, settings))


def list_deliveries(raw_url: str, source: str, settings: Settings | None = None) -> list[str]:
    """Ingested deliveries (YYYYMMDD) of ``source``, oldest first."""
    folder = storage.join(raw_url, MANIFESTS, source)
    fs = storage.filesystem(folder, settings)
    if not fs.exists(storage.fs_path(folder)):
        return []
    names = (posixpath.basename(p) for p in fs.ls(storage.fs_path(folder), detail=False))
    return sorted(n.removesuffix(".json") for n in names if n.endswith(".json") and n[:8].isdigit())


def latest_delivery(raw_url: str, source: str, settings: Settings | None = None) -> Manifest | None:
    """The manifest of the newest delivery of ``source`` that has at least one valid file, if any."""
    for delivery in reversed(list_deliveries(raw_url, source, settings)):
        manifest = load_manifest(raw_url, source, delivery, settings)
        if manifest is not None and manifest.files:
            return manifest
    return None


def scan_source(source_url: str, settings: Settings | None = None) -> SourceScan:
    """Classify every file under ``source_url`` by its path relative to it (raises if it does not exist)."""
    fs = storage.filesystem(source_url, settings)
    root = storage.fs_path(source_url).rstrip("/")
    if not fs.isdir(root):
        raise FileNotFoundError(f"delivery folder not found: {source_url}")
    data, not_data, unknown = [], [], []
    for path in sorted(fs.find(root, detail=False)):
        relpath = path[len(root) :].lstrip("/")
        if is_not_data(relpath):
            not_data.append(relpath)
        elif (raw_file := classify(relpath)) is not None:
            data.append(raw_file)
        else:
            unknown.append(relpath)
    return SourceScan(data, not_data, unknown)


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


def _quarantine(
    raw_url: str, raw_file: RawFile, data: bytes, digest: str, reason: str, settings: Settings
) -> None:
    target = storage.join(raw_url, QUARANTINE, raw_file.relpath)
    storage.write_bytes_atomic(target, data, settings)
    note = {"reason": reason, "sha256": digest, "source": raw_file.source, "delivery": raw_file.delivery}
    note |= {"relpath": raw_file.relpath, "detected_at": datetime.now(UTC).isoformat(timespec="seconds")}
    storage.write_bytes_atomic(
        f"{target}.reason.json", json.dumps(note, indent=2, sort_keys=True).encode(), settings
    )


def _ingest_group(
    source_url: str, raw_url: str, files: list[RawFile], settings: Settings, log: Log
) -> IngestReport:
    """Ingest the files of one (source, delivery) and update its manifest."""
    source, delivery = files[0].source, files[0].delivery
    report = IngestReport(deliveries=[f"{source}/{delivery}"])
    old = load_manifest(raw_url, source, delivery, settings)
    manifest = Manifest.from_json(old.to_json()) if old else Manifest(source, delivery)
    existing = _existing_sizes(raw_url, (f.relpath for f in files), settings)
    src_fs = storage.filesystem(source_url, settings)
    last_log = time.monotonic()
    try:
        for i, raw_file in enumerate(files, start=1):
            rel = raw_file.relpath
            with src_fs.open(storage.fs_path(storage.join(source_url, rel)), "rb") as handle:
                data = handle.read()
            digest = _sha256(data)
            known, rejected = manifest.files.get(rel), manifest.quarantined.get(rel)
            in_bucket = existing.get(rel) == len(data)
            if rejected and rejected.sha256 == digest:
                report.quarantined.append((rel, rejected.reason))
            elif in_bucket and known and known.sha256 == digest:
                report.unchanged.append(rel)
            elif in_bucket and _sha256(storage.read_bytes(storage.join(raw_url, rel), settings)) == digest:
                manifest.files[rel] = FileEntry(digest, len(data), raw_file.kind)  # the manifest was lost
                report.unchanged.append(rel)
            else:
                try:
                    report.rows_validated += parse_raw_csv(data, raw_file.spec).height
                except RawFileError as exc:
                    _quarantine(raw_url, raw_file, data, digest, exc.reason, settings)
                    manifest.quarantined[rel] = QuarantineEntry(digest, exc.reason)
                    report.quarantined.append((rel, exc.reason))
                    log.warning("quarantined %s: %s", rel, exc.reason)
                else:
                    storage.write_bytes_atomic(storage.join(raw_url, rel), data, settings)
                    manifest.files[rel] = FileEntry(digest, len(data), raw_file.kind)
                    manifest.quarantined.pop(rel, None)
                    report.copied.append(rel)
                    report.bytes_copied += len(data)
            if i % _PROGRESS_EVERY_FILES == 0 or time.monotonic() - last_log > _PROGRESS_EVERY_SECONDS:
                last_log = time.monotonic()
                log.info("%s/%s: %d/%d files %s", source, delivery, i, len(files), report.counts())
    finally:  # record what was done even when a later file failed (a retry then finds it unchanged)
        if old is None or manifest.to_json() != old.to_json():
            storage.write_bytes_atomic(manifest_url(raw_url, source, delivery), manifest.to_json(), settings)
    return report


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
    if scan.unknown:
        (log or logger).warning(
            "skipped %d files outside the known layout: %s", len(scan.unknown), scan.unknown[:5]
        )
    return report
