"""Promotion gate: recipes compete on the same rolling origins; the winner is refit and promoted.

``decide`` is the pure rule. The candidate recipe (this run's) and the incumbent recipe (the current
champion's, when it is a different one) were backtested on the same origins as every baseline. The winner is
the recipe with the lower backtest WAPE (the candidate on a tie, or when there is no incumbent). It is
promoted — refit on all data and given ``@champion`` — only when it beats every baseline, statsforecast ones
included. An unchanged recipe is therefore refreshed on every new delivery. A candidate that is not promoted
becomes ``@challenger`` with the reason. ``apply`` records the decision on a model version (tags), then moves
exactly one alias — a single registry call, so the registry is never half promoted.
Registry aliases only; no stages (deprecated in MLflow).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mlflow import MlflowClient

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class RecipeScore:
    """A recipe's backtest WAPE (``role``: ``candidate`` or ``incumbent``; ``version``: the incumbent's)."""

    role: str
    fingerprint: str
    wape: float
    version: str | None = None


@dataclass(frozen=True)
class Decision:
    """Outcome of the gate: whether a model is promoted, which recipe won, and why."""

    promote: bool
    winner: str  # "candidate" or "incumbent": whose recipe is refit (and promoted if ``promote``)
    reason: str
    best_baseline: str
    best_baseline_wape: float

    @property
    def candidate_alias(self) -> str:
        """The alias the candidate's model gets: champion only if it won and is promoted."""
        return CHAMPION if self.promote and self.winner == "candidate" else CHALLENGER

    def as_dict(self) -> dict:
        """Plain dict (for reports)."""
        return asdict(self)


def decide(candidate: RecipeScore, incumbent: RecipeScore | None, baselines: dict[str, float]) -> Decision:
    """Apply the rule of the module docstring."""
    best_name = min(baselines, key=baselines.__getitem__)
    best = baselines[best_name]
    # The champion's recipe competes only when it differs from the candidate's.
    rival = incumbent if incumbent is not None and incumbent.fingerprint != candidate.fingerprint else None
    winner = rival if rival is not None and rival.wape < candidate.wape else candidate
    lost = (
        f"; candidate recipe {candidate.fingerprint} ({candidate.wape:.4f}) loses to the champion's "
        f"recipe {rival.fingerprint} ({rival.wape:.4f})"
        if rival is not None and winner is rival
        else ""
    )
    if not winner.wape < best:
        reason = (
            f"no XGBoost recipe beats the best statistical baseline: backtest WAPE {winner.wape:.4f} "
            f"(recipe {winner.fingerprint}) vs {best_name} {best:.4f}{lost}"
        )
        return Decision(False, winner.role, reason, best_name, best)
    against = f"beats the best baseline {best_name} ({best:.4f})"
    if winner is rival:
        reason = f"the champion's recipe wins again and is refreshed: backtest WAPE {winner.wape:.4f} {against}{lost}"
    elif rival is not None:
        reason = (
            f"recipe {candidate.fingerprint} wins: backtest WAPE {candidate.wape:.4f} beats the champion's "
            f"recipe {rival.fingerprint} ({rival.wape:.4f}) and {against}"
        )
    elif incumbent is None:
        reason = f"first champion: backtest WAPE {candidate.wape:.4f} {against}"
    else:
        reason = f"recipe {candidate.fingerprint} refreshed on the newest data: backtest WAPE {candidate.wape:.4f} {against}"
    return Decision(True, winner.role, reason, best_name, best)


def apply(
    mlflow_client: MlflowClient, model_name: str, version: str, alias: str, reason: str, fingerprint: str
) -> None:
    """Record the gate's outcome on ``version``, move ``alias`` to it, then mark the version complete."""
    mlflow_client.set_model_version_tag(model_name, version, "gate_decision", alias)
    mlflow_client.set_model_version_tag(model_name, version, "gate_reason", reason[:5000])
    mlflow_client.set_registered_model_alias(model_name, alias, version)
    # Completion marker, written last: only complete versions count for the "unchanged" check.
    mlflow_client.set_model_version_tag(model_name, version, "fingerprint", fingerprint)
