"""The BigQuery feature engine against bqemulator + gcp-storage-emulator: the same totals, counts and features
as the polars engine, SQL that real BigQuery parses, identifiers that cannot be injected.

Parity contract: national totals equal in integer micro-units (exact), floats within 1e-9 relative, every
rule count equal, the same data version and data-quality report.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest
import sqlglot
from polars.testing import assert_frame_equal
from sqlglot import exp

from features import bq, bq_checks, bq_engine, dataset, manifests, storage
from features.clean import CleaningCounts
from features.raw_csv import parse_raw_csv
from features.raw_layout import ERP_ROOT, TABLES, TEINVENTO_ROOT, classify
from features.settings import Settings, get_settings

REL_TOL = 1e-9
SQL_FILES = sorted(p.stem for p in bq.SQL_DIR.glob("*.sql"))


@pytest.fixture
def lake(monkeypatch, gcs_settings, bigquery_emulator) -> Settings:
    """Raw and processed buckets on the GCS emulator (empty), the engine's BigQuery on bqemulator."""
    bigquery_emulator.start()  # a test may have left it stopped
    monkeypatch.setenv("TAMALES_BQ_PROJECT", bigquery_emulator.project)
    monkeypatch.setenv("TAMALES_BQ_ENDPOINT", bigquery_emulator.endpoint)
    get_settings.cache_clear()
    return get_settings()


def with_engine(settings: Settings, engine: str) -> Settings:
    """``settings`` with the feature engine set to ``engine``."""
    return settings.model_copy(update={"feature_engine": engine})


def polars_micros(inputs: dataset.Inputs, settings: Settings) -> pl.DataFrame:
    """National totals in micro-units as the polars cleaners net them (Int128; missing if a region is)."""
    series = dataset.polars_series(inputs, settings, CleaningCounts())
    micros = pl.col("sales_micros")
    return series.group_by("source", "id_product", "year_month").agg(
        total_micros=pl.when(micros.is_null().any()).then(None).otherwise(micros.sum())
    )


def assert_engines_agree(settings: Settings) -> tuple[pl.DataFrame, dict]:
    """Both engines on the raw bucket's latest deliveries: totals, counts, features and report agree."""
    inputs = dataset.resolve_inputs(settings)
    polars_totals, polars_counts = dataset.engine_monthly_totals(inputs, with_engine(settings, "polars"))
    bq_totals, bq_counts = bq_engine.monthly_totals(
        inputs, with_engine(settings, "bigquery"), keep_micros=True
    )

    assert bq_counts.as_dict() == polars_counts.as_dict()
    keys = ["source", "id_product", "year_month"]
    exact = polars_micros(inputs, settings).sort(keys)
    assert bq_totals.select(*keys, "total_micros").equals(exact)  # bit-equal micro-units, same rows
    assert_frame_equal(bq_totals.drop("total_micros"), polars_totals, rel_tol=REL_TOL, abs_tol=0)

    polars_features, polars_report = dataset.build_dataset(inputs, with_engine(settings, "polars"))
    bq_features, bq_report = dataset.build_dataset(inputs, with_engine(settings, "bigquery"))
    assert_frame_equal(bq_features, polars_features, rel_tol=REL_TOL, abs_tol=0)
    assert bq_report == polars_report  # same data version, rules, rows, sources
    return bq_totals, bq_report


@pytest.mark.parametrize("name", SQL_FILES)
def test_every_sql_file_parses_as_bigquery_standard_sql(name: str):
    placeholders = set(bq._PLACEHOLDER.findall(bq.sql_text(name)))
    tables = {p: bq.table_id("my-project-1", "tamales_staging", f"v20250214_{p}") for p in placeholders}
    trees = sqlglot.parse(bq.render(name, tables), read="bigquery", error_level=sqlglot.ErrorLevel.RAISE)
    assert len(trees) == 1 and isinstance(trees[0], exp.Create | exp.Select)
    assert [f.name for f in trees[0].find_all(exp.Anonymous)] == []  # only functions BigQuery has
    stored = {f"{t.catalog}.{t.db}.{t.name}" for t in trees[0].find_all(exp.Table) if t.db}
    assert stored <= {t.rstrip("*") for t in tables.values()}  # every stored table is a checked one
    known = [*bq_engine.query_parameters(), *bq_checks._parameters([], [])]
    assert set(bq._PARAMETER.findall(bq.sql_text(name))) <= {p.name for p in known}
    comments = [line.split("--", 1)[1] for line in bq.sql_text(name).splitlines() if "--" in line]
    assert not [c for c in comments if "@" in c]  # bqemulator counts a parameter named in a comment


