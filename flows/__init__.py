"""Prefect flows (thin wiring of tasks over ``features``/``training`` functions).

``features.settings`` is imported first: it switches the tools' telemetry off before Prefect is imported.
"""

import features.settings  # noqa: F401
