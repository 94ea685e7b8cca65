"""Test session setup: every tool's state goes to a per-session temp dir; nothing phones home.

The environment is set at import time (before Prefect, MLflow or BentoML are imported by any test module) so
that their home folders and databases never touch the developer's own state.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="tamales-tests-"))
_ENV = {
    "TAMALES_STATE_DIR": str(_SESSION_DIR / "state"),
    "TAMALES_RAW_URL": str(_SESSION_DIR / "lake" / "opi_raw_data"),
    "TAMALES_PROCESSED_URL": str(_SESSION_DIR / "lake" / "opi_processed_data"),
    "TAMALES_FEATURE_STORE": "local",
    "PREFECT_HOME": str(_SESSION_DIR / "prefect"),
    "BENTOML_HOME": str(_SESSION_DIR / "bentoml"),
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}
os.environ.update(_ENV)
for _var in (
    "MLFLOW_TRACKING_URI",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "STORAGE_EMULATOR_HOST",
    "PREFECT_API_URL",
):
    os.environ.pop(_var, None)


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


pytest_plugins = ["tests.fixtures.data"]
