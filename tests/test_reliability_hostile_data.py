"""Non-finite sales and truncated files through the real ingest and features flows (issue 9, items 6 and 9).

Two ways in for each fault: a new delivery (ingest now quarantines the file, naming the line) and a raw bucket
filled by an earlier release that accepted the file (the features run must still end cleanly: the values are
counted and set aside, or the run fails once, naming the file, instead of three polars tracebacks).
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import polars as pl
import pytest

from features import ingest, processed, storage
from features.dataset import read_features
from features.feature_store import get_feature_store
from features.raw_layout import ERP_ROOT, TEINVENTO_ROOT
from features.results import Quarantined
from tests.fixtures.data import task_runs


def _sur(root: Path) -> Path:
    return next((root / ERP_ROOT).rglob("ventas_mensuales_Sur.csv"))


def _fact_part(root: Path) -> Path:
    return sorted((root / TEINVENTO_ROOT).rglob("fact_table/part-*.csv"))[0]


def _with_sales(data: bytes, values: dict[int, str]) -> bytes:
    """ERP file bytes with the sales of the given (1-based) lines replaced."""
    lines = data.decode().splitlines(keepends=True)
    for lineno, value in values.items():
        lines[lineno - 1] = lines[lineno - 1].rsplit(",", 1)[0] + f",{value}\n"
    return "".join(lines).encode()


def _cut_inside_last_field(data: bytes) -> tuple[bytes, str]:
    """The file cut 6 characters into the last field of its last line, and that 6-character stub."""
    data = data.rstrip(b"\n")
    start = data.rfind(b",") + 1
    return data[: start + 6], data[start : start + 6].decode()


def _accepted_by_an_older_release(raw: Path, path: Path, data: bytes) -> str:
    """Replace an ingested file of the raw bucket and its manifest entry, as an older ingest would have."""
    rel = path.relative_to(raw).as_posix()
    source = "erp" if rel.startswith(ERP_ROOT) else "teinvento"
    delivery = rel.split("/")[3]
    manifest = ingest.load_manifest(str(raw), source, delivery)
    entry = manifest.files[rel]
    digest = hashlib.sha256(data).hexdigest()
    manifest.files[rel] = dataclasses.replace(entry, sha256=digest, size=len(data))
    path.write_bytes(data)
    storage.write_bytes_atomic(ingest.manifest_url(str(raw), source, delivery), manifest.to_json())
    return rel


@pytest.fixture
def delivery(sample_delivery: Path, own_buckets: Path) -> Path:
    """A private copy of the generated delivery."""
    return Path(shutil.copytree(sample_delivery, own_buckets / "delivery"))


def test_non_finite_sales_in_a_delivery_are_quarantined_and_named_by_the_run(
    delivery: Path, own_buckets: Path, prefect_harness
):
    from flows.features import features_flow
    from flows.ingest import ingest_flow

    sur = _sur(delivery)
    sur.write_bytes(_with_sales(sur.read_bytes(), {7: "NaN", 9: "1e400"}))
    report = ingest_flow(source=str(delivery))
    reason = "line 7: sales='NaN' is not a finite number within ±1e12 (2 such rows)"
    assert report.quarantined == [Quarantined(sur.relative_to(delivery).as_posix(), reason)]

    state = features_flow(return_state=True)  # the region is missing now: refused once, with the reason
    assert state.is_failed() and f"csv/Sur/ventas_mensuales_Sur.csv quarantined: {reason}" in state.message
    assert {name: [r.run_count for r in runs] for name, runs in task_runs(state).items()} == {
        "resolve-inputs": [1],
        "check-completeness": [1],
    }
    result = features_flow(allow_incomplete=True)
    features = read_features(result.data_version)
    assert features.height and features.filter(~pl.col("total_sales").is_finite()).height == 0


def test_non_finite_sales_accepted_by_an_older_release_are_counted_and_the_run_completes(
    delivery: Path, own_buckets: Path, prefect_harness
):
    from flows.features import features_flow
    from flows.ingest import ingest_flow

    ingest_flow(source=str(delivery))
    raw_sur = _sur(own_buckets / "raw")
    values = {3: "NaN", 5: "nan", 7: "inf", 9: "-inf", 11: "1e400", 13: "5e12", 14: "5e12"}
    _accepted_by_an_older_release(own_buckets / "raw", raw_sur, _with_sales(raw_sur.read_bytes(), values))

    state = features_flow(return_state=True)  # failed 3 times with a polars cast error before
    assert state.is_completed(), state.message
    version = state.result().data_version
    assert processed.read_quality_report(version)["rules"]["erp.sales_out_of_range"] == len(values)
    totals = read_features(version)["total_sales"]
    assert totals.is_finite().all() and totals.abs().max() < 1e12  # no -8.45e12, no inf


def test_a_fact_file_cut_inside_its_product_id_never_makes_a_servable_product(
    delivery: Path, own_buckets: Path, prefect_harness
):
    from flows.features import features_flow
    from flows.ingest import ingest_flow

    part = _fact_part(delivery)
    cut, stub = _cut_inside_last_field(part.read_bytes())
    part.write_bytes(cut)
    report = ingest_flow(source=str(delivery))
    assert [q.relpath for q in report.quarantined] == [part.relative_to(delivery).as_posix()]
    assert "the file looks truncated" in report.quarantined[0].reason

    features_flow(allow_incomplete=True)  # published without the cut part, knowingly
    assert stub not in get_feature_store().latest_rows()  # the bogus id was servable before


def test_a_cut_file_accepted_by_an_older_release_fails_the_run_once_naming_it(
    delivery: Path, own_buckets: Path, prefect_harness
):
    from flows.features import features_flow
    from flows.ingest import ingest_flow

    ingest_flow(source=str(delivery))
    raw_part = _fact_part(own_buckets / "raw")
    cut, stub = _cut_inside_last_field(raw_part.read_bytes())
    rel = _accepted_by_an_older_release(own_buckets / "raw", raw_part, cut)

    state = features_flow(return_state=True)
    assert state.is_failed() and not (own_buckets / "processed").exists()
    assert f"{rel} (in the raw bucket) no longer validates" in state.message
    assert f"id_product={stub!r} occurs on no other row" in state.message
    assert task_runs(state)["build-and-publish-version"][0].run_count == 1  # a data error: not retried
