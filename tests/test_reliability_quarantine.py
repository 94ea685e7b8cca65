"""Bad raw files in a delivery: quarantined and reported, the rest processed, nothing half-written published.

One delivery (the session's generated sample) with four kinds of damage, each in a different file: a file cut
off in the middle of a line, a file with an extra column, a dimension file re-saved as Windows-1252 (not
UTF-8) and a data file replaced by binary garbage. The real ingest and features flows run on it.
"""

from __future__ import annotations

import csv
import gzip
import json
import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from features import ingest, processed
from features.completeness import IncompleteDeliveryError
from features.dataset import read_features
from features.raw_layout import ERP_ROOT, MONTHS, TEINVENTO_ROOT
from tests.fixtures.faults import tree_bytes


def _truncate_mid_line(data: bytes) -> bytes:
    """Cut the file inside its last line, after that line's third field (a transfer that stopped early)."""
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    third_comma = start
    for _ in range(3):
        third_comma = data.index(b",", third_comma) + 1
    return data[:third_comma]


def _damage(delivery: Path) -> dict[str, str]:
    """Damage four files of ``delivery`` in place; relpath -> a word the quarantine reason must contain."""
    erp = delivery / ERP_ROOT
    tei = delivery / TEINVENTO_ROOT
    sur = next(erp.rglob("ventas_mensuales_Sur.csv"))
    norte = next(erp.rglob("ventas_mensuales_Norte.csv"))
    product_dim = sorted(tei.rglob("product_dim/part-*.csv"))[-1]
    facts = sorted(tei.rglob("fact_table/part-*.csv"))
    garbage = facts[-1]

    sur.write_bytes(_truncate_mid_line(sur.read_bytes()))
    norte.write_text("".join(f"{line},EXTRA\n" for line in norte.read_text("utf-8").splitlines()), "utf-8")
    text = product_dim.read_text("utf-8")
    assert any(ord(c) > 127 for c in text), "the sample's product names should have accents"
    product_dim.write_bytes(text.encode("cp1252"))
    garbage.write_bytes(gzip.compress(garbage.read_bytes(), mtime=0))
    rel = lambda p: p.relative_to(delivery).as_posix()  # noqa: E731
    return {rel(sur): "fields", rel(norte): "fields", rel(product_dim): "UTF-8", rel(garbage): "UTF-8"}


def test_damaged_files_are_quarantined_and_the_rest_of_the_delivery_is_processed(
    sample_delivery: Path, own_buckets: Path, prefect_harness
):
    from flows.features import features_flow
    from flows.ingest import ingest_flow

    delivery = own_buckets / "delivery"
    shutil.copytree(sample_delivery, delivery)
    damaged = _damage(delivery)
    originals = {rel: (delivery / rel).read_bytes() for rel in damaged}
    raw = own_buckets / "raw"

    report = ingest_flow(source=str(delivery))

    # Reported: every damaged file, with a reason naming the problem; nothing else quarantined.
    reasons = {q.relpath: q.reason for q in report.quarantined}
    assert set(reasons) == set(damaged)
    for rel, word in damaged.items():
        assert word in reasons[rel], (rel, reasons[rel])
        assert "line" in reasons[rel]  # says where
    # Quarantined: the exact bytes under _quarantine/ with a reason note; never at the data path.
    for rel in damaged:
        assert not (raw / rel).exists(), f"{rel} reached the raw bucket's data area"
        assert (raw / ingest.QUARANTINE / rel).read_bytes() == originals[rel]
        note = json.loads((raw / ingest.QUARANTINE / f"{rel}.reason.json").read_text())
        assert note["reason"] == reasons[rel] and note["relpath"] == rel
    # The rest: every other data file copied byte for byte; manifests say which is which.
    good = set(report.copied)
    assert good and not good & set(damaged)
    for rel in good:
        assert (raw / rel).read_bytes() == (delivery / rel).read_bytes()
    for source, delivery_date in (d.split("/") for d in report.deliveries):
        manifest = ingest.load_manifest(str(raw), source, delivery_date)
        assert set(manifest.quarantined) == {r for r in damaged if r.startswith(_root(source))}
        assert set(manifest.files) == {r for r in good if r.startswith(_root(source))}
    # No temporaries left behind by the atomic writes.
    assert not [p for p in raw.rglob("*") if ".tmp-" in p.name]

    # Two ERP regions and two TeInvento files short: the delivery is incomplete, so nothing is published
    # unless explicitly allowed; the message names every missing part.
    with pytest.raises(IncompleteDeliveryError) as refused:
        features_flow()
    for missing in ("ERP region Norte missing", "ERP region Sur missing", *(Path(r).name for r in damaged)):
        assert missing in str(refused.value)
    assert not (own_buckets / "processed").exists()
    result = features_flow(allow_incomplete=True)
    version = result.data_version
    quality = processed.read_quality_report(version)
    assert len(quality["incomplete"]["erp"]) == 4 and len(quality["incomplete"]["teinvento"]) == 2
    assert {q["relpath"]: q["reason"] for q in quality["files_quarantined"]} == reasons
    assert quality["files_read"]["erp"] == sum(r.startswith(ERP_ROOT) for r in good) == 2
    assert quality["files_read"]["teinvento"] == sum(r.startswith(TEINVENTO_ROOT) for r in good)

    # Published completely (marker, LATEST) and only from the good files: ERP totals are the plain sums of the
    # two intact region files, and every TeInvento total is the sum of the intact fact parts.
    processed_root = own_buckets / "processed"
    assert sorted(p.name for p in processed_root.iterdir()) == sorted(["LATEST", version])
    assert (processed_root / "LATEST").read_text().strip() == version
    assert sorted(tree_bytes(processed_root / version, include_hidden=True)) == [
        "_SUCCESS",
        "data_quality.json",
        "features/features.parquet",
        "test_set/part-00000.parquet",
        "train_set/part-00000.parquet",
    ]
    features = read_features(version)
    erp_sums = _sums(raw, [r for r in good if r.startswith(ERP_ROOT)], product=6, month=(0, 1), sales=8)
    tei_sums = _sums(raw, [r for r in good if "/fact_table/" in r], product=4, month=(0, 1), sales=2)
    for source, sums in (("erp", erp_sums), ("teinvento", tei_sums)):
        rows = features.filter(pl.col("source") == source, pl.col("total_sales").is_not_null())
        assert rows.height > 0
        assert {(r["id_product"], r["year_month"]) for r in rows.iter_rows(named=True)} <= set(sums)
        for row in rows.iter_rows(named=True):
            assert row["total_sales"] == pytest.approx(
                sums[(row["id_product"], row["year_month"])], rel=1e-9, abs=1e-6
            )


def _root(source: str) -> str:
    return ERP_ROOT if source == "erp" else TEINVENTO_ROOT


def _sums(
    raw: Path, relpaths: list[str], product: int, month: tuple[int, int], sales: int
) -> dict[tuple[str, date], float]:
    sums: dict[tuple[str, date], float] = {}
    for rel in relpaths:
        with open(raw / rel, newline="", encoding="utf-8") as handle:
            for row in csv.reader(handle):
                if row[sales]:
                    key = (row[product], date(int(row[month[0]]), MONTHS.index(row[month[1]]) + 1, 1))
                    sums[key] = sums.get(key, 0.0) + float(row[sales])
    return sums
