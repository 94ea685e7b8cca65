"""Manifests: what the raw bucket holds for each (source, delivery), at ``<raw>/_manifests/<source>/<date>.json``.

A manifest lists the delivery's valid files (content hash, size, kind, rows) and its rejected ones (with the
reason), keyed by relpath. It is written once per ingest of the delivery, after every file was handled, so it
always accounts for the whole delivery as ingest saw it.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import asdict, dataclass, field

from features import storage
from features.raw_layout import TableKind
from features.settings import Settings

MANIFESTS = "_manifests"


@dataclass(frozen=True)
class FileEntry:
    """A valid raw file of a delivery; ``rows`` is None in manifests written before rows were recorded.

    Its content is identified by the SHA-256 ingest computed from its bytes, or — when the file was copied
    server-side between buckets, without reading it — by the object's stored hash (``checksum``:
    ``md5:<hex>``, or ``crc32c:<hex>`` for composite objects, which have no MD5).
    """

    sha256: str | None
    size: int
    kind: TableKind
    rows: int | None = None
    checksum: str | None = None

    @property
    def content_id(self) -> str | None:
        """What identifies the content: the SHA-256 or the stored checksum."""
        return self.sha256 or self.checksum


@dataclass(frozen=True)
class QuarantineEntry:
    """A rejected raw file of a delivery: its content hash (None when it was not read) and why."""

    sha256: str | None
    reason: str
    checksum: str | None = None

    @property
    def content_id(self) -> str | None:
        """What identifies the content: the SHA-256 or the stored checksum (see ``FileEntry``)."""
        return self.sha256 or self.checksum


def _entry_json(entry: FileEntry | QuarantineEntry) -> dict:
    """An entry as JSON; ``checksum`` only when set, so manifests of local ingests keep their bytes."""
    out = asdict(entry)
    if out.get("checksum") is None:
        out.pop("checksum", None)
    return out


@dataclass
class Manifest:
    """What the raw bucket holds for one (source, delivery); ``files`` and ``quarantined`` keyed by relpath."""

    source: str
    delivery: str
    files: dict[str, FileEntry] = field(default_factory=dict)
    quarantined: dict[str, QuarantineEntry] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """sha256 over the sorted (relpath, content id) of the valid files: the delivery's data version."""
        digest = hashlib.sha256()
        for relpath, entry in sorted(self.files.items()):
            digest.update(f"{relpath}\0{entry.content_id}\n".encode())
        return digest.hexdigest()

    def to_json(self) -> bytes:
        """Canonical JSON (sorted keys, no timestamps): unchanged content gives identical bytes."""
        raw = {
            "source": self.source,
            "delivery": self.delivery,
            "files": {rel: _entry_json(e) for rel, e in self.files.items()},
            "quarantined": {rel: _entry_json(e) for rel, e in self.quarantined.items()},
        }
        return (json.dumps(raw, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse a manifest written by ``to_json``."""
        raw = json.loads(data)
        files = {k: FileEntry(**v) for k, v in raw["files"].items()}
        quarantined = {k: QuarantineEntry(**v) for k, v in raw["quarantined"].items()}
        return cls(raw["source"], raw["delivery"], files, quarantined)


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
