"""Ingest from a delivery on GCS into a raw bucket on GCS: copies and checksums stay server-side.

``features.ingest`` hands a (source, delivery) here when both the delivery and the raw bucket are ``gs://``
URLs. A file's content is identified by the checksum GCS stored with the object, read from one listing of
the delivery: its MD5 (``md5:<hex>``), or its CRC32C (``crc32c:<hex>``) for a composite object, which has no
MD5. Valid files are copied with the rewrite API (GCS moves the bytes; the worker sends one request per
file) and the copy must carry the source's checksum; rejected files are copied the same way under
``_quarantine/``, next to their reason note. Manifests and re-runs work as for any ingest: a file whose
checksum the manifest already holds is not copied again.

Validation, the trade-off: quarantining a malformed file means reading it somewhere.
- Feature engine ``bigquery``: BigQuery reads it (``features.bq_checks``: a load job per file from its URI,
  one query per raw table). The worker moves no data byte: metadata, plus the last ≤ 64 KiB of a file that
  does not end with a line break. Reasons name no line number.
- Feature engine ``polars``: the features flow reads every byte on the worker anyway, so ingest downloads
  each new or changed file once and validates it with ``parse_raw_csv`` (the local ingest's exact checks);
  nothing is uploaded.
"""

from __future__ import annotations

import base64
import posixpath
from collections.abc import Sequence

from features import storage
from features.ingest import DeliveryGroup, write_quarantine_note
from features.manifests import FileEntry, QuarantineEntry
from features.raw_csv import RawFileError, iter_raw_csv
from features.raw_layout import RawFile
from features.settings import Settings

Infos = dict[str, tuple[int, str]]  # relpath -> (size, content id)


def content_id(info: dict) -> str:
    """The content id of a GCS object from its metadata: ``md5:<hex>``, else ``crc32c:<hex>``."""
    for key, prefix in (("md5Hash", "md5"), ("crc32c", "crc32c")):
        if info.get(key):
            return f"{prefix}:{base64.b64decode(info[key]).hex()}"
    raise OSError(f"{info.get('name')}: GCS returned neither an MD5 nor a CRC32C")


def object_infos(url: str, relpaths: Sequence[str], settings: Settings) -> Infos:
    """Size and content id of the objects at ``url/<relpath>`` that exist (one listing of their folder)."""
    if not relpaths:
        return {}
    common = posixpath.commonpath([posixpath.dirname(r) for r in relpaths])
    folder = storage.join(url, common)
    fs, root = storage.filesystem(folder, settings), storage.fs_path(folder).rstrip("/")
    if not fs.isdir(root):
        return {}
    wanted = set(relpaths)
    out = {}
    for path, info in fs.find(root, detail=True).items():
        relpath = posixpath.join(common, path[len(root) :].lstrip("/"))
        if relpath in wanted:
            out[relpath] = (int(info["size"]), content_id(info))
    return out


def copy_object(source: str, target: str, expected: str, settings: Settings) -> None:
    """Server-side copy (GCS rewrite) of ``source`` to ``target``; raises if the copy's checksum differs."""
    fs = storage.filesystem(target, settings)
    fs.copy(storage.fs_path(source), storage.fs_path(target))
    copied = content_id(fs.info(storage.fs_path(target)))
    if copied != expected:
        raise OSError(f"copy of {source} to {target} has checksum {copied}, expected {expected}")


def _validate(
    group: DeliveryGroup, files: Sequence[RawFile], infos: Infos
) -> dict[str, tuple[int, str | None]]:
    """(rows, reason or None) per relpath, checked by the engine's reader (see the module doc)."""
    urls = {f.relpath: storage.join(group.source_url, f.relpath) for f in files}
    if group.settings.feature_engine == "bigquery":
        from features import bq_checks

        verdicts = bq_checks.check_files(files, urls, infos, group.settings)
        return {rel: (v.rows, v.reason) for rel, v in verdicts.items()}
    out: dict[str, tuple[int, str | None]] = {}
    for raw_file in files:
        url = urls[raw_file.relpath]
        try:
            with storage.filesystem(url, group.settings).open(storage.fs_path(url), "rb") as handle:
                rows = sum(frame.height for frame in iter_raw_csv(handle, raw_file.spec))
        except RawFileError as exc:
            out[raw_file.relpath] = (0, exc.reason)
        else:
            out[raw_file.relpath] = (rows, None)
    return out


def _reject(group: DeliveryGroup, raw_file: RawFile, checksum: str, reason: str) -> None:
    """Quarantine a file server-side (once per content and reason) and report it."""
    entry = QuarantineEntry(None, reason, checksum)
    rel = raw_file.relpath
    if group.manifest.quarantined.get(rel) != entry:
        source = storage.join(group.source_url, rel)
        copy_object(source, storage.join(group.raw_url, "_quarantine", rel), checksum, group.settings)
        write_quarantine_note(group.raw_url, raw_file, entry, True, group.settings)
        group.manifest.quarantined[rel] = entry
        group.log.warning("quarantined %s: %s", rel, reason)
    group.report.quarantined.append((rel, reason))


def ingest_server_side(group: DeliveryGroup, files: Sequence[RawFile]) -> None:
    """Ingest the files of one (source, delivery) from GCS to GCS (see the module doc)."""
    relpaths = [f.relpath for f in files]
    infos = object_infos(group.source_url, relpaths, group.settings)
    copies = object_infos(group.raw_url, relpaths, group.settings)
    pending = []
    for raw_file in files:
        rel = raw_file.relpath
        checksum = infos[rel][1]
        known, rejected = group.manifest.files.get(rel), group.manifest.quarantined.get(rel)
        if rejected and rejected.content_id == checksum:
            group.report.quarantined.append((rel, rejected.reason))
        elif known and known.content_id == checksum and copies.get(rel) == infos[rel]:
            group.report.unchanged.append(rel)
        else:
            pending.append(raw_file)
    group.log.info("%d new or changed files to check and copy server-side", len(pending))
    verdicts = _validate(group, pending, infos) if pending else {}
    for raw_file in pending:
        rel, (size, checksum) = raw_file.relpath, infos[raw_file.relpath]
        rows, reason = verdicts[rel]
        if reason is not None:
            _reject(group, raw_file, checksum, reason)
            continue
        group.report.rows_validated += rows
        if copies.get(rel) == (size, checksum):
            group.report.unchanged.append(rel)  # copied by an earlier, interrupted run
        else:
            target = storage.join(group.raw_url, rel)
            copy_object(storage.join(group.source_url, rel), target, checksum, group.settings)
            group.report.copied.append(rel)
            group.report.bytes_copied += size
        group.manifest.files[rel] = FileEntry(None, size, raw_file.kind, rows, checksum)
        group.manifest.quarantined.pop(rel, None)
