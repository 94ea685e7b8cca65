"""Whether a delivery is complete enough to become the published data version.

A delivery is *incomplete* when, compared with what the layout requires and with the previous delivery of the
same source, it lacks something:
- a part the layout requires (each ERP region folder, each TeInvento table) has no valid file — this needs
  no previous delivery, so the very first delivery is checked too;
- one of its data files was quarantined (its rows are missing);
- a part holds fewer rows than ``min_row_share`` of the previous delivery's (bytes when a manifest predates
  row counts);
- a newer delivery of the source exists but none of its files is valid (so an older one would be used).

The features flow refuses to publish an incomplete delivery unless told to (``allow_incomplete``); the
problems are also written into the version's ``data_quality.json``.
"""

from __future__ import annotations

from features.manifests import Manifest, list_deliveries, load_manifest
from features.raw_layout import EXPECTED_UNITS, classify, unit_label
from features.settings import Settings

MAX_LISTED = 12  # problems quoted in an error message; the data-quality report keeps them all


class IncompleteDeliveryError(RuntimeError):
    """The latest delivery of a source lacks data (see the module doc); the message names what."""


def _units(relpaths: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for relpath in relpaths:
        if raw_file := classify(relpath):
            out.setdefault(raw_file.unit, []).append(relpath)
    return out


def _size(manifest: Manifest, relpaths: list[str], measure: str) -> int:
    return sum(getattr(manifest.files[r], measure) or 0 for r in relpaths)


def _share_problems(manifest: Manifest, previous: Manifest, min_row_share: float) -> list[str]:
    """Parts whose row count (or size) fell below ``min_row_share`` of the previous delivery's."""
    now, before = _units(list(manifest.files)), _units(list(previous.files))
    rows_known = all(e.rows is not None for m in (manifest, previous) for e in m.files.values())
    measure = "rows" if rows_known else "size"
    problems = []
    for unit, relpaths in sorted(now.items()):
        old = _size(previous, before.get(unit, []), measure)
        new = _size(manifest, relpaths, measure)
        if old and new < min_row_share * old:
            label = unit_label(manifest.source, unit)
            noun = "rows" if rows_known else "bytes"
            problems.append(
                f"{label}: {new:,} {noun}, {new / old:.0%} of the {old:,} in delivery {previous.delivery}"
                f" (minimum {min_row_share:.0%})"
            )
    return problems


def delivery_problems(manifest: Manifest, previous: Manifest | None, min_row_share: float) -> list[str]:
    """What ``manifest``'s delivery lacks (empty when complete); ``previous``: the source's delivery before."""
    valid, rejected = _units(list(manifest.files)), _units(list(manifest.quarantined))
    problems = []
    for unit in EXPECTED_UNITS[manifest.source]:
        if unit not in valid:
            quarantined = len(rejected.get(unit, []))
            detail = f" ({quarantined} quarantined)" if quarantined else ""
            problems.append(f"{unit_label(manifest.source, unit)} missing: no valid file{detail}")
    inside = f"/{manifest.delivery}/"  # relpaths are shown from the delivery folder down
    problems += [
        f"{rel.split(inside, 1)[-1]} quarantined: {q.reason}"
        for rel, q in sorted(manifest.quarantined.items())
    ]
    if previous is not None:
        problems += _share_problems(manifest, previous, min_row_share)
    return problems


def input_problems(manifests: dict[str, Manifest], settings: Settings) -> dict[str, list[str]]:
    """Per source, what its chosen delivery lacks (see the module doc); empty lists when complete."""
    out = {}
    for source, manifest in manifests.items():
        deliveries = list_deliveries(settings.raw_url, source, settings)
        previous = None
        for delivery in reversed([d for d in deliveries if d < manifest.delivery]):
            candidate = load_manifest(settings.raw_url, source, delivery, settings)
            if candidate is not None and candidate.files:
                previous = candidate
                break
        problems = []
        for delivery in (d for d in deliveries if d > manifest.delivery):
            newer = load_manifest(settings.raw_url, source, delivery, settings)
            quarantined = len(newer.quarantined) if newer else 0
            problems.append(f"newer delivery {delivery}: no valid file ({quarantined} quarantined)")
        out[source] = problems + delivery_problems(manifest, previous, settings.min_row_share)
    return out


def describe(problems: dict[str, list[str]], deliveries: dict[str, str]) -> str:
    """One message naming what each incomplete delivery lacks (at most ``MAX_LISTED`` items)."""
    items = [
        f"{source} {deliveries[source]}: {problem}"
        for source, listed in sorted(problems.items())
        for problem in listed
    ]
    more = f"; and {len(items) - MAX_LISTED} more (see the ingest report)" if len(items) > MAX_LISTED else ""
    return "incomplete delivery: " + "; ".join(items[:MAX_LISTED]) + more
