"""Test session setup: every tool's state goes to a per-session temp dir; nothing phones home.

The environment is set at import time (before Prefect, MLflow or BentoML are imported by any test module) so
that their home folders and databases never touch the developer's own state.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from features.telemetry import NO_PHONE_HOME, TOOL_DEFAULTS

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="tamales-tests-"))
_ENV = {
    "TAMALES_STATE_DIR": str(_SESSION_DIR / "state"),
    "TAMALES_RAW_URL": str(_SESSION_DIR / "lake" / "opi_raw_data"),
    "TAMALES_PROCESSED_URL": str(_SESSION_DIR / "lake" / "opi_processed_data"),
    "TAMALES_FEATURE_STORE": "local",
    "PREFECT_HOME": str(_SESSION_DIR / "prefect"),
    "BENTOML_HOME": str(_SESSION_DIR / "bentoml"),
    **NO_PHONE_HOME,
    **TOOL_DEFAULTS,
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}
os.environ.update(_ENV)
for _var in (
    "MLFLOW_TRACKING_URI",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "STORAGE_EMULATOR_HOST",
    "PREFECT_API_URL",
):
    os.environ.pop(_var, None)


# Fixtures that start a server, an emulator, a flow run (Prefect's temporary API server), a bento or a
# container: every test that uses one, directly or through another fixture, is marked ``integration``. The
# rest is the fast lane (`make test-fast`: ``pytest -m "not integration"``).
INTEGRATION_FIXTURES = frozenset(
    {
        "prefect_harness",
        "prefect_server",
        "gcs_emulator",
        "bigquery_emulator",
        "fault_proxy",
        "packaged_bento",
        "bento_server",
        "forecast_app",
        "guarded_server",
    }
)
# Fixtures whose first use costs minutes (a training run, a bento build): their tests are also ``slow``.
SLOW_FIXTURES = frozenset({"trained_model", "packaged_bento", "prefect_server"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the fixtures they need (see ``INTEGRATION_FIXTURES``), so the lanes cannot drift."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & INTEGRATION_FIXTURES:
            item.add_marker(pytest.mark.integration)
        if used & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def session_dir() -> Path:
    """The session's scratch folder (state, lake, tool homes)."""
    return _SESSION_DIR


@pytest.fixture(autouse=True)
def _fresh_settings():
    """Settings are cached per process; tests that change TAMALES_* env vars get a fresh read."""
    from features.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API (SQLite) for running flows in-process."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


# Every fixture module registered once, here: a session fixture is then one instance for the whole session
# (binding it into several test modules would make one per module — a second emulator, a second bento).
pytest_plugins = [
    "tests.fixtures.data",
    "tests.fixtures.emulators",
    "tests.fixtures.faults",
    "tests.fixtures.mlflow",
    "tests.fixtures.prefect_server",
    "tests.fixtures.serving",
]
