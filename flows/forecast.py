"""Forecast flow ``forecast``: realized accuracy of earlier forecasts, then this run's batch forecasts.

    uv run python -m flows.forecast [--data-version V] [--alias champion]

1. **realized**: every published forecast whose month now has an actual in the feature store is scored
   (``training.realized``); the metrics go to the MLflow run of the model version that made it, a source-month
   whose realized WAPE exceeds ``TAMALES_REALIZED_WAPE_ALERT_FACTOR`` × its backtest WAPE logs a WARNING and
   tags the MLflow run and this flow run ``realized_wape_alert`` (``training.realized_tracking``); artifact
   ``realized-accuracy``: the table and a chart of realized vs backtest WAPE over time.
2. **forecasts**: every product scored with ``@alias`` exactly as the service answers it, published to
   ``<processed bucket>/<data_version>/forecasts/`` and the ``forecasts`` table (``flows.batch``);
   artifact ``forecast-report``.

The pipeline runs it as its fifth step, after the gate and packaging.
"""

from __future__ import annotations

import argparse
import base64
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from features import processed
from features.forecast_schema import REALIZED
from features.forecast_tables import get_forecast_tables
from features.settings import get_settings
from flows import batch
from training import realized, realized_tracking

REPORT_ROWS = 20


@task(name="resolve-data-version", retries=2, retry_delay_seconds=[1, 4], cache_policy=NO_CACHE)
def resolve_data_version_task(data_version: str | None) -> str:
    """The given data version, else the newest published one."""
    return data_version or processed.latest_version()


@task(name="realized-accuracy", retries=2, retry_delay_seconds=[1, 4], cache_policy=NO_CACHE)
def realized_task(actuals_version: str) -> dict[str, Any]:
    """Score published forecasts against the feature store's actuals; log metrics, tags and the chart.
    ``summary`` and the chart cover every realized month so far; ``alerts`` this run's."""
    backtest = {run: realized_tracking.backtest_wapes(*run) for run in realized.forecast_runs()}
    table = realized.compute_realized(actuals_version, backtest)
    if table.is_empty():
        return {"rows": 0, "summary": [], "alerts": [], "chart": None, "chart_uris": []}
    found = realized_tracking.log_realized(table)
    history = get_forecast_tables().read(REALIZED)  # every month realized so far, this run's included
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "realized_vs_backtest_wape.png"
        uris = realized_tracking.log_chart(history, path)
        chart = base64.b64encode(path.read_bytes()).decode()
    summary = realized.summary_rows(history).drop("computed_at", "productid").to_dicts()
    return {"rows": table.height, "summary": summary, "alerts": found, "chart": chart, "chart_uris": uris}


@task(name="publish-forecasts", retries=2, retry_delay_seconds=[1, 4], cache_policy=NO_CACHE)
def publish_task(data_version: str, alias: str) -> dict[str, Any]:
    """Score every product with ``@alias`` and publish the table (bucket + forecasts table)."""
    result = batch.publish_forecasts(data_version, alias)
    table = result.pop("table")
    result["preview"] = table.drop("published_at").head(REPORT_ROWS).to_dicts()
    return result


