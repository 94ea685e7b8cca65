"""Promotion gate: ``@champion`` moves only to a model that beats the baselines and the re-scored champion.

``decide`` is the pure rule. ``apply`` records it on the model version (tags), then moves exactly one alias —
a single registry call, so the registry is never half promoted — and tags the version as complete last.
Registry aliases only; no stages (deprecated in MLflow).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mlflow import MlflowClient

from training import tracking

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class ChampionScore:
    """The current champion re-scored on the candidate's test set (``error`` set if that was impossible)."""

    version: str
    wape: float | None = None
    error: str | None = None
    metrics: dict[str, float] | None = None


@dataclass(frozen=True)
class Decision:
    """Outcome of the gate: which alias the candidate gets and why."""

    promote: bool
    alias: str
    reason: str

    def as_dict(self) -> dict:
        """Plain dict (for flow results and reports)."""
        return asdict(self)


def decide(
    candidate_wape: float, baseline_wapes: dict[str, float], champion: ChampionScore | None
) -> Decision:
    """Promote iff the candidate's test WAPE is strictly below the best baseline's and the champion's."""
    best_name = min(baseline_wapes, key=baseline_wapes.get)
    best = baseline_wapes[best_name]
    if not candidate_wape < best:
        return Decision(
            False,
            CHALLENGER,
            f"test WAPE {candidate_wape:.4f} does not beat baseline {best_name} ({best:.4f})",
        )
    if champion is None:
        return Decision(
            True,
            CHAMPION,
            f"first champion: test WAPE {candidate_wape:.4f} beats baseline {best_name} ({best:.4f})",
        )
    if champion.error is not None or champion.wape is None:
        return Decision(
            False,
            CHALLENGER,
            f"current champion v{champion.version} could not be re-scored: {champion.error}",
        )
    if not candidate_wape < champion.wape:
        return Decision(
            False,
            CHALLENGER,
            f"test WAPE {candidate_wape:.4f} does not beat champion v{champion.version} ({champion.wape:.4f})",
        )
    return Decision(
        True,
        CHAMPION,
        f"test WAPE {candidate_wape:.4f} beats champion v{champion.version} ({champion.wape:.4f}) "
        f"and baseline {best_name} ({best:.4f})",
    )


def apply(
    mlflow_client: MlflowClient,
    model_name: str,
    version: str,
    decision: Decision,
    scored_champion: str | None,
    fingerprint: str,
) -> Decision:
    """Record ``decision`` on ``version`` and move its alias; returns the decision actually applied.

    If ``@champion`` moved since it was re-scored (``scored_champion``; a concurrent training), the candidate
    was not compared with the real champion and becomes a challenger instead.
    """
    if decision.promote:
        current = tracking.alias_version(mlflow_client, model_name, CHAMPION)
        current_version = str(current.version) if current is not None else None
        if current_version != scored_champion:
            decision = Decision(
                False,
                CHALLENGER,
                f"champion moved from v{scored_champion} to v{current_version} during this run; not compared",
            )
    mlflow_client.set_model_version_tag(model_name, version, "gate_decision", decision.alias)
    mlflow_client.set_model_version_tag(model_name, version, "gate_reason", decision.reason)
    mlflow_client.set_registered_model_alias(model_name, decision.alias, version)
    # Completion marker, written last: only complete versions count for the "unchanged" check.
    mlflow_client.set_model_version_tag(model_name, version, "fingerprint", fingerprint)
    return decision
