"""Prefect flows (thin wiring of tasks over ``features``/``training`` functions) and their build tooling.

An import-time side effect that must stay: every flow entry point (``python -m flows.x``, a Prefect worker
loading ``flows.pipeline``) imports this package first, and the tools' telemetry must be off before Prefect or
MLflow is imported (``features.telemetry``).
"""

from features.telemetry import quiet_tools

quiet_tools()
