"""Ingest from a delivery on GCS into a raw bucket on GCS: server-side copies, the objects' stored checksums,
bad files quarantined on both engines — and the bytes that cross the worker, counted by a proxy in front of
the GCS emulator (every request the worker makes goes through it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from features import bq_checks, ingest, storage
from features.settings import get_settings
from tests.fixtures import emulators, faults
from tests.test_gcs_path import bucket_files
from tests.test_ingest import (
    BAD,
    BAD_RELPATH,
    ERP,
    ERP_DATE,
    ERP_ROW,
    GOOD,
    PART,
    TEI,
    TEI_DATE,
    write_delivery,
)

RAW = "gs://opi_raw_data"
LANDING = "gs://opi_processed_data/landing"
# Bad files each check must catch, on both engines (BAD: a row with 8 fields).
TRUNCATED = f"{TEI}/fact_table/{PART.format(7)}"
MORE_BAD = {
    f"{ERP}/Norte/ventas_mensuales_Norte.csv": ERP_ROW.replace("2024", "2O24").encode(),
    f"{TEI}/fact_table/{PART.format(5)}": b"2023,Jan,NaN,8589934592,17179869184\n",
    TRUNCATED: b"2023,Jan,1.0,8589934592,17179869184\n2023,Feb,2.0,8589934592,1717986",
}
DATA = {**GOOD, **BAD, **MORE_BAD}


@pytest.fixture
def landing(monkeypatch, fault_proxy: faults.FaultProxy, gcs_emulator: str) -> faults.FaultProxy:
    """The delivery ``DATA`` under ``LANDING`` and an empty raw bucket; the worker reaches GCS through the
    proxy, whose log starts empty."""
    emulators.point_settings_at(monkeypatch, gcs=gcs_emulator)
    emulators.empty_buckets()
    fs = storage.filesystem("gs://")
    for relpath, data in DATA.items():
        fs.pipe_file(f"{storage.fs_path(LANDING)}/{relpath}", data)
    emulators.point_settings_at(monkeypatch, gcs=fault_proxy.url)
    fault_proxy.reset()
    return fault_proxy


def local_ingest(tmp_path: Path) -> ingest.IngestReport:
    """The same delivery ingested from a local folder: the reference outcome."""
    return ingest.ingest_delivery(str(write_delivery(tmp_path / "delivery", DATA)), str(tmp_path / "raw"))


def traffic(proxy: faults.FaultProxy) -> dict[str, int]:
    """What the worker moved: delivery bytes downloaded, data bytes uploaded, server-side copies."""
    seen = list(proxy.log)
    data = set(DATA.values()) - {b""}
    return {
        "downloaded": sum(s.response_bytes for s in seen if "alt=media" in s.path and "landing" in s.path),
        "data_uploads": sum(
            1 for s in seen if s.method in ("POST", "PUT") and any(d in s.body for d in data)
        ),
        "copies": sum(1 for s in seen if "/rewriteTo/" in s.path),
    }


def test_polars_engine_copies_server_side_and_validates_by_reading_once(landing, tmp_path: Path):
    report = ingest.ingest_delivery(LANDING, RAW)
    expected = local_ingest(tmp_path)

    assert sorted(report.copied) == sorted(GOOD)
    assert sorted(report.quarantined) == sorted(expected.quarantined)  # the same checks, the same reasons
    assert report.rows_validated == expected.rows_validated
    objects = bucket_files(get_settings())
    assert {rel: objects[rel] for rel in GOOD} == GOOD
    for relpath in (BAD_RELPATH, *MORE_BAD):
        assert objects[f"_quarantine/{relpath}"] == DATA[relpath]
        note = json.loads(objects[f"_quarantine/{relpath}.reason.json"])
        assert note["reason"] == dict(report.quarantined)[relpath] and note["checksum"].startswith("md5:")
    centro = f"{ERP}/Centro/ventas_mensuales_Centro.csv"
    entry = ingest.load_manifest(RAW, "erp", ERP_DATE).files[centro]
    assert entry.sha256 is None and entry.checksum == "md5:" + hashlib.md5(GOOD[centro]).hexdigest()

    moved = traffic(landing)
    assert moved == {"downloaded": sum(map(len, DATA.values())), "data_uploads": 0, "copies": len(DATA)}

    landing.reset()
    again = ingest.ingest_delivery(LANDING, RAW)
    assert again.copied == [] and sorted(again.unchanged) == sorted(GOOD)
    assert sorted(again.quarantined) == sorted(report.quarantined)
    assert traffic(landing) == {"downloaded": 0, "data_uploads": 0, "copies": 0}
    assert bucket_files(get_settings()) == objects


def test_bigquery_engine_checks_files_where_they_are(landing, bigquery_emulator, monkeypatch, tmp_path: Path):
    monkeypatch.setenv("TAMALES_FEATURE_ENGINE", "bigquery")
    monkeypatch.setenv("TAMALES_BQ_PROJECT", bigquery_emulator.project)
    monkeypatch.setenv("TAMALES_BQ_ENDPOINT", bigquery_emulator.endpoint)
    get_settings.cache_clear()
    loader_reads: list[int] = []  # bytes the emulator-only load path reads from GCS (features.bq_load)
    read_bytes = storage.read_bytes

    def spy(url: str, settings=None) -> bytes:
        data = read_bytes(url, settings)
        if url.startswith(LANDING):
            loader_reads.append(len(data))
        return data

    monkeypatch.setattr(storage, "read_bytes", spy)

    report = ingest.ingest_delivery(LANDING, RAW)
    expected = local_ingest(tmp_path)

    assert sorted(report.copied) == sorted(GOOD)
    assert report.rows_validated == expected.rows_validated
    reasons = dict(report.quarantined)
    assert sorted(reasons) == sorted(rel for rel, _ in expected.quarantined)
    assert reasons[BAD_RELPATH].startswith("rejected by a BigQuery CSV load: ")
    assert reasons[f"{ERP}/Norte/ventas_mensuales_Norte.csv"] == "year='2O24' is not an integer (1 such rows)"
    assert reasons[f"{TEI}/fact_table/{PART.format(5)}"] == (
        "sales='NaN' is not a finite number within ±1e12 (1 such rows)"
    )
    assert reasons[TRUNCATED] == (
        "last line without a line break and its id_product='1717986' occurs on no other row:"
        " the file looks truncated"
    )
    for source, delivery in (("erp", ERP_DATE), ("teinvento", TEI_DATE)):  # rows for the completeness rules
        here, there = (ingest.load_manifest(raw, source, delivery) for raw in (RAW, str(tmp_path / "raw")))
        assert {r: e.rows for r, e in here.files.items()} == {r: e.rows for r, e in there.files.items()}

    moved = traffic(landing)
    assert moved["data_uploads"] == 0 and moved["copies"] == len(DATA)
    # Besides the emulator's load path, the worker read 1 byte per file (does it end with a line break?)
    # and the tail of the one file that does not.
    assert len(loader_reads) == len(DATA)
    assert moved["downloaded"] - sum(loader_reads) <= len(DATA) + min(
        bq_checks.TAIL_BYTES, len(DATA[TRUNCATED])
    )
