"""Realized accuracy in MLflow: metrics on the run of the model version that made the forecasts, the
comparison with that model's backtest WAPE, the alert, and the chart of realized vs backtest WAPE.

Metrics (on the version's training run, one point per forecast month: ``step`` = ``YYYYMM``, timestamp =
the month's first day, so logging the same month again adds nothing new): ``realized_wape_<source>``,
``realized_bias_<source>``, ``realized_coverage_p10_p90_<source>`` and ``realized_wape_ratio_<source>``
(realized / backtest WAPE). A source-month whose realized WAPE exceeds ``TAMALES_REALIZED_WAPE_ALERT_FACTOR``
× the backtest WAPE is an *alert*: a WARNING log, and the tag ``realized_wape_alert`` = ``true`` on the run
and on the model version (``false`` when its realized months are all within the factor).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.dates import DateFormatter, MonthLocator  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from mlflow.entities import Metric  # noqa: E402

from features.schema import SOURCES  # noqa: E402
from features.settings import Settings, get_settings  # noqa: E402
from training import tracking  # noqa: E402
from training.realized import summary_rows  # noqa: E402

ALERT_TAG = "realized_wape_alert"
logger = logging.getLogger(__name__)


def backtest_wapes(model_name: str, model_version: str, settings: Settings | None = None) -> dict[str, float]:
    """The version's backtest WAPE per source (``backtest_wape_<source>``) and overall (key ``all``)."""
    client = tracking.client(settings or get_settings())
    version = client.get_model_version(model_name, model_version)
    metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
    out = {
        source: metrics[f"backtest_wape_{source}"]
        for source in SOURCES
        if f"backtest_wape_{source}" in metrics
    }
    if "backtest_wape" in metrics:
        out["all"] = metrics["backtest_wape"]
    return out


def _month_point(month: str) -> tuple[int, int]:
    """(step, timestamp in ms) of a ``YYYY-MM`` month."""
    year, mon = int(month[:4]), int(month[5:7])
    return year * 100 + mon, int(datetime(year, mon, 1, tzinfo=UTC).timestamp() * 1000)


def alerts(realized: pl.DataFrame, factor: float) -> pl.DataFrame:
    """Summary rows whose realized WAPE exceeds ``factor`` × the backtest WAPE (with ``ratio``)."""
    rows = summary_rows(realized).with_columns(ratio=pl.col("wape") / pl.col("backtest_wape"))
    return rows.filter(pl.col("wape") > factor * pl.col("backtest_wape"))


def log_realized(realized: pl.DataFrame, settings: Settings | None = None) -> list[dict[str, Any]]:
    """Log the realized metrics and the alert tag on each forecasting model version's run; the alerts
    (one dict per source-month over the factor), each also logged as a WARNING."""
    settings = settings or get_settings()
    factor = settings.realized_wape_alert_factor
    client = tracking.client(settings)
    summary = summary_rows(realized)
    flagged = alerts(realized, factor)
    for (name, version), rows in summary.group_by(["model_name", "model_version"], maintain_order=True):
        run_id = client.get_model_version(name, version).run_id
        points = []
        for row in rows.iter_rows(named=True):
            step, stamp = _month_point(row["forecast_month"])
            values = {
                f"realized_wape_{row['source']}": row["wape"],
                f"realized_bias_{row['source']}": row["bias"],
                f"realized_coverage_p10_p90_{row['source']}": row["coverage"],
            }
            if row["wape"] is not None and row["backtest_wape"]:
                values[f"realized_wape_ratio_{row['source']}"] = row["wape"] / row["backtest_wape"]
            points += [Metric(k, float(v), stamp, step) for k, v in values.items() if v is not None]
        if run_id:
            client.log_batch(run_id, metrics=points)
        mine = flagged.filter((pl.col("model_name") == name) & (pl.col("model_version") == version))
        value = "true" if mine.height else "false"
        if run_id:
            client.set_tag(run_id, ALERT_TAG, value)
        client.set_model_version_tag(name, version, ALERT_TAG, value)
    found = flagged.select(
        "model_name", "model_version", "source", "forecast_month", "wape", "backtest_wape", "ratio"
    ).to_dicts()
    for alert in found:
        logger.warning(
            "realized WAPE alert: %s v%s, %s %s: realized WAPE %.3f > %.2f x backtest WAPE %.3f",
            alert["model_name"],
            alert["model_version"],
            alert["source"],
            alert["forecast_month"],
            alert["wape"],
            factor,
            alert["backtest_wape"],
        )
    return found


def realized_chart(realized: pl.DataFrame, path: Path) -> Path:
    """PNG of realized WAPE per source and month (dots) against each model's backtest WAPE (dashes), over
    every month ``realized`` holds."""
    summary = summary_rows(realized)
    fig = Figure(figsize=(7, 3.5))
    ax = fig.subplots()
    for (_name, version, source), rows in summary.group_by(
        ["model_name", "model_version", "source"], maintain_order=True
    ):
        rows = rows.sort("forecast_month")
        # matplotlib plots datetimes (its stubs only say arrays): an object array keeps mypy and it happy
        months = np.array([datetime(int(m[:4]), int(m[5:7]), 1) for m in rows["forecast_month"]])
        line = ax.plot(months, rows["wape"].to_list(), marker="o", label=f"v{version} {source} realized")[0]
        if rows["backtest_wape"].null_count() < rows.height:
            ax.plot(
                months,
                rows["backtest_wape"].to_list(),
                linestyle="--",
                marker="_",
                markersize=14,
                color=line.get_color(),
                label=f"v{version} {source} backtest",
            )
    ax.xaxis.set_major_locator(MonthLocator())
    ax.xaxis.set_major_formatter(DateFormatter("%Y-%m"))
    ax.set_ylabel("WAPE")
    ax.set_xlabel("forecast month")
    ax.set_title("Realized vs backtest WAPE")
    ax.set_ylim(bottom=0)
    if summary.height:
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def log_chart(realized: pl.DataFrame, path: Path, settings: Settings | None = None) -> list[str]:
    """Draw the chart and log it under ``realized/`` on each forecasting version's run; the artifact URIs."""
    client = tracking.client(settings or get_settings())
    realized_chart(realized, path)
    uris = []
    for name, version in summary_rows(realized).select("model_name", "model_version").unique().iter_rows():
        run_id = client.get_model_version(name, version).run_id
        if run_id:
            client.log_artifact(run_id, str(path), "realized")
            uris.append(f"{client.get_run(run_id).info.artifact_uri}/realized/{path.name}")
    return uris
