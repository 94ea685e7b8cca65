"""The gs:// code path on the storage emulator: ingest into gs://opi_raw_data, quarantine, atomic publishing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from features import ingest, storage
from tests.test_ingest import BAD, BAD_RELPATH, ERP_DATE, GOOD, NOT_DATA, TEI_DATE, UNKNOWN, write_delivery

RAW = "gs://opi_raw_data"


def bucket_files(settings, url: str = RAW) -> dict[str, bytes]:
    """Every object under ``url`` by relative key."""
    fs = storage.filesystem(url, settings)
    root = storage.fs_path(url).rstrip("/")
    return {path[len(root) + 1 :]: fs.cat_file(path) for path in sorted(fs.find(root))}


def test_ingest_into_gcs_then_reingest_copies_nothing(gcs_settings, tmp_path: Path):
    assert gcs_settings.raw_url == RAW
    source = write_delivery(tmp_path / "delivery")

    report = ingest.ingest_delivery(str(source), gcs_settings.raw_url)
    assert sorted(report.copied) == sorted(GOOD)
    assert sorted(report.skipped_not_data) == sorted(NOT_DATA)
    assert sorted(report.skipped_unknown) == sorted(UNKNOWN)
    assert [rel for rel, _ in report.quarantined] == [BAD_RELPATH]

    objects = bucket_files(gcs_settings)
    assert {rel: objects[rel] for rel in GOOD} == GOOD
    assert objects[f"_quarantine/{BAD_RELPATH}"] == BAD[BAD_RELPATH]
    note = json.loads(objects[f"_quarantine/{BAD_RELPATH}.reason.json"])
    assert note["reason"] == report.quarantined[0][1] and note["sha256"]
    expected_keys = set(GOOD) | {f"_quarantine/{BAD_RELPATH}", f"_quarantine/{BAD_RELPATH}.reason.json"}
    expected_keys |= {f"_manifests/erp/{ERP_DATE}.json", f"_manifests/teinvento/{TEI_DATE}.json"}
    assert set(objects) == expected_keys  # one copy of each file, nothing else

    latest = ingest.latest_delivery(RAW, "erp", gcs_settings)
    assert latest is not None and latest.delivery == ERP_DATE and BAD_RELPATH in latest.quarantined

    again = ingest.ingest_delivery(str(source), gcs_settings.raw_url)
    assert again.copied == [] and sorted(again.unchanged) == sorted(GOOD)
    assert [rel for rel, _ in again.quarantined] == [BAD_RELPATH]
    assert bucket_files(gcs_settings) == objects  # manifests byte-identical, nothing rewritten


def test_ingest_from_a_gcs_delivery(gcs_settings, tmp_path: Path):
    landing = "gs://opi_processed_data/landing"  # any gs:// prefix can be a delivery root
    fs = storage.filesystem(landing, gcs_settings)
    for relpath, data in {**GOOD, **NOT_DATA}.items():
        fs.pipe_file(f"{storage.fs_path(landing)}/{relpath}", data)

    report = ingest.ingest_delivery(landing, str(tmp_path / "raw"))
    assert sorted(report.copied) == sorted(GOOD)
    assert sorted(report.skipped_not_data) == sorted(NOT_DATA)
    assert report.quarantined == [] and report.skipped_unknown == []


def test_write_bytes_atomic_and_publish_files_on_gcs(gcs_settings):
    url = storage.join(gcs_settings.processed_url, "LATEST")
    storage.write_bytes_atomic(url, b"v1\n", gcs_settings)
    storage.write_bytes_atomic(url, b"v2\n", gcs_settings)
    assert storage.read_bytes(url, gcs_settings) == b"v2\n"

    version = storage.join(gcs_settings.processed_url, "v1")
    assert not storage.is_published(version, gcs_settings)
    storage.publish_files(
        version, {"train_set/part-0.parquet": b"a", "test_set/part-0.parquet": b"b"}, gcs_settings
    )
    assert storage.is_published(version, gcs_settings)
    storage.publish_files(
        version, {"train_set/part-0.parquet": b"c"}, gcs_settings
    )  # replaces, stale removed
    assert bucket_files(gcs_settings, version) == {"_SUCCESS": b"", "train_set/part-0.parquet": b"c"}


def test_missing_gcs_delivery_is_an_error(gcs_settings):
    with pytest.raises(FileNotFoundError):
        ingest.ingest_delivery("gs://opi_raw_data/no/such/delivery", gcs_settings.raw_url)
