"""Transient GCS errors during the ingest and features flows: retried, and the outputs still complete and exact.

The flows talk to the GCS emulator through ``FaultProxy`` (``TAMALES_GCS_ENDPOINT`` = the proxy), which fails
chosen requests on cue. Two layers retry: gcsfs retries 5xx/429 itself (with backoff) inside one call, and a
failure that gets past it (here a ``403 rateLimitExceeded``, which gcsfs does not retry) fails the Prefect
task, which Prefect retries with its backoff. Either way the buckets must end up exactly as without faults.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from features import storage
from features.settings import get_settings
from tests.fixtures import emulators, faults
from tests.fixtures.data import task_runs

RATE_LIMITED = {
    "error": {
        "code": 403,
        "message": "Rate limit exceeded: retry with exponential backoff (injected by the test proxy).",
        "errors": [{"reason": "rateLimitExceeded", "domain": "usageLimits"}],
    }
}


def _upload_to(bucket: str):
    return lambda method, path: method == "POST" and path.startswith(f"/upload/storage/v1/b/{bucket}/o")


def _media_read_from(bucket: str):
    return lambda method, path: method == "GET" and f"/b/{bucket}/o/" in path and "alt=media" in path


def _objects(url: str) -> dict[str, bytes]:
    fs = storage.filesystem(url)
    root = storage.fs_path(url).rstrip("/")
    return {path[len(root) + 1 :]: fs.cat_file(path) for path in sorted(fs.find(root))}


@pytest.fixture
def buckets_behind_proxy(monkeypatch, fault_proxy: faults.FaultProxy, gcs_emulator: str):
    """Raw and processed buckets on the GCS emulator, reached through the fault proxy; both start empty.

    Yields ``(proxy, local processed bucket of the session)``: the fault-free run to compare with.
    """
    local_processed = Path(get_settings().processed_url)
    emulators.point_settings_at(monkeypatch, gcs=gcs_emulator)
    emulators.empty_buckets()
    emulators.point_settings_at(monkeypatch, gcs=fault_proxy.url)
    fault_proxy.reset()
    yield fault_proxy, local_processed
    fault_proxy.reset()


@pytest.mark.timeout(300)
def test_transient_gcs_errors_are_retried_and_outputs_are_complete(
    buckets_behind_proxy: tuple[faults.FaultProxy, Path],
    sample_delivery: Path,
    processed_version: str,
    prefect_harness,
):
    from flows.features import features_flow
    from flows.ingest import ingest_flow

    proxy, local_processed = buckets_behind_proxy
    # Ingest: two 503s on raw-bucket uploads (absorbed by gcsfs's own retry), then one rate-limit error on the
    # next upload, which fails the ingest task once.
    proxy.fail(2, 503, _upload_to("opi_raw_data"))
    rate_limit = proxy.fail(1, 403, _upload_to("opi_raw_data"), RATE_LIMITED)
    ingest_state = ingest_flow(source=str(sample_delivery), return_state=True)
    assert ingest_state.is_completed(), ingest_state.message
    assert rate_limit.fired == 1
    ingest_runs = task_runs(ingest_state)["ingest-delivery"]
    assert max(run.run_count for run in ingest_runs) == 2, "the failed ingest task was not retried"
    assert all(run.state.is_completed() for run in ingest_runs)
    report = ingest_state.result()
    assert report.counts["quarantined"] == 0

    # Features: 503s on raw reads (gcsfs retries) and a rate-limit error on the first processed-bucket upload
    # (the build-and-publish task fails once and is retried by Prefect).
    proxy.fail(2, 503, _media_read_from("opi_raw_data"))
    publish_fault = proxy.fail(1, 403, _upload_to("opi_processed_data"), RATE_LIMITED)
    features_state = features_flow(force=True, return_state=True)
    assert features_state.is_completed(), features_state.message
    assert publish_fault.fired == 1
    [build] = task_runs(features_state)["build-and-publish-version"]
    assert build.run_count == 2 and build.state.is_completed()
    statuses = [seen.status for seen in proxy.injected()]
    assert statuses.count(503) == 4 and statuses.count(403) == 2

    result = features_state.result()
    assert result.data_version == processed_version  # same input, same data version as the local run
    settings = get_settings()
    # The raw bucket holds exactly the delivery's data files plus the manifests (one copy each, no leftovers).
    raw = _objects(settings.raw_url)
    delivery_files = {
        p.relative_to(sample_delivery).as_posix(): p.read_bytes()
        for p in sample_delivery.rglob("*")
        if p.is_file() and p.relative_to(sample_delivery).as_posix() in report.copied
    }
    assert {k: v for k, v in raw.items() if not k.startswith("_manifests/")} == delivery_files
    assert sorted(k for k in raw if k.startswith("_manifests/")) == sorted(
        f"_manifests/{d}.json" for d in report.deliveries
    )
    # The processed bucket holds the version byte-identical to the fault-free local run, marker included.
    # (The local run's version folder may also hold the forecast step's `forecasts/`, published after it.)
    published = _objects(storage.join(settings.processed_url, result.data_version))
    local = faults.tree_bytes(local_processed / processed_version)
    assert published == {k: v for k, v in local.items() if not k.startswith("forecasts/")}
    assert _objects(settings.processed_url)["LATEST"] == f"{processed_version}\n".encode()
