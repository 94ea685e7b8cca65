"""Training reads its data version from a ``gs://`` processed bucket (the GCS emulator) exactly as from a folder."""

from __future__ import annotations

from pathlib import Path

from features import processed, storage
from features.settings import get_settings
from training import steps
from training.data import load_rows


def test_training_data_from_a_gcs_processed_bucket(processed_version: str, request):
    local_root = Path(processed.version_url(processed_version))
    files = {
        p.relative_to(local_root).as_posix(): p.read_bytes()
        for p in sorted(local_root.rglob("*"))
        if p.is_file() and p.name != storage.SUCCESS_MARKER
    }
    local = load_rows(processed_version)

    # Only now point the settings at the emulator: TAMALES_PROCESSED_URL=gs://opi_processed_data.
    settings = request.getfixturevalue("gcs_settings")
    assert get_settings().processed_url == "gs://opi_processed_data"
    storage.publish_files(processed.version_url(processed_version, settings), files, settings)
    storage.write_bytes_atomic(
        storage.join(settings.processed_url, processed.LATEST_POINTER), processed_version.encode(), settings
    )

    assert steps.resolve_data_version(None) == processed_version
    assert load_rows(processed_version).equals(local)
    assert isinstance(processed.read_quality_report(processed_version), dict)
