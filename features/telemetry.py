"""The one source of truth for switching off the telemetry of the tools this project starts.

``NO_PHONE_HOME`` is what every place that starts Prefect, MLflow or BentoML sets: the Python entry points
call ``quiet_tools()`` (``flows/__init__.py``, ``service/api.py``), the test session and its fixtures use the
dict, and the places that cannot import Python — the Makefile, ``bench/common.sh``,
``scripts/test_container.sh`` and ``bentofile.yaml``'s ``envs`` — repeat the values, which
``tests/test_seams.py`` checks against this dict. Standard library only: imported before the tools are.
"""

from __future__ import annotations

import os

NO_PHONE_HOME = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
    # gcsfs otherwise probes a gRPC endpoint for hierarchical-namespace buckets on every bucket operation.
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
}

# Prefect's temporary API server (flows run without PREFECT_API_URL) can take longer than its default wait to
# start on a busy 2-core machine.
TOOL_DEFAULTS = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}


def quiet_tools() -> None:
    """Switch off the tools' telemetry for this process and set tool defaults (an explicit setting wins)."""
    for key, value in {**NO_PHONE_HOME, **TOOL_DEFAULTS}.items():
        os.environ.setdefault(key, value)
