"""Incomplete deliveries are not published as the newest data version (issue 9, item 8).

The attack: an ERP delivery with 3 of its 4 regional files quarantined was published as the newest version
(ERP products 12 → 7, national totals from one region, the run Completed and the service served it). Here
the real ingest and features flows run on crafted deliveries: the features run fails naming what is missing,
the previous version, ``LATEST`` and the feature store stay exactly as they were, and only the explicit
override (``--allow-incomplete`` / ``allow_incomplete=True``) publishes such a delivery.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from features import processed
from features.completeness import IncompleteDeliveryError
from features.raw_layout import ERP_ROOT, TEINVENTO_ROOT
from features.settings import get_settings
from tests.fixtures.data import task_runs
from tests.fixtures.faults import tree_bytes

NEXT = "20250314"  # a later ERP delivery than the sample's


def _erp_delivery(delivery: Path) -> Path:
    (folder,) = (delivery / ERP_ROOT).iterdir()
    return folder


def _next_erp_delivery(delivery: Path) -> Path:
    """A later ERP delivery (a copy of the sample's, same content) in its own landing folder."""
    landing = delivery.parent / f"landing-{NEXT}"
    shutil.copytree(_erp_delivery(delivery), landing / ERP_ROOT / NEXT)
    return landing


def _outputs(root: Path) -> tuple[dict[str, bytes], bytes]:
    return tree_bytes(root / "processed"), get_settings().local_feature_store_path.read_bytes()


@pytest.fixture
def published(sample_delivery: Path, own_buckets: Path, prefect_harness) -> dict:
    """The complete sample delivery ingested and published into this test's own buckets."""
    from flows.features import features_flow
    from flows.ingest import ingest_flow

    delivery = Path(shutil.copytree(sample_delivery, own_buckets / "delivery"))
    ingest_flow(source=str(delivery))
    result = features_flow()
    assert result.incomplete == {"erp": [], "teinvento": []}
    return {"version": result.data_version, "delivery": delivery, "outputs": _outputs(own_buckets)}


def test_a_newer_delivery_with_regions_quarantined_keeps_the_previous_version(
    published: dict, own_buckets: Path
):
    from flows.features import features_flow, main
    from flows.ingest import ingest_flow

    landing = _next_erp_delivery(published["delivery"])
    for region in ("Norte", "Sur", "E._Privados"):  # three of the four regional files broken
        (landing / ERP_ROOT / NEXT / "csv" / region / f"ventas_mensuales_{region}.csv").write_text("x,y\n")
    assert len(ingest_flow(source=str(landing)).quarantined) == 3

    state = features_flow(return_state=True)
    assert state.is_failed()
    with pytest.raises(IncompleteDeliveryError) as refused:
        state.result()
    message = str(refused.value)
    for region in ("Norte", "Sur", "E._Privados"):
        assert f"erp {NEXT}: ERP region {region} missing: no valid file (1 quarantined)" in message
    assert "--allow-incomplete" in message and "previous data version stays" in message
    assert task_runs(state)["check-completeness"][0].run_count == 1  # a data error: not retried
    assert _outputs(own_buckets) == published["outputs"]  # version, LATEST and feature store untouched

    result = main(["--allow-incomplete"])  # the explicit override publishes it
    assert result.deliveries["erp"] == NEXT and result.data_version != published["version"]
    assert processed.latest_version() == result.data_version
    report = processed.read_quality_report(result.data_version)
    assert report["sources"]["erp"]["products"] < 12  # what the override knowingly publishes
    assert len(report["incomplete"]["erp"]) == 6 and report["incomplete"]["teinvento"] == []


def test_a_newer_delivery_with_far_fewer_rows_is_incomplete_by_the_configured_share(
    published: dict, own_buckets: Path, monkeypatch
):
    from flows.features import features_flow
    from flows.ingest import ingest_flow

    landing = _next_erp_delivery(published["delivery"])
    norte = landing / ERP_ROOT / NEXT / "csv" / "Norte" / "ventas_mensuales_Norte.csv"
    lines = norte.read_bytes().splitlines(keepends=True)
    norte.write_bytes(b"".join(lines[: len(lines) // 2]))  # cut at a line end: each file looks fine
    assert ingest_flow(source=str(landing)).quarantined == []

    with pytest.raises(IncompleteDeliveryError, match=r"ERP region Norte: [\d,]+ rows, 50% of the [\d,]+ in"):
        features_flow()
    assert _outputs(own_buckets) == published["outputs"]

    monkeypatch.setenv("TAMALES_MIN_ROW_SHARE", "0.4")  # the threshold is a setting
    get_settings.cache_clear()
    assert features_flow().deliveries["erp"] == NEXT


@pytest.mark.parametrize("lacking", ["region", "table"])
def test_a_first_delivery_lacking_a_region_or_a_table_is_not_published(
    sample_delivery: Path, own_buckets: Path, prefect_harness, lacking: str
):
    """No previous delivery to compare with: the layout still says what a delivery must hold."""
    from flows.features import features_flow
    from flows.ingest import ingest_flow

    delivery = Path(shutil.copytree(sample_delivery, own_buckets / "delivery"))
    if lacking == "region":
        shutil.rmtree(_erp_delivery(delivery) / "csv" / "Sur")
        expected = "ERP region Sur missing: no valid file"
    else:
        shutil.rmtree(next((delivery / TEINVENTO_ROOT).rglob("product_dim")))
        expected = "TeInvento table product_dim missing: no valid file"
    ingest_flow(source=str(delivery))

    with pytest.raises(IncompleteDeliveryError, match=expected):
        features_flow()
    assert not (own_buckets / "processed").exists()
    result = features_flow(allow_incomplete=True)
    assert processed.read_quality_report(result.data_version)["incomplete"] != {"erp": [], "teinvento": []}


def test_a_newer_delivery_without_any_valid_file_is_reported(published: dict, own_buckets: Path):
    from flows.features import features_flow
    from flows.ingest import ingest_flow

    landing = _next_erp_delivery(published["delivery"])
    for csv_file in (landing / ERP_ROOT / NEXT).rglob("ventas_mensuales_*.csv"):
        csv_file.write_text("not,a,sales,file\n")
    ingest_flow(source=str(landing))

    with pytest.raises(
        IncompleteDeliveryError, match=f"newer delivery {NEXT}: no valid file \\(4 quarantined\\)"
    ):
        features_flow()
    result = features_flow(allow_incomplete=True)  # the override keeps the newest usable delivery
    assert result.data_version == published["version"]
    assert _outputs(own_buckets)[0]["LATEST"] == published["outputs"][0]["LATEST"]


def test_the_pipeline_refuses_an_incomplete_delivery_at_its_features_step(
    sample_delivery: Path, own_buckets: Path, prefect_harness
):
    from flows.pipeline import PipelineStepError, pipeline_flow

    delivery = Path(shutil.copytree(sample_delivery, own_buckets / "delivery"))
    shutil.rmtree(_erp_delivery(delivery) / "csv" / "Centro")
    with pytest.raises(PipelineStepError) as failed:
        pipeline_flow(source=str(delivery))
    assert failed.value.step == "features" and isinstance(failed.value.__cause__, IncompleteDeliveryError)
    assert not (own_buckets / "processed").exists()
