"""The typed results of the ingest and features flows, returned to the CLI, the pipeline and the tests."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from features.ingest import IngestReport


@dataclass(frozen=True)
class Quarantined:
    """A file the ingest set aside, with the reason (relpath relative to the delivery root)."""

    relpath: str
    reason: str


@dataclass(frozen=True)
class IngestResult:
    """What one ingest run did; lists hold relpaths relative to the delivery root / raw bucket."""

    copied: list[str]
    unchanged: list[str]
    skipped_not_data: list[str]
    skipped_unknown: list[str]
    quarantined: list[Quarantined]
    deliveries: list[str]  # "<source>/<YYYYMMDD>" of every data file seen
    rows_validated: int
    bytes_copied: int
    counts: dict[str, int]  # number of files per outcome

    @classmethod
    def of(cls, report: IngestReport) -> IngestResult:
        """The frozen result of an ingest run's (mutable, mergeable) report."""
        return cls(
            copied=list(report.copied),
            unchanged=list(report.unchanged),
            skipped_not_data=list(report.skipped_not_data),
            skipped_unknown=list(report.skipped_unknown),
            quarantined=[Quarantined(rel, reason) for rel, reason in report.quarantined],
            deliveries=list(report.deliveries),
            rows_validated=report.rows_validated,
            bytes_copied=report.bytes_copied,
            counts=report.counts(),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able types (for the CLI and the pipeline's printed summary)."""
        return asdict(self)


@dataclass(frozen=True)
class FeaturesResult:
    """What one features run published: the data version, where, and which deliveries it came from."""

    engine: str
    data_version: str
    url: str
    feature_store_rows: int
    deliveries: dict[str, str] = field(default_factory=dict)  # source -> delivery date
    incomplete: dict[str, list[str]] = field(default_factory=dict)  # source -> what it lacks

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able types."""
        return asdict(self)
