"""The completeness rules on hand-made manifests (the flows that apply them: test_reliability_incomplete.py)."""

from __future__ import annotations

import pytest

from features.completeness import MAX_LISTED, delivery_problems, describe
from features.manifests import FileEntry, Manifest, QuarantineEntry
from features.raw_layout import ERP_REGION_FOLDERS, ERP_ROOT, TEINVENTO_ROOT


def erp(
    delivery: str, rows: dict[str, int], quarantined: tuple[str, ...] = (), counted: bool = True
) -> Manifest:
    """An ERP manifest with one file per region in ``rows`` (10 bytes a row; row counts recorded if
    ``counted``, as a manifest written before rows were recorded has them not)."""
    path = f"{ERP_ROOT}/{delivery}/csv/{{0}}/ventas_mensuales_{{0}}.csv"
    files = {
        path.format(r): FileEntry("0" * 64, 10 * n, "erp_sales", n if counted else None)
        for r, n in rows.items()
    }
    bad = {
        path.format(r): QuarantineEntry(None, "the file is a symbolic link: not followed")
        for r in quarantined
    }
    return Manifest("erp", delivery, files, bad)


ALL = dict.fromkeys(ERP_REGION_FOLDERS, 1000)


def test_a_complete_delivery_has_no_problems_with_or_without_a_previous_one():
    assert delivery_problems(erp("20250214", ALL), None, 0.9) == []
    assert delivery_problems(erp("20250314", ALL | {"Sur": 950}), erp("20250214", ALL), 0.9) == []


def test_missing_regions_and_quarantined_files_are_named_from_the_delivery_folder_down():
    manifest = erp("20250214", {"Centro": 10, "Norte": 10}, quarantined=("Sur",))
    assert delivery_problems(manifest, None, 0.9) == [
        "ERP region E._Privados missing: no valid file",
        "ERP region Sur missing: no valid file (1 quarantined)",
        "csv/Sur/ventas_mensuales_Sur.csv quarantined: the file is a symbolic link: not followed",
    ]


def test_a_teinvento_table_missing_is_named():
    part = f"{TEINVENTO_ROOT}/20240220/{{}}/part-00000-x-c000.csv"
    files = {part.format(t): FileEntry("0" * 64, 10, k, 1) for t, k in [("fact_table", "tei_fact")]}
    assert delivery_problems(Manifest("teinvento", "20240220", files), None, 0.9) == [
        "TeInvento table product_dim missing: no valid file",
        "TeInvento table region_dim missing: no valid file",
    ]


@pytest.mark.parametrize(
    ("counted", "expected"),
    [
        (True, "ERP region Norte: 400 rows, 40% of the 1,000 in delivery 20250214 (minimum 90%)"),
        (False, "ERP region Norte: 4,000 bytes, 40% of the 10,000 in delivery 20250214 (minimum 90%)"),
    ],
)
def test_a_region_below_the_share_of_the_previous_delivery_is_named(counted: bool, expected: str):
    """Row counts when both manifests have them; sizes for manifests written before rows were recorded."""
    shrunk, previous = erp("20250314", ALL | {"Norte": 400}), erp("20250214", ALL, counted=counted)
    assert delivery_problems(shrunk, previous, 0.9) == [expected]
    assert delivery_problems(shrunk, previous, 0.0) == []  # 0 disables the comparison


def test_describe_names_each_problem_with_its_delivery_and_stays_bounded():
    problems = {"erp": [f"problem {i}" for i in range(MAX_LISTED + 5)], "teinvento": []}
    message = describe(problems, {"erp": "20250314", "teinvento": "20240220"})
    assert message.startswith("incomplete delivery: erp 20250314: problem 0; erp 20250314: problem 1")
    assert message.endswith("and 5 more (see the ingest report)")
