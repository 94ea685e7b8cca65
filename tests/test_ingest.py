"""Raw CSV validation and the ingest of a hand-made delivery (local raw bucket), plus the ingest flow."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from features import ingest
from features.raw_csv import RawFileError, parse_raw_csv
from features.raw_layout import ERP_ROOT, TABLES, TEINVENTO_ROOT

ERP_DATE, TEI_DATE = "20240915", "20230620"
ERP = f"{ERP_ROOT}/{ERP_DATE}/csv"
TEI = f"{TEINVENTO_ROOT}/{TEI_DATE}"
PART = "part-{:05d}-tid-123-b4ec1a43-6b1c-4a3a-9e37-6f7d3c5f0c88-1-c000.csv"
ERP_ROW = "2024,Jan,Mexico,Regular,Dulce,Centro,206050084,Tamal mix,1.2345E4\n"

GOOD: dict[str, bytes] = {
    f"{ERP}/Centro/ventas_mensuales_Centro.csv": (ERP_ROW + ERP_ROW.replace("Jan", "Feb")).encode(),
    f"{ERP}/E._Privados/ventas_mensuales_E._Privados.csv": ERP_ROW.replace("Centro", "E. Privados").encode(),
    f"{TEI}/fact_table/{PART.format(0)}": b'2023,Jan,1.5E3,8589934592,17179869184\n2023,Feb,"",8589934592,17179869184\n',
    f"{TEI}/fact_table/{PART.format(3)}": b"2023,Mar,2000.0,8589934592,17179869184\n",
    f"{TEI}/product_dim/{PART.format(0)}": (
        b"id_product,calorie_category,product,product_brand,producer\n"
        b'17179869184,Regular,"Tamal de Mole, 500 g","",Tamales Inc\n'
    ),
    f"{TEI}/region_dim/{PART.format(0)}": "8589934592,Mexico,Centro\n25769803776,Mexico,Baj\u00edo\n".encode(),
    f"{TEI}/region_dim/{PART.format(1)}": b"",  # an empty Spark partition is a valid, empty part
}
BAD_RELPATH = f"{ERP}/Sur/ventas_mensuales_Sur.csv"
BAD = {BAD_RELPATH: (ERP_ROW + "2024,Feb,Mexico,Regular,Dulce,Sur,206050084,1.0\n").encode()}
NOT_DATA: dict[str, bytes] = {
    f"{ERP}/E._Privados/.~lock.ventas_mensuales_E._Privados.csv#": b",ana,PC07,14.02.2025 08:41,file:///x;\n",
    **{f"{TEI}/{t}/_SUCCESS": b"" for t in ("fact_table", "product_dim", "region_dim")},
    f"{TEI}/fact_table/_started_123": b"",
    f"{TEI}/fact_table/_committed_123": json.dumps({"added": [PART.format(0)], "removed": []}).encode(),
}
UNKNOWN = {"README.txt": b"delivery notes\n", f"{ERP}/Oeste/ventas_mensuales_Oeste.csv": ERP_ROW.encode()}


def write_delivery(root: Path, files: dict[str, bytes] | None = None) -> Path:
    """Lay out ``files`` (default: good + bad + not-data + unknown files) under ``root``."""
    for relpath, data in (files if files is not None else {**GOOD, **BAD, **NOT_DATA, **UNKNOWN}).items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_bytes(data)
    return root


def all_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- parse_raw_csv ----------------------------------------------------------------------------------------


def test_parse_keeps_quoted_empty_apart_from_null_and_drops_header():
    spec = TABLES["tei_product"]
    data = b'id_product,calorie_category,product,product_brand,producer\n1,Regular,"A, 1 kg","",X\r\n2,Zero,,B,Y\n'
    df = parse_raw_csv(data, spec)
    assert df.columns == list(spec.columns)
    assert all(dtype == pl.String for dtype in df.dtypes)
    assert df.rows() == [("1", "Regular", "A, 1 kg", "", "X"), ("2", "Zero", None, "B", "Y")]


def test_parse_keeps_a_header_like_row_only_where_no_header_is_expected():
    fact = b'2023,Jan,"",5,6\n'
    assert parse_raw_csv(fact, TABLES["tei_fact"]).rows() == [("2023", "Jan", "", "5", "6")]
    with pytest.raises(RawFileError, match=r"line 1: year='year' is not an integer"):
        parse_raw_csv(b"year,month,sales,id_region,id_product\n" + fact, TABLES["tei_fact"])


def test_parse_erp_row_and_escaped_quotes():
    df = parse_raw_csv(
        ERP_ROW.encode() + b'2024,Feb,Mexico,Regular,Dulce,Sur,1,"say ""hi"", ok",0\n', TABLES["erp_sales"]
    )
    assert df.row(0) == tuple(ERP_ROW.strip().split(","))
    assert df.item(1, "product_name") == 'say "hi", ok'


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (ERP_ROW.encode() + b"2024,Feb,Mexico,Regular,Dulce,Sur,1,x\n", r"line 2: 8 fields, expected 9"),
        (ERP_ROW.encode() + ERP_ROW.replace("Tamal mix", "a,b").encode(), r"line 2: 10 fields, expected 9"),
        (ERP_ROW.encode() + b"\n" + ERP_ROW.encode(), r"line 2: 1 fields, expected 9"),
        (ERP_ROW.replace("2024", "2O24").encode(), r"line 1: year='2O24' is not an integer"),
        (ERP_ROW.replace("2024", "").encode(), r"line 1: year=None is not an integer"),
        (ERP_ROW.replace("Centro", "Centro \xe9").encode("latin-1"), r"not UTF-8: line 1"),
        (ERP_ROW.replace("Tamal mix", '"Tamal mix').encode(), r"line 1: unbalanced quote"),
        (
            ERP_ROW.encode() + ERP_ROW.replace("1.2345E4", "NaN").encode(),
            r"line 2: sales='NaN' is not a finite",
        ),
        (ERP_ROW.replace("1.2345E4", " -inf ").encode(), r"line 1: sales=' -inf ' is not a finite number"),
        (ERP_ROW.replace("1.2345E4", "1e13").encode(), r"sales='1e13' is not a finite number within ±1e12"),
        (ERP_ROW.replace("1.2345E4", "12,345").encode(), r"line 1: 10 fields"),
        (
            ERP_ROW.encode() + ERP_ROW[:-7].encode(),
            r"line 2: last line .* sales='1.' is not a complete number",
        ),
    ],
    ids=[
        "too-few-fields",
        "too-many-fields",
        "blank-line",
        "non-numeric-year",
        "missing-year",
        "latin-1",
        "quote",
        "nan-sales",
        "inf-sales",
        "sales-beyond-bound",
        "thousands-separator",
        "cut-inside-last-field",
    ],
)
def test_parse_rejects_malformed_files(data: bytes, reason: str):
    with pytest.raises(RawFileError, match=reason) as excinfo:
        parse_raw_csv(data, TABLES["erp_sales"])
    assert excinfo.value.reason == str(excinfo.value)


def test_parse_accepts_blank_padded_integers_as_the_cleaners_strip_them():
    df = parse_raw_csv(b" 2023 ,Jan,1.0,5,6\n", TABLES["tei_fact"])
    assert df.item(0, "year") == " 2023 "  # kept verbatim: typing is the cleaners' job


def test_parse_empty_file_gives_zero_rows():
    df = parse_raw_csv(b"", TABLES["tei_region"])
    assert df.shape == (0, 3)
    assert df.columns == list(TABLES["tei_region"].columns)


def test_parse_file_without_final_newline():
    assert parse_raw_csv(b"1,Mexico,Norte", TABLES["tei_region"]).rows() == [("1", "Mexico", "Norte")]
    fact = b"2023,Jan,1.5,8,17\n2023,Feb,2.5,8,17"  # a complete last record: an id seen on another row
    assert parse_raw_csv(fact, TABLES["tei_fact"]).height == 2
    with pytest.raises(RawFileError, match=r"line 2: .* id_product='1' occurs on no other row"):
        parse_raw_csv(fact[:-1], TABLES["tei_fact"])


def test_parse_can_leave_number_values_to_the_cleaners():
    df = parse_raw_csv(ERP_ROW.replace("1.2345E4", "NaN").encode(), TABLES["erp_sales"], check_numbers=False)
    assert df.item(0, "sales") == "NaN"


# --- ingest_delivery --------------------------------------------------------------------------------------


def test_ingest_copies_valid_files_and_quarantines_bad_ones(tmp_path: Path):
    source, raw = write_delivery(tmp_path / "delivery"), tmp_path / "raw"
    report = ingest.ingest_delivery(str(source), str(raw))

    assert sorted(report.copied) == sorted(GOOD)
    assert report.unchanged == []
    assert sorted(report.skipped_not_data) == sorted(NOT_DATA)
    assert sorted(report.skipped_unknown) == sorted(UNKNOWN)
    assert [rel for rel, _ in report.quarantined] == [BAD_RELPATH]
    assert "line 2: 8 fields, expected 9" in report.quarantined[0][1]
    assert report.deliveries == [f"erp/{ERP_DATE}", f"teinvento/{TEI_DATE}"]
    assert report.rows_validated == 2 + 1 + 2 + 1 + 1 + 2

    files = all_files(raw)
    assert {rel: files[rel] for rel in GOOD} == GOOD  # verbatim copies
    assert files[f"_quarantine/{BAD_RELPATH}"] == BAD[BAD_RELPATH]
    note = json.loads(files[f"_quarantine/{BAD_RELPATH}.reason.json"])
    assert note["reason"] == report.quarantined[0][1]
    assert note["delivery"] == ERP_DATE and note["detected_at"]
    assert not set(files) & (set(NOT_DATA) | set(UNKNOWN) | set(BAD))

    erp = ingest.load_manifest(str(raw), "erp", ERP_DATE)
    assert erp is not None and erp.source == "erp" and erp.delivery == ERP_DATE
    assert sorted(erp.files) == sorted(rel for rel in GOOD if rel.startswith(ERP))
    assert {entry.kind for entry in erp.files.values()} == {"erp_sales"}
    assert list(erp.quarantined) == [BAD_RELPATH]
    tei = ingest.latest_delivery(str(raw), "teinvento")
    assert tei is not None and tei.delivery == TEI_DATE
    assert tei.files[f"{TEI}/region_dim/{PART.format(1)}"].size == 0
    manifest_json = json.loads(files[f"_manifests/teinvento/{TEI_DATE}.json"])
    assert set(manifest_json) == {"source", "delivery", "files", "quarantined"}
    assert manifest_json["files"][f"{TEI}/product_dim/{PART.format(0)}"]["kind"] == "tei_product"


def test_reingest_copies_nothing_and_leaves_manifests_byte_identical(tmp_path: Path):
    source, raw = write_delivery(tmp_path / "delivery"), tmp_path / "raw"
    ingest.ingest_delivery(str(source), str(raw))
    before = all_files(raw)

    again = ingest.ingest_delivery(str(source), str(raw))
    assert again.copied == [] and again.bytes_copied == 0 and again.rows_validated == 0
    assert sorted(again.unchanged) == sorted(GOOD)
    assert [rel for rel, _ in again.quarantined] == [BAD_RELPATH]
    assert all_files(raw) == before  # same files (one copy each, no temporaries), same bytes


def test_changed_and_corrected_files_are_picked_up(tmp_path: Path):
    source, raw = write_delivery(tmp_path / "delivery"), tmp_path / "raw"
    ingest.ingest_delivery(str(source), str(raw))
    fingerprint = ingest.load_manifest(str(raw), "erp", ERP_DATE).fingerprint()

    centro = f"{ERP}/Centro/ventas_mensuales_Centro.csv"
    write_delivery(
        source, {centro: ERP_ROW.replace("1.2345E4", "1.0").encode(), BAD_RELPATH: ERP_ROW.encode()}
    )
    report = ingest.ingest_delivery(str(source), str(raw))

    assert sorted(report.copied) == sorted([centro, BAD_RELPATH]) and report.quarantined == []
    manifest = ingest.load_manifest(str(raw), "erp", ERP_DATE)
    assert manifest.quarantined == {} and BAD_RELPATH in manifest.files
    assert manifest.fingerprint() != fingerprint
    assert (raw / centro).read_bytes() == ERP_ROW.replace("1.2345E4", "1.0").encode()


def test_lost_manifest_is_rebuilt_without_copying(tmp_path: Path):
    source, raw = write_delivery(tmp_path / "delivery", GOOD), tmp_path / "raw"
    ingest.ingest_delivery(str(source), str(raw))
    manifest_path = raw / "_manifests" / "erp" / f"{ERP_DATE}.json"
    expected = manifest_path.read_bytes()
    manifest_path.unlink()

    report = ingest.ingest_delivery(str(source), str(raw))
    assert report.copied == [] and sorted(report.unchanged) == sorted(GOOD)
    assert manifest_path.read_bytes() == expected


def test_latest_delivery_skips_deliveries_without_valid_files(tmp_path: Path):
    source, raw = write_delivery(tmp_path / "delivery", GOOD), tmp_path / "raw"
    newer_bad = f"{ERP_ROOT}/20250101/csv/Norte/ventas_mensuales_Norte.csv"
    write_delivery(source, {newer_bad: b"not,a,valid,row\n"})
    report = ingest.ingest_delivery(str(source), str(raw))

    assert [rel for rel, _ in report.quarantined] == [newer_bad]
    assert ingest.list_deliveries(str(raw), "erp") == [ERP_DATE, "20250101"]
    latest = ingest.latest_delivery(str(raw), "erp")
    assert latest is not None and latest.delivery == ERP_DATE
    assert ingest.latest_delivery(str(tmp_path / "empty"), "erp") is None


def test_missing_source_folder_is_an_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="delivery folder not found"):
        ingest.ingest_delivery(str(tmp_path / "nope"), str(tmp_path / "raw"))


# --- the flow ---------------------------------------------------------------------------------------------


def test_ingest_flow_reports_and_publishes_an_artifact(tmp_path: Path, monkeypatch, prefect_harness, capsys):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows import ingest as ingest_flow_module

    raw = tmp_path / "raw"
    monkeypatch.setenv("TAMALES_RAW_URL", str(raw))
    source = write_delivery(tmp_path / "delivery")

    result = ingest_flow_module.main(["--source", str(source)])
    assert result.counts == {
        "copied": len(GOOD),
        "unchanged": 0,
        "skipped_not_data": len(NOT_DATA),
        "skipped_unknown": len(UNKNOWN),
        "quarantined": 1,
    }
    assert result.quarantined[0].relpath == BAD_RELPATH
    assert json.loads(capsys.readouterr().out)["counts"] == result.counts
    assert json.loads(json.dumps(result.to_dict())) == result.to_dict()  # plain types only
    assert set(all_files(raw)) >= set(GOOD)

    again = ingest_flow_module.ingest_flow(source=str(source))
    assert again.counts["copied"] == 0 and again.counts["unchanged"] == len(GOOD)

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["ingest-report"]))
        )
    assert artifacts and any(BAD_RELPATH in (a.data or "") for a in artifacts)
