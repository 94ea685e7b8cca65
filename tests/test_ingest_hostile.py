"""Hostile and damaged deliveries at ingest (issue 9, items 5, 6, 7 and 9): crafted files, real symlinks, FIFOs.

Each test copies the session's generated delivery, plants one kind of fault in it and runs the real ingest:
the fault is quarantined with a reason that says where, the rest of the delivery is ingested, the manifests
account for every data file, and nothing from outside the delivery (or more than a bounded, escaped prefix of
a delivery file) reaches the raw bucket, the reasons, the manifests or the logs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from features import ingest
from features.raw_csv import QUOTE_LIMIT
from features.raw_layout import ERP_ROOT, TEINVENTO_ROOT, classify, source_root
from features.results import IngestResult

CANARY = "CANARY-7f3a9c: secret outside the delivery"


@pytest.fixture
def delivery(sample_delivery: Path, tmp_path: Path) -> Path:
    """A private copy of the generated delivery (both sources, every region and table)."""
    return Path(shutil.copytree(sample_delivery, tmp_path / "delivery"))


def _erp(delivery: Path, region: str) -> Path:
    return next((delivery / ERP_ROOT).rglob(f"ventas_mensuales_{region}.csv"))


def _facts(delivery: Path) -> list[Path]:
    return sorted((delivery / TEINVENTO_ROOT).rglob("fact_table/part-*.csv"))


def _rel(delivery: Path, path: Path) -> str:
    return path.relative_to(delivery).as_posix()


def _set_field(path: Path, line: int, field: int, value: str) -> None:
    """Replace one field of one line (1-based line number) of a CSV file without quotes."""
    lines = path.read_text("utf-8").splitlines(keepends=True)
    fields = lines[line - 1].rstrip("\n").split(",")
    fields[field] = value
    lines[line - 1] = ",".join(fields) + "\n"
    path.write_text("".join(lines), "utf-8")


def _ingest(delivery: Path, tmp_path: Path) -> ingest.IngestReport:
    return ingest.ingest_delivery(str(delivery), str(tmp_path / "raw"))


def _regular_data_files(delivery: Path) -> set[str]:
    return {
        _rel(delivery, p)
        for p in delivery.rglob("*")
        if p.is_file() and not p.is_symlink() and classify(_rel(delivery, p))
    }


def _everything_written(tmp_path: Path) -> bytes:
    raw = tmp_path / "raw"
    return b"\n".join(p.read_bytes() for p in sorted(raw.rglob("*")) if p.is_file())


# --- item 5: values whose netted total overflowed int64 ---------------------------------------------------


def test_fragments_beyond_the_sales_bound_are_quarantined_with_the_line(delivery: Path, tmp_path: Path):
    norte = _erp(delivery, "Norte")
    _set_field(norte, 3, 8, "5e12")  # two fragments of 5e12 netted to -8.45e12 in int64 micro-units
    _set_field(norte, 4, 8, "5e12")
    report = _ingest(delivery, tmp_path)
    assert dict(report.quarantined) == {
        _rel(delivery, norte): "line 3: sales='5e12' is not a finite number within ±1e12 (2 such rows)"
    }
    assert set(report.copied) == _regular_data_files(delivery) - {_rel(delivery, norte)}


# --- item 6: non-finite sales ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["NaN", "nan", "inf", "-inf", "1e400", "Infinity"])
@pytest.mark.parametrize("table", ["erp", "teinvento"])
def test_non_finite_sales_quarantine_the_file_with_the_line(
    delivery: Path, tmp_path: Path, value: str, table: str
):
    bad = _erp(delivery, "Sur") if table == "erp" else _facts(delivery)[1]
    _set_field(bad, 7, 8 if table == "erp" else 2, value)
    report = _ingest(delivery, tmp_path)
    reason = f"line 7: sales={value!r} is not a finite number within ±1e12 (1 such rows)"
    assert report.quarantined == [(_rel(delivery, bad), reason)]
    assert set(report.copied) == _regular_data_files(delivery) - {_rel(delivery, bad)}


# --- item 7: symbolic links and other entries that are not regular files ------------------------------------


def test_links_are_never_followed_and_never_stop_the_others(
    delivery: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    outside = tmp_path / "outside"
    (outside / "Sur").mkdir(parents=True)
    secret = outside / "secret.csv"
    secret.write_text(f"{CANARY}\n")
    elsewhere_csv = outside / "ventas_mensuales_Norte.csv"  # valid ERP data, but not part of the delivery
    shutil.copy(_erp(delivery, "Norte"), elsewhere_csv)
    _set_field(elsewhere_csv, 1, 7, "LINKED-999")
    shutil.copy(_erp(delivery, "Sur"), outside / "Sur" / "ventas_mensuales_Sur.csv")

    facts = _facts(delivery)[0].parent
    planted = {
        facts / "part-00090-dir-link-c000.csv": outside,  # a directory: IsADirectoryError stopped the ingest
        facts / "part-00091-secret-c000.csv": secret,
        facts / "part-00092-passwd-c000.csv": Path("/etc/passwd"),
        facts / "part-00093-inside-c000.csv": _facts(delivery)[1],  # even a link inside the delivery
    }
    norte, sur_folder = _erp(delivery, "Norte"), _erp(delivery, "Sur").parent
    norte.unlink()
    planted[norte] = elsewhere_csv
    shutil.rmtree(sur_folder)
    sur_folder.symlink_to(outside / "Sur", target_is_directory=True)  # a region folder that is a link
    for link, target in planted.items():
        link.symlink_to(target)
    fifo = facts / "part-00094-fifo-c000.csv"
    os.mkfifo(fifo)  # reading it would block the ingest forever

    caplog.set_level(logging.DEBUG)
    report = _ingest(delivery, tmp_path)

    rejected = {_rel(delivery, p): "the file is a symbolic link: not followed" for p in planted}
    rejected[_rel(delivery, fifo)] = "not a regular file (a FIFO): not read"
    assert dict(report.quarantined) == rejected
    assert set(report.copied) == _regular_data_files(delivery)  # every other file, despite the bad entries
    assert _rel(delivery, sur_folder) in report.skipped_unknown  # the linked folder: listed, not entered
    for source, delivery_date in (d.split("/") for d in report.deliveries):  # manifests account for all
        manifest = ingest.load_manifest(str(tmp_path / "raw"), source, delivery_date)
        mine = {r for r in rejected if r.startswith(source_root(source))}
        assert set(manifest.quarantined) == mine
        assert all(manifest.quarantined[r].sha256 is None for r in mine)  # nothing was read
    quarantine = tmp_path / "raw" / ingest.QUARANTINE
    assert sorted(p.name for p in quarantine.rglob("*") if p.is_file()) == sorted(
        f"{Path(r).name}.reason.json" for r in rejected
    )  # reason notes only: no copy of any link's target
    written = (
        _everything_written(tmp_path)
        + json.dumps(IngestResult.of(report).to_dict()).encode()
        + caplog.text.encode()
    )
    for leaked in (CANARY, "root:x:0:0", "LINKED-999", str(outside)):
        assert leaked.encode() not in written, leaked


# --- item 7: reasons quote a bounded, escaped prefix of delivery files, never more ---------------------------


@pytest.mark.parametrize("field", [0, 8], ids=["integer-column", "number-column"])
def test_reasons_quote_a_bounded_escaped_prefix(delivery: Path, tmp_path: Path, field: int):
    sur = _erp(delivery, "Sur")
    _set_field(sur, 2, field, "\x1b[2J\x07" + "A" * 100_000)  # terminal escapes and 100 KB in one field
    (reason,) = (r for _, r in _ingest(delivery, tmp_path).quarantined)
    assert reason.startswith("line 2: ")
    assert len(reason) < 2 * QUOTE_LIMIT + 100 and "\x1b" not in reason and "\x07" not in reason
    assert "\\x1b[2J\\x07AAA" in reason  # escaped, and cut (marked with …)


# --- item 9: a file cut inside its last field ---------------------------------------------------------------


def _cut_inside_last_field(path: Path, keep: int) -> str:
    """Cut the file inside the last field of its last line, keeping ``keep`` characters; returns the stub."""
    data = path.read_bytes().rstrip(b"\n")
    start = data.rfind(b",") + 1
    path.write_bytes(data[: start + keep])
    return data[start : start + keep].decode()


def test_a_fact_file_cut_inside_its_product_id_is_quarantined(delivery: Path, tmp_path: Path):
    part = _facts(delivery)[2]
    stub = _cut_inside_last_field(part, 6)  # a shorter id: it became a new, servable product
    lines = part.read_text().count("\n") + 1
    report = _ingest(delivery, tmp_path)
    assert report.quarantined == [
        (
            _rel(delivery, part),
            f"line {lines}: last line without a line break and its id_product={stub!r} occurs on no other"
            " row: the file looks truncated",
        )
    ]


@pytest.mark.parametrize(("sales", "why"), [("1.2345E", "is not a finite number"), ("", "is empty")])
def test_an_erp_file_cut_inside_its_sales_is_quarantined(
    delivery: Path, tmp_path: Path, sales: str, why: str
):
    centro = _erp(delivery, "Centro")
    data = centro.read_bytes().rstrip(b"\n")
    centro.write_bytes(data[: data.rfind(b",") + 1] + sales.encode())
    ((rel, reason),) = _ingest(delivery, tmp_path).quarantined
    assert rel == _rel(delivery, centro) and why in reason and reason.startswith("line ")


def test_a_complete_last_line_without_a_line_break_is_accepted(delivery: Path, tmp_path: Path):
    for path in (_facts(delivery)[2], _erp(delivery, "Centro")):
        path.write_bytes(path.read_bytes().rstrip(b"\n"))
    report = _ingest(delivery, tmp_path)
    assert report.quarantined == [] and set(report.copied) == _regular_data_files(delivery)
