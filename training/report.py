"""Markdown summary of a training run (the Prefect artifact): metrics table and the gate's decision."""

from __future__ import annotations

from typing import Any

_COLUMNS = (
    ("wape", "WAPE"),
    ("mae", "MAE"),
    ("rmse", "RMSE"),
    ("bias", "bias"),
    ("coverage_p10_p90", "p10–p90 cov."),
)


def _cell(value: float | None, key: str) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if key in ("mae", "rmse") else f"{value:.4f}"


def markdown(result: dict[str, Any]) -> str:
    """Render a ``flows.train.train`` result (registered or unchanged) as markdown."""
    lines = [f"# Training on data version `{result['data_version']}`", ""]
    if result["status"] == "unchanged":
        lines += [f"**Unchanged** — {result['reason']}.", "", f"Test WAPE of v{result['version']}: "]
        lines[-1] += f"{result['test_wape']:.4f}; aliases: {', '.join(result['aliases']) or 'none'}."
        return "\n".join(lines) + "\n"
    scores: dict[str, dict[str, float]] = result["scores"]
    sources = sorted({k.removeprefix("wape_") for m in scores.values() for k in m if k.startswith("wape_")})
    keys = [*_COLUMNS, *((f"wape_{s}", f"WAPE {s}") for s in sources)]
    lines += ["| forecaster | " + " | ".join(title for _, title in keys) + " |"]
    lines += ["|---" * (len(keys) + 1) + "|"]
    for name, values in scores.items():
        label = f"champion v{result['champion_version']} (re-scored)" if name == "champion" else name
        lines.append(f"| {label} | " + " | ".join(_cell(values.get(k), k) for k, _ in keys) + " |")
    backtest = result["backtest"]
    per_origin = ", ".join(f"{r['target_months'][-1]}: {r['wape']:.4f}" for r in backtest["origins"])
    lines += [
        "",
        f"Rolling-origin backtest WAPE (refit per origin): mean {backtest['wape_mean']:.4f} ({per_origin}); "
        + "baselines: "
        + ", ".join(f"{k} {v:.4f}" for k, v in backtest["baseline_wape_mean"].items()),
        "",
        f"**Decision:** v{result['version']} → `@{result['alias']}` — {result['reason']}.",
        f"MLflow run `{result['run_id']}`.",
    ]
    return "\n".join(lines) + "\n"
