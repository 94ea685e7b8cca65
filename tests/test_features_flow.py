"""The data plane end to end on generated deliveries: output contract, netting, idempotency, quarantine."""

from __future__ import annotations

import csv
import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from features import processed
from features.completeness import IncompleteDeliveryError
from features.dataset import read_features
from features.feature_store import get_feature_store
from features.raw_layout import ERP_ROOT, MONTHS, TEINVENTO_ROOT, classify
from features.results import FeaturesResult
from features.schema import FEATURE_STORE_SCHEMA
from features.settings import get_settings


def _raw_files(root: Path) -> list[Path]:
    return sorted(
        p for p in root.rglob("*") if p.is_file() and classify(str(p.relative_to(root))) is not None
    )


def test_splits_follow_the_data_contract(processed_version: str):
    train = processed.read_split(processed_version, "train_set")
    test = processed.read_split(processed_version, "test_set")
    for split in (train, test):
        assert dict(split.schema) == FEATURE_STORE_SCHEMA
        assert split.schema["id_product"] == pl.String and split.schema["year_month"] == pl.Date
        assert split["target"].null_count() == 0 and split.height > 0
        assert split.select(pl.col("year_month").dt.day().max()).item() == 1
    keys = ["source", "id_product", "year_month"]
    assert train.join(test, on=keys, how="inner").height == 0
    for source in ("erp", "teinvento"):
        t = test.filter(pl.col("source") == source)
        assert t["target_month"].n_unique() == get_settings().test_months
        assert train.filter(pl.col("source") == source)["target_month"].max() < t["target_month"].min()
    # Sources end in different months, so their test windows differ.
    ends = test.group_by("source").agg(pl.col("target_month").max())
    assert ends["target_month"].n_unique() == 2


def test_feature_store_holds_every_row_and_each_products_latest(processed_version: str):
    stored = get_feature_store().read_all()
    published = read_features(processed_version)
    assert stored.sort("source", "id_product", "year_month").equals(published)
    latest = get_feature_store().latest_rows()
    assert set(latest) == set(published["id_product"])
    assert "206050084" in latest and latest["206050084"]["target"] is None


def test_monthly_total_equals_the_plain_sum_of_fragments(
    processed_version: str, features_run: FeaturesResult
):
    raw = Path(get_settings().raw_url)
    delivery = features_run.deliveries["erp"]
    sums: dict[date, float] = {}
    for path in (raw / ERP_ROOT / delivery / "csv").rglob("ventas_mensuales_*.csv"):
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.reader(handle):
                if row[6] == "206050084":
                    month = date(int(row[0]), MONTHS.index(row[1]) + 1, 1)
                    sums[month] = sums.get(month, 0.0) + float(row[8])
    stored = read_features(processed_version).filter(pl.col("id_product") == "206050084")
    assert stored.height == len(sums)
    for row in stored.iter_rows(named=True):
        assert row["total_sales"] == pytest.approx(sums[row["year_month"]], rel=1e-9, abs=1e-6)


def test_teinvento_total_equals_the_plain_sum_of_its_facts(
    processed_version: str, features_run: FeaturesResult
):
    raw = Path(get_settings().raw_url) / TEINVENTO_ROOT / features_run.deliveries["teinvento"] / "fact_table"
    sums: dict[tuple[str, date], float] = {}
    for path in raw.glob("part-*.csv"):
        with open(path, newline="", encoding="utf-8") as handle:
            for year, month, sales, _region, product in csv.reader(handle):
                if sales:
                    key = (product, date(int(year), MONTHS.index(month) + 1, 1))
                    sums[key] = sums.get(key, 0.0) + float(sales)
    stored = read_features(processed_version).filter(
        pl.col("source") == "teinvento", pl.col("total_sales").is_not_null()
    )
    assert stored.height > 0
    for row in stored.iter_rows(named=True):
        assert row["total_sales"] == pytest.approx(
            sums[(row["id_product"], row["year_month"])], rel=1e-9, abs=1e-6
        )


def test_quality_report_counts_every_rule(processed_version: str):
    report = processed.read_quality_report(processed_version)
    rules = report["rules"]
    for rule in ("erp.residue_to_zero", "erp.exact_zero", "erp.returns_netted", "teinvento.missing_sales"):
        assert rules[rule] > 0, rule
    assert rules["teinvento.rows_unknown_region"] > 0 and rules["teinvento.rows_unknown_product"] > 0
    assert report["sources"]["erp"]["products"] > 5 and report["sources"]["teinvento"]["products"] > 5
    assert report["rows"]["train"] > report["rows"]["test"] > 0


def test_rerunning_both_flows_changes_nothing(sample_delivery: Path, processed_version: str, prefect_harness):
    from flows.features import features_flow
    from flows.ingest import ingest_flow

    settings = get_settings()
    version_dir = Path(processed.version_url(processed_version))
    before = {p: p.read_bytes() for p in version_dir.rglob("*.parquet")}
    raw_before = sorted(
        str(p.relative_to(settings.raw_url)) for p in Path(settings.raw_url).rglob("*") if p.is_file()
    )

    ingest_flow(source=str(sample_delivery))
    again = features_flow(force=True)  # rebuild from scratch: the bytes must still be identical

    assert again.data_version == processed_version
    assert {p: p.read_bytes() for p in version_dir.rglob("*.parquet")} == before
    raw_after = sorted(
        str(p.relative_to(settings.raw_url)) for p in Path(settings.raw_url).rglob("*") if p.is_file()
    )
    assert raw_after == raw_before
    data_copies = _raw_files(Path(settings.raw_url))
    assert len(data_copies) == len(_raw_files(sample_delivery))
    assert get_feature_store().read_all().height == read_features(processed_version).height


def test_a_malformed_file_is_quarantined_and_the_rest_processed(
    sample_delivery: Path, tmp_path: Path, monkeypatch, prefect_harness
):
    from flows.features import features_flow
    from flows.ingest import ingest_flow

    delivery = tmp_path / "delivery"
    shutil.copytree(sample_delivery, delivery)
    bad = next((delivery / ERP_ROOT).rglob("ventas_mensuales_Norte.csv"))
    bad.write_text("2024,Jan,Mexico,Regular\nnot,a,valid,row\n", encoding="utf-8")
    monkeypatch.setenv("TAMALES_RAW_URL", str(tmp_path / "raw"))
    monkeypatch.setenv("TAMALES_PROCESSED_URL", str(tmp_path / "processed"))
    monkeypatch.setenv("TAMALES_STATE_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()

    ingest_flow(source=str(delivery))
    with pytest.raises(IncompleteDeliveryError, match="ERP region Norte missing"):
        features_flow()  # a region short: not published without the override
    assert not (tmp_path / "processed").exists()
    result = features_flow(allow_incomplete=True)

    report = processed.read_quality_report(result.data_version)
    quarantined = [q["relpath"] for q in report["files_quarantined"]]
    assert quarantined == [str(bad.relative_to(delivery))]
    assert report["incomplete"]["erp"][0] == "ERP region Norte missing: no valid file (1 quarantined)"
    assert report["incomplete"]["teinvento"] == []
    assert (tmp_path / "raw" / "_quarantine" / quarantined[0]).exists()
    assert report["files_read"]["erp"] == 3
    norte = read_features(result.data_version).filter(pl.col("source") == "erp")
    assert norte.height > 0
