"""Markdown of a training run (the Prefect artifact and the MLflow ``backtest_table.md``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.results import TrainResult

_COLUMNS = (
    ("wape", "WAPE"),
    ("wape_erp", "WAPE erp"),
    ("wape_teinvento", "WAPE teinvento"),
    ("bias", "bias"),
    ("coverage_p10_p90", "p10–p90 coverage"),
    ("coverage_p10_p90_erp", "coverage erp"),
    ("coverage_p10_p90_teinvento", "coverage teinvento"),
)


def backtest_table(scores: dict[str, dict[str, float]]) -> str:
    """The model and every baseline on the same rolling origins, one row each (markdown)."""
    keys = [(k, title) for k, title in _COLUMNS if any(k in s for s in scores.values())]
    lines = [
        "| forecaster | " + " | ".join(title for _, title in keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    for name, values in scores.items():
        cells = [f"{values[k]:.4f}" if k in values else "" for k, _ in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(result: TrainResult, origins: int) -> str:
    """Render a ``flows.train.train`` result (registered or unchanged) as markdown."""
    lines = [f"# Training on data version `{result.data_version}`", ""]
    if result.status == "unchanged":
        lines += [f"**Unchanged** — {result.reason}.", ""]
        return "\n".join(lines) + "\n"
    lines += [
        f"Rolling-origin backtest: 1 month ahead, refit at each of the last {origins} months of each source.",
        "",
    ]
    lines += [backtest_table(result.scores)]
    if result.incumbent_scores:
        lines += ["The champion's recipe on the same origins:", "", backtest_table(result.incumbent_scores)]
    verdict = "promoted to `@champion`" if result.promoted else "not promoted"
    lines += [
        f"**Decision:** {verdict} — {result.reason}.",
        "",
        f"Model version v{result.model_version} → `@{result.alias}`; champion now "
        f"v{result.champion_version or '–'}; recipe `{result.recipe_fingerprint}`; MLflow run `{result.run_id}`.",
    ]
    return "\n".join(lines) + "\n"
