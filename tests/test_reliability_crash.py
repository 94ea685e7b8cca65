"""The features flow SIGKILLed while it publishes: the previous outputs stay intact, a re-run finishes the job.

A bigger generated delivery (tens of MB of parquet) widens the publishing window. ``python -m flows.features
--force`` runs as a child process (against the session's Prefect test API) and is SIGKILLed the moment its
hidden staging directory (``.<version>.staging-*``, the version directory being written) or the feature
store's temporary file appears. The processed bucket and the feature store must then be byte-identical to
what the previous, uninterrupted run published, and a re-run must publish the same bytes again.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from features.settings import get_settings
from tests.fixtures.faults import kill_when, tree_bytes
from tests.fixtures.prefect_server import REPO_ROOT, start_group, tail

BIG = {"seed": 5, "products": 800, "months": 48, "fragments": 1}  # ~10 MB raw, ~20 MB of parquet out
ATTEMPTS = 3  # a kill can miss a short window on a busy machine; each attempt is a full, valid run


@pytest.fixture(scope="module")
def big_outputs(tmp_path_factory: pytest.TempPathFactory, prefect_harness) -> dict:
    """A big delivery ingested and published once, uninterrupted, into this module's own buckets."""
    from features.synth import generate
    from flows.features import features_flow
    from flows.ingest import ingest_flow

    root = tmp_path_factory.mktemp("crash")
    env = {
        "TAMALES_RAW_URL": str(root / "raw"),
        "TAMALES_PROCESSED_URL": str(root / "processed"),
        "TAMALES_STATE_DIR": str(root / "state"),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        generate(root / "delivery", **BIG)
        ingest_flow(source=str(root / "delivery"))
        result = features_flow()
        yield {"root": root, "env": env, "version": result.data_version}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


def _snapshot(root: Path) -> tuple[dict[str, bytes], bytes]:
    settings = get_settings()
    return tree_bytes(root / "processed"), settings.local_feature_store_path.read_bytes()


def _hidden_entry(folder: Path, prefix: str) -> Callable[[], bool]:
    def appeared() -> bool:
        try:
            return any(name.startswith(prefix) for name in os.listdir(folder))
        except FileNotFoundError:
            return False

    return appeared


@pytest.mark.timeout(600)
@pytest.mark.parametrize("moment", ["version-staging", "feature-store-temp"])
def test_features_flow_killed_mid_publish_keeps_previous_outputs(
    big_outputs: dict, moment: str, monkeypatch, tmp_path: Path
):
    from prefect.settings import PREFECT_API_URL

    from flows.features import features_flow

    for key, value in big_outputs["env"].items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    root, version = big_outputs["root"], big_outputs["version"]
    before_tree, before_store = _snapshot(root)
    assert f"{version}/_SUCCESS" in before_tree and before_tree["LATEST"] == f"{version}\n".encode()
    store_path = get_settings().local_feature_store_path
    if moment == "version-staging":
        appeared = _hidden_entry(root / "processed", f".{version}.staging-")
    else:
        appeared = _hidden_entry(store_path.parent, f".{store_path.name}.tmp-")

    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value())
    log = tmp_path / "features.log"
    for _attempt in range(ATTEMPTS):
        proc = start_group([sys.executable, "-m", "flows.features", "--force"], env, log, cwd=REPO_ROOT)
        try:
            killed = kill_when(proc, appeared, timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
        if killed:
            break
        assert proc.returncode == 0, tail(log)
    else:
        pytest.fail(f"the {moment} window was never caught in {ATTEMPTS} runs:\n{tail(log)}")
    assert proc.returncode == -9

    # Previous outputs intact: every visible file of the processed bucket and the feature store, to the byte.
    after_tree, after_store = _snapshot(root)
    assert after_tree == before_tree
    assert after_store == before_store
    leftovers = [p.name for p in (root / "processed").iterdir() if p.name.startswith(".")]
    leftovers += [p.name for p in store_path.parent.iterdir() if p.name.startswith(".")]
    assert all(name.startswith(f".{version}.staging-") or ".tmp-" in name for name in leftovers), leftovers

    # A re-run (in-process, same inputs) publishes exactly what the uninterrupted run published.
    rerun = features_flow(force=True)
    assert rerun.data_version == version
    assert _snapshot(root) == (before_tree, before_store)
