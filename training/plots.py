"""Diagnostic plots logged with each training run (matplotlib ``Figure`` objects saved directly: no pyplot, no
global backend switch — ``savefig`` renders PNGs with Agg whatever the process's backend)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import polars as pl
import xgboost as xgb
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

PER_PAGE = 16
HISTORY_MONTHS = 12


def backtest_plots(compared: pl.DataFrame, rows: pl.DataFrame, out_dir: Path) -> list[Path]:
    """Diagnostic PNGs of a backtest: per source, actual vs forecast with the p10–p90 band (pages of 16
    products, each with its earlier history), and the WAPE of the model and the baselines per origin.

    ``compared`` holds the backtest rows with baseline columns (``training.evaluate.Comparison.rows``),
    ``rows`` the feature table (for the history). Returns the files written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    history = rows.filter(pl.col("target").is_not_null()).select(
        "source", "id_product", "target_month", pl.col("target").alias("actual")
    )
    paths = []
    for (source,), part in compared.group_by("source", maintain_order=True):
        first = part["target_month"].min()
        past = history.filter((pl.col("source") == source) & (pl.col("target_month") < first))
        paths += forecast_vs_actual(past, part, out_dir, prefix=f"backtest_{source}")
    paths.append(error_by_origin(compared, out_dir / "backtest_error_by_origin.png"))
    return paths


def error_by_origin(compared: pl.DataFrame, path: Path) -> Path:
    """WAPE of the model (p50) and the best few baselines at each origin, one panel per source."""
    from training.reference import BASELINES

    sources = sorted(set(compared["source"].to_list()))
    fig = Figure(figsize=(6 * len(sources), 4), dpi=70, layout="constrained")
    for ax, source in zip(fig.subplots(1, len(sources), squeeze=False).ravel(), sources, strict=True):
        part = compared.filter(pl.col("source") == source)
        names = ["p50", *BASELINES]
        per_origin = (
            part.group_by("target_month")
            .agg(
                **{
                    n: (pl.col(n) - pl.col("actual")).abs().sum() / pl.col("actual").abs().sum()
                    for n in names
                }
            )
            .sort("target_month")
        )
        x = np.arange(per_origin.height)
        overall = {n: float(cast(float, per_origin[n].mean())) for n in BASELINES}
        for name in ["p50", *sorted(overall, key=overall.__getitem__)[:3]]:
            style = {"linewidth": 2.5, "color": "black"} if name == "p50" else {"alpha": 0.8}
            ax.plot(x, per_origin[name], marker="o", label="model" if name == "p50" else name, **style)
        ax.set_xticks(x, [d.strftime("%Y-%m") for d in per_origin["target_month"]], rotation=45, fontsize=7)
        ax.set_title(f"{source}: WAPE by origin")
        ax.legend(fontsize=7)
    fig.savefig(path)
    return path


def forecast_vs_actual(
    history: pl.DataFrame, predictions: pl.DataFrame, out_dir: Path, prefix: str = "forecast_vs_actual"
) -> list[Path]:
    """One small panel per product: recent actuals, forecast-period actuals, p50 and the p10–p90 band.

    ``history`` holds earlier rows (``source, id_product, target_month, actual``), ``predictions`` the scored
    rows (``actual, p10, p50, p90``). Pages of 16 products; returns the PNG files written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = ["source", "id_product"]
    past = history.sort("target_month").group_by(keys, maintain_order=True).tail(HISTORY_MONTHS)
    test = predictions.sort("target_month")
    past_by = past.partition_by(keys, as_dict=True)
    products = test.partition_by(keys, as_dict=True, maintain_order=True)
    names = sorted(products)
    paths = []
    for page, start in enumerate(range(0, len(names), PER_PAGE), start=1):
        chunk = names[start : start + PER_PAGE]
        # Months as integer positions: date tick locators dominate rendering time otherwise.
        fig = Figure(figsize=(16, 12), dpi=60)
        fig.subplots_adjust(left=0.05, right=0.99, bottom=0.05, top=0.93, wspace=0.25, hspace=0.45)
        axes = fig.subplots(4, 4, squeeze=False).ravel()
        for ax, key in zip(axes, chunk, strict=False):
            _panel(ax, past_by.get(key), products[key])
        for ax in axes[len(chunk) :]:
            ax.set_axis_off()
        axes[0].legend(fontsize=7, loc="best")
        fig.suptitle(f"Forecast vs actual, {prefix} (p10–p90 band), page {page}")
        path = out_dir / f"{prefix}_{page:02d}.png"
        fig.savefig(path)
        paths.append(path)
    return paths


def _panel(ax, past: pl.DataFrame | None, test: pl.DataFrame) -> None:
    months = sorted(
        set(test["target_month"].to_list()) | set(() if past is None else past["target_month"].to_list())
    )
    pos = {m: i for i, m in enumerate(months)}
    x = [pos[m] for m in test["target_month"]]
    if past is not None:
        px = [pos[m] for m in past["target_month"]]
        ax.plot([*px, *x], [*past["actual"], *test["actual"]], color="0.5", marker=".", label="actual")
    ax.plot(x, test["actual"], color="black", marker="o", linestyle="none", label="actual (backtest)")
    ax.plot(x, test["p50"], color="tab:blue", marker="x", label="p50")
    ax.fill_between(x, test["p10"], test["p90"], color="tab:blue", alpha=0.2, label="p10–p90")
    ticks = range(0, len(months), 3)
    ax.set_xticks(list(ticks), [months[i].strftime("%Y-%m") for i in ticks])
    row = test.row(0, named=True)
    # ax.text instead of set_title: title placement re-measures every tick label on each draw.
    title = f"{row['source']}:{row['id_product']} {row['product_name'] or ''}"[:48]
    ax.text(0.5, 1.02, title, transform=ax.transAxes, ha="center", va="bottom", fontsize=8)
    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.tick_params(labelsize=6)


def feature_importance(booster: xgb.Booster, path: Path) -> Path:
    """Horizontal bar chart of total gain per input feature (all quantile heads together)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    gains = booster.get_score(importance_type="total_gain")
    names = sorted(gains, key=lambda name: gains[name])
    fig = Figure(figsize=(8, 0.3 * max(len(names), 4) + 1.5), dpi=80, layout="constrained")
    ax = fig.subplots()
    values = np.array([gains[n] for n in names], dtype=float)
    ax.barh(names, values / values.sum() if values.sum() > 0 else values)
    ax.set_xlabel("share of total gain")
    ax.set_title("Feature importance (sales inputs are relative to the base forecast)")
    fig.savefig(path)
    return path
