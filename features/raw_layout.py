"""The raw deliveries' layout: where each table lives, its columns, and which files are not data.

Both vendors deliver a folder tree dated by a ``YYYYMMDD`` folder; the raw bucket keeps that layout verbatim
(relative paths below are the same in a delivery folder and in the raw bucket).

ERP:        tamales_inc/ventas_mensuales_tamales_inc/mx/<YYYYMMDD>/csv/<Region>/ventas_mensuales_<Region>.csv
TeInvento:  teinvento_inc/ventas_reportadas_mercado_tamales/mx/<YYYYMMDD>/{fact_table,product_dim,region_dim}/part-*.csv
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ERP_ROOT = "tamales_inc/ventas_mensuales_tamales_inc/mx"
TEINVENTO_ROOT = "teinvento_inc/ventas_reportadas_mercado_tamales/mx"

# ERP region folder name -> the region value written inside the files.
ERP_REGION_FOLDERS = {"Centro": "Centro", "E._Privados": "E. Privados", "Norte": "Norte", "Sur": "Sur"}

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

TableKind = Literal["erp_sales", "tei_fact", "tei_product", "tei_region"]
Source = Literal["erp", "teinvento"]

# A sales value outside ±MAX_ABS_SALES units is not a sales figure (the largest product sells ~10^7.3 units a
# month); ingest rejects it. The bound also keeps each value's micro-units (clean.MICROS) inside int64.
MAX_ABS_SALES = 1e12


@dataclass(frozen=True)
class TableSpec:
    """Columns of a raw CSV table (all raw files are read as strings first, then typed by the cleaners)."""

    kind: TableKind
    columns: tuple[str, ...]
    int_columns: tuple[str, ...]  # must parse as integers, else the file is quarantined
    header_first_column: str | None = None  # a first field equal to this marks an (optional) header row
    number_columns: tuple[str, ...] = ()  # empty, or a finite number within ±MAX_ABS_SALES
    key_columns: tuple[str, ...] = ()  # identifiers: a value repeats across the rows of a file


TABLES: dict[TableKind, TableSpec] = {
    "erp_sales": TableSpec(
        "erp_sales",
        (
            "year",
            "month",
            "country",
            "calorie_category",
            "flavor",
            "zone",
            "product_code",
            "product_name",
            "sales",
        ),
        ("year",),
        number_columns=("sales",),
        key_columns=("product_code",),
    ),
    "tei_fact": TableSpec(
        "tei_fact",
        ("year", "month", "sales", "id_region", "id_product"),
        ("year",),
        number_columns=("sales",),
        key_columns=("id_region", "id_product"),
    ),
    "tei_product": TableSpec(
        "tei_product",
        ("id_product", "calorie_category", "product", "product_brand", "producer"),
        ("id_product",),
        header_first_column="id_product",
    ),
    "tei_region": TableSpec(
        "tei_region", ("id_region", "country", "region"), ("id_region",), header_first_column="id_region"
    ),
}

_TEI_FOLDERS: dict[str, TableKind] = {
    "fact_table": "tei_fact",
    "product_dim": "tei_product",
    "region_dim": "tei_region",
}
# The parts every delivery of a source must hold (at least one valid file each): a region or a table folder.
EXPECTED_UNITS: dict[str, tuple[str, ...]] = {
    "erp": tuple(ERP_REGION_FOLDERS),
    "teinvento": tuple(_TEI_FOLDERS),
}
_DATE = r"(?P<delivery>\d{8})"
_ERP_RE = re.compile(
    rf"^{re.escape(ERP_ROOT)}/{_DATE}/csv/(?P<folder>[^/]+)/ventas_mensuales_(?P=folder)\.csv$"
)
_TEI_RE = re.compile(
    rf"^{re.escape(TEINVENTO_ROOT)}/{_DATE}/(?P<table>fact_table|product_dim|region_dim)/part-[^/]+\.csv$"
)


@dataclass(frozen=True)
class RawFile:
    """A data file of a delivery, identified by its path relative to the delivery root / raw bucket."""

    relpath: str
    source: Source
    delivery: str  # YYYYMMDD
    kind: TableKind
    unit: str  # the part of the delivery it belongs to: ERP region folder or TeInvento table folder

    @property
    def spec(self) -> TableSpec:
        """The table this file belongs to."""
        return TABLES[self.kind]


def is_not_data(relpath: str) -> bool:
    """Spark markers (_SUCCESS, _started_*, _committed_*), editor lock files, hidden and checksum files."""
    name = relpath.rsplit("/", 1)[-1]
    return name.startswith(("_", ".")) or name.endswith((".crc", "#", "~"))


def classify(relpath: str) -> RawFile | None:
    """The ``RawFile`` a relative path denotes, or None when the path is not a data file of a known table."""
    relpath = relpath.replace("\\", "/").lstrip("/")
    if is_not_data(relpath):
        return None
    if m := _ERP_RE.match(relpath):
        if m["folder"] not in ERP_REGION_FOLDERS:
            return None
        return RawFile(relpath, "erp", m["delivery"], "erp_sales", m["folder"])
    if m := _TEI_RE.match(relpath):
        return RawFile(relpath, "teinvento", m["delivery"], _TEI_FOLDERS[m["table"]], m["table"])
    return None


def source_root(source: Source) -> str:
    """Relative root folder (above the date folders) of a source."""
    return ERP_ROOT if source == "erp" else TEINVENTO_ROOT


def unit_label(source: str, unit: str) -> str:
    """How reports name a part of a delivery: ``ERP region Sur``, ``TeInvento table fact_table``."""
    return f"ERP region {unit}" if source == "erp" else f"TeInvento table {unit}"