def test_identifiers_are_checked_never_escaped():
    assert (
        bq.table_id("test-project", "tamales_staging", "v1_totals")
        == "test-project.tamales_staging.v1_totals"
    )
    for project, dataset_name, table in [
        ("test-project", "tamales_staging", "x`; DROP TABLE t; --"),
        ("test-project", "tamales.staging", "t"),
        ("Test Project", "d", "t"),
        ("test-project", "", "t"),
        ("test-project", "d", "t*"),
    ]:
        with pytest.raises(bq.BigQueryIdentifierError):
            bq.table_id(project, dataset_name, table)
    with pytest.raises(KeyError, match="placeholders"):
        bq.render("monthly_totals", {"totals": "p-roject.d.t"})
    run = bq_engine.RunTables.for_version("20250214-20240220-0a1b2c3d4e", "test-project", Settings())
    assert run.run.startswith("v20250214_20240220_0a1b2c3d4e_") and len(run.run) == 38


def test_engines_agree_on_the_sample_delivery(lake: Settings, sample_delivery: Path, bigquery_emulator):
    from features.ingest import ingest_delivery

    ingest_delivery(str(sample_delivery), lake.raw_url, lake)
    totals, report = assert_engines_agree(lake)
    assert totals.height > 300 and report["rules"]["erp.residue_to_zero"] > 1000
    assert report["rules"]["product_months_partially_reported"] > 0

    # A re-run of the same version reuses the result tables: nothing is loaded or rebuilt.
    client = bq.make_client(lake)
    run = bq_engine.RunTables.for_version(report["version"], lake.bq_project, lake)
    built = {name: client.get_table(run.table(name)).modified for name in bq_engine.RESULTS}
    again, _ = bq_engine.monthly_totals(dataset.resolve_inputs(lake), lake, keep_micros=True)
    assert again.equals(totals)
    assert {name: client.get_table(run.table(name)).modified for name in bq_engine.RESULTS} == built


# An older ingest (before the sales-domain check) left values the cleaners must set aside and count; names,
# ids and months in every shape the rules handle. (Quoted "" only in sales and names: bqemulator loads a
# quoted "" as NULL, real BigQuery as an empty string, and only there do the rules treat both alike.)
_ERP = f"{ERP_ROOT}/20240915/csv"
_TEI = f"{TEINVENTO_ROOT}/20230620"
_ERP_ROW = "2024,{month},Mexico,{cat},Dulce,{zone},{code},Tamal mix,{sales}\n"
LEGACY: dict[str, str] = {
    f"{_ERP}/Centro/ventas_mensuales_Centro.csv": "".join(
        _ERP_ROW.format(month=m, cat=c, zone=z, code=p, sales=s)
        for m, c, z, p, s in [
            ("Jul", "Regular", "Centro", "P1", "100.5"),
            ("Jul", "Regular", "Centro", "P1", "NaN"),  # out of range: set aside, counted
            ("Jul", "Regular", "Centro", "P1", "-inf"),
            ("Jul", "Regular", "Centro", "P1", "5e12"),
            ("Jul", "Regular", "Centro", "P1", "12abc"),  # unparseable
            ("Jul", "Regular", "Centro", "P1", ""),  # missing
            ("Foo", "Regular", "Centro", "P1", "7"),  # invalid month
            (" Aug ", " Regular ", " Centro ", " P1 ", " 3.25 "),  # blank-padded
            ("Aug", "Regular", "Oeste", "P1", "4"),  # unknown region, kept
            ("Aug", "Regular", "", "P1", "5"),  # no region
            ("Aug", "Regular", "Centro", "", "6"),  # no product code
            ("Aug", "Low-Calorie", "Centro", "P2", "10"),  # two categories, equal sales: the smaller name
            ("Aug", "Regular", "Centro", "P2", "-10"),
            ("Aug", "Regular", "Centro", "P3", "5e-7"),  # residue
            ("Aug", "Regular", "Centro", "P3", "-0.0"),
            ("Aug", "Regular", "Centro", "P3", "4.5e-06"),  # exactly 4.5 micro-units: half to even
            ("Aug", "Regular", "Centro", "P3", "2.4999999999999998e-06"),  # exactly 2.5
            ("Aug", "Regular", "Centro", "P5", "20"),
            *[("Sep", "Regular", "Centro", "P4", "9.5e11")] * 6,  # past int64 micro-units once netted
        ]
    ),
    f"{_ERP}/Sur/ventas_mensuales_Sur.csv": "".join(
        _ERP_ROW.format(month=m, cat="Regular", zone="Sur", code=p, sales=s)
        for m, p, s in [("Aug", "P5", '""'), ("Sep", "P4", "9.5e11"), ("Sep", "P4", "9.5e11")]
        + [("Sep", "P4", "9.5e11")] * 2
    ),
    f"{_TEI}/fact_table/part-00000-x.csv": (
        '2023,Apr,100,1,10\r\n2023,Apr,"",2,10\r\n2023,Apr,5,3,10\r\n2023,Apr,7,1,99\r\n'
    ),
    f"{_TEI}/fact_table/part-00002-x.csv": "2023,May,8,4,11\n2023,May,9,1,12\n2023,Bad,1,1,10\n2023,May,-3,2,10",
    f"{_TEI}/product_dim/part-00000-x.csv": (
        "id_product,calorie_category,product,product_brand,producer\n"
        "10,Regular,Tamal A,Marca,Tamales Inc\n11,Light,Atole B,Marca,OTROS FABRICANTES\n"
    ),
    f"{_TEI}/product_dim/part-00001-x.csv": (
        '10,Regular,Tamal A,Marca,Tamales Inc\n12,Zero,"",Marca,Tamaleria Factory\n'
    ),
    f"{_TEI}/region_dim/part-00000-x.csv": 'id_region,country,region\n1,Mexico,Norte\n2,Mexico,Sur\n4,Mexico,""\n2,Mexico,Sur\n',
}