def realized_markdown(result: dict[str, Any], factor: float) -> str:
    """The ``realized-accuracy`` artifact: per source and month, realized vs backtest WAPE, bias, coverage."""
    lines = [
        "# Realized accuracy",
        "",
        f"Alert when realized WAPE > {factor} × backtest WAPE: **{len(result['alerts'])} alert(s)**.",
        "",
        "| model | forecasts from | month | source | products | realized WAPE | backtest WAPE | ratio | bias |"
        " p10–p90 coverage |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["summary"]:
        backtest = row["backtest_wape"]
        ratio = f"{row['wape'] / backtest:.2f}" if backtest and row["wape"] is not None else "—"
        lines.append(
            f"| v{row['model_version']} | {row['data_version']} | {row['forecast_month']} | {row['source']} |"
            f" {row['n_products']} | {_num(row['wape'])} | {_num(backtest)} | {ratio} | {_num(row['bias'])} |"
            f" {_num(row['coverage'])} |"
        )
    if result["chart"]:
        lines += ["", f"![realized vs backtest WAPE](data:image/png;base64,{result['chart']})"]
    lines += ["", *(f"Chart in MLflow: `{uri}`" for uri in result["chart_uris"])]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def forecast_markdown(result: dict[str, Any]) -> str:
    """The ``forecast-report`` artifact: what was published, with the first products."""
    lines = [
        "# Batch forecasts",
        "",
        f"Model {result['model_name']} v{result['model_version']} on data version {result['data_version']}: "
        f"{result['products']} products, forecast month(s) {', '.join(result['forecast_months'])}.",
        f"Published to `{result['url']}` and the forecasts table.",
        "",
        "| productid | source | name | month | p10 | p50 | p90 |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for row in result["preview"]:
        name = str(row["name"] or "").replace("|", "\\|").replace("<", "&lt;")
        lines.append(
            f"| {row['productid']} | {row['source']} | {name} | {row['forecast_month']} |"
            f" {row['p10']:.1f} | {row['p50']:.1f} | {row['p90']:.1f} |"
        )
    return "\n".join(lines)


def tag_flow_run(tag: str) -> None:
    """Add ``tag`` to the current Prefect flow run (its state is then findable by that tag)."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run.id)
        client.update_flow_run(flow_run.id, tags=sorted({*run.tags, tag}))


@dataclass(frozen=True)
class ForecastResult:
    """What one forecast run published and realized."""

    data_version: str
    model_version: str
    products: int
    forecast_months: list[str]
    forecasts_url: str
    realized_rows: int
    realized: list[dict[str, Any]]  # per (model version, source, month): WAPE, bias, coverage vs backtest
    alerts: list[dict[str, Any]]  # the realized rows past the alert factor


@flow(name="forecast", log_prints=True)
def forecast_flow(data_version: str | None = None, alias: str = "champion") -> ForecastResult:
    """Realized accuracy of earlier forecasts, then publish every product's forecast; a summary."""
    logger = get_run_logger()
    settings = get_settings()
    version = resolve_data_version_task(data_version)
    accuracy = realized_task(version)
    if accuracy["rows"]:
        md = realized_markdown(accuracy, settings.realized_wape_alert_factor)
        create_markdown_artifact(md, key="realized-accuracy", description="Realized vs backtest WAPE")
    if accuracy["alerts"]:  # each alert was logged as a WARNING by training.realized_tracking
        logger.warning(
            "%d source-month(s) with realized WAPE > %.2f x backtest WAPE: run tagged %r",
            len(accuracy["alerts"]),
            settings.realized_wape_alert_factor,
            realized_tracking.ALERT_TAG,
        )
        tag_flow_run(realized_tracking.ALERT_TAG)
    published = publish_task(version, alias)
    create_markdown_artifact(
        forecast_markdown(published), key="forecast-report", description="Batch forecasts"
    )
    logger.info(
        "published %d forecasts of v%s for %s",
        published["products"],
        published["model_version"],
        ", ".join(published["forecast_months"]),
    )
    return ForecastResult(
        data_version=version,
        model_version=published["model_version"],
        products=published["products"],
        forecast_months=list(published["forecast_months"]),
        forecasts_url=published["url"],
        realized_rows=accuracy["rows"],
        realized=accuracy["summary"],
        alerts=accuracy["alerts"],
    )


def main(argv: list[str] | None = None) -> ForecastResult:
    """CLI entry point: run the flow and print its summary as JSON."""
    parser = argparse.ArgumentParser(prog="python -m flows.forecast", description=__doc__.splitlines()[0])
    parser.add_argument("--data-version", help="processed data version (default: the newest)")
    parser.add_argument("--alias", default="champion", help="model alias to forecast with")
    args = parser.parse_args(argv)
    summary = forecast_flow(data_version=args.data_version, alias=args.alias)
    print(json.dumps(asdict(summary), indent=2, default=str))
    return summary


if __name__ == "__main__":
    main()
