"""Side-by-side scores of the model and every baseline on the same backtest rows.

``compare`` joins a recipe's backtest forecasts with the baselines' (``training.reference``) and scores each
forecaster: WAPE overall and per source, bias, and — for the model — p10–p90 coverage overall and per source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from training import metrics, reference

MODEL = "model"
KEYS = ["source", "id_product", "target_month"]


@dataclass(frozen=True)
class Comparison:
    """Per-row forecasts of the model and the baselines, and per-forecaster scores."""

    rows: pl.DataFrame  # KEYS, actual, p10, p50, p90, one column per baseline
    scores: dict[str, dict[str, float]]  # forecaster -> metric -> value

    def wapes(self) -> dict[str, float]:
        """Overall WAPE of every forecaster."""
        return {name: s["wape"] for name, s in self.scores.items()}

    def best_baseline(self, names: tuple[str, ...] = reference.BASELINES) -> tuple[str, float]:
        """The baseline (of ``names``) with the lowest overall WAPE, and that WAPE."""
        name = min(names, key=lambda n: self.scores[n]["wape"])
        return name, self.scores[name]["wape"]


def score(actual: np.ndarray, forecast: np.ndarray, sources: np.ndarray) -> dict[str, float]:
    """WAPE (overall and ``wape_<source>``) and bias of one point forecast."""
    out = {"wape": metrics.wape(actual, forecast), "bias": metrics.bias(actual, forecast)}
    for source in sorted(set(sources.tolist())):
        mask = sources == source
        out[f"wape_{source}"] = metrics.wape(actual[mask], forecast[mask])
    return out


def interval_scores(rows: pl.DataFrame) -> dict[str, float]:
    """p10–p90 coverage overall and per source (``coverage_p10_p90[_<source>]``)."""
    actual, lo, hi = (rows[c].to_numpy() for c in ("actual", "p10", "p90"))
    out = {"coverage_p10_p90": metrics.coverage(actual, lo, hi)}
    for (source,), part in rows.group_by("source", maintain_order=True):
        out[f"coverage_p10_p90_{source}"] = metrics.coverage(
            part["actual"].to_numpy(), part["p10"].to_numpy(), part["p90"].to_numpy()
        )
    return out


def compare(predictions: pl.DataFrame, baselines: pl.DataFrame) -> Comparison:
    """Scores of the model (backtest ``predictions``) and each baseline on the same rows."""
    rows = predictions.join(baselines, on=KEYS, how="left").sort(KEYS)
    actual, sources = rows["actual"].to_numpy(), rows["source"].to_numpy().astype(str)
    scores = {MODEL: score(actual, rows["p50"].to_numpy(), sources) | interval_scores(rows)}
    for name in reference.BASELINES:
        scores[name] = score(actual, rows[name].to_numpy(), sources)
    return Comparison(rows, scores)


def flat_metrics(scores: dict[str, dict[str, float]], prefix: str = "backtest") -> dict[str, float]:
    """MLflow metric names: ``<prefix>_<metric>`` for the model, ``<prefix>_<forecaster>_<metric>`` else."""
    flat = {}
    for name, values in scores.items():
        safe = name.replace("(", "_").replace(")", "")
        head = prefix if name == MODEL else f"{prefix}_{safe}"
        flat.update({f"{head}_{key}": float(value) for key, value in values.items()})
    return flat
