"""The typed result of a training run, returned by the ``train`` flow and read by the pipeline and reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class TrainResult:
    """What a training run did.

    ``model_version`` is the registered version this run produced (or, when ``status == "unchanged"``, the
    earlier version it found); ``alias`` is the alias that version holds; ``champion_version`` is the version
    behind ``@champion`` after the run. ``scores`` holds the candidate recipe's backtest scores and every
    baseline's (forecaster -> metric -> value); ``incumbent_scores`` the champion recipe's when it competed.
    """

    status: Literal["registered", "unchanged"]
    data_version: str
    model_name: str
    model_version: str
    alias: str | None
    promoted: bool
    reason: str
    recipe_fingerprint: str
    run_id: str | None = None
    champion_version: str | None = None
    backtest_wape: float | None = None
    coverage_p10_p90: float | None = None
    best_baseline: str | None = None
    best_baseline_wape: float | None = None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    incumbent_scores: dict[str, dict[str, float]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The result without the score tables (for logs and the CLI)."""
        return {k: v for k, v in asdict(self).items() if k not in ("scores", "incumbent_scores")}