def write_legacy_bucket(settings: Settings, files: dict[str, str]) -> None:
    """Files and manifests as an ingest that did not check the sales domain yet would have left them."""
    by_delivery: dict[tuple[str, str], manifests.Manifest] = {}
    for relpath, text in files.items():
        raw_file = classify(relpath)
        assert raw_file is not None, relpath
        data = text.encode()
        storage.write_bytes_atomic(storage.join(settings.raw_url, relpath), data, settings)
        rows = parse_raw_csv(data, TABLES[raw_file.kind], check_numbers=False).height
        key = (raw_file.source, raw_file.delivery)
        manifest = by_delivery.setdefault(key, manifests.Manifest(*key))
        digest = hashlib.sha256(data).hexdigest()
        manifest.files[relpath] = manifests.FileEntry(digest, len(data), raw_file.kind, rows)
    for (source, delivery), manifest in by_delivery.items():
        url = manifests.manifest_url(settings.raw_url, source, delivery)
        storage.write_bytes_atomic(url, manifest.to_json(), settings)


def test_engines_agree_on_every_quirk_of_legacy_raw_files(lake: Settings):
    write_legacy_bucket(lake, LEGACY)
    totals, report = assert_engines_agree(lake)
    rules = report["rules"]
    assert rules["erp.sales_out_of_range"] == 3 and rules["erp.unparseable_sales"] == 1
    assert rules["erp.invalid_month"] == 1 and rules["teinvento.invalid_month"] == 1
    assert rules["erp.rows_unknown_region"] == 1 and rules["teinvento.rows_unknown_product"] == 2
    assert (
        rules["teinvento.product_dim_duplicate_keys"] == 1
        and rules["teinvento.region_dim_duplicate_keys"] == 1
    )
    assert rules["products_with_two_calorie_categories"] == 1
    micros = {(r["id_product"], r["year_month"].month): r["total_micros"] for r in totals.to_dicts()}
    assert micros[("P4", 9)] == 10 * 950_000_000_000 * 1_000_000  # beyond int64, exact
    assert micros[("P3", 8)] == 4 + 2  # 4.5 and 2.5 micro-units round half to even
    assert micros[("P5", 8)] is None  # one region did not report: no national total
    categories = dict(totals.select("id_product", "calorie_category").unique().rows())
    assert categories["P2"] == "Low-Calorie"
