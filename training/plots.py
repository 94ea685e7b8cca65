"""Diagnostic plots logged with each training run (matplotlib, Agg backend, no pyplot global state)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import xgboost as xgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

PER_PAGE = 16
HISTORY_MONTHS = 12


def forecast_vs_actual(history: pl.DataFrame, predictions: pl.DataFrame, out_dir: Path) -> list[Path]:
    """One small panel per product: recent actuals, test actuals, p50 and the p10–p90 band; pages of 16.

    ``history`` holds earlier rows (``source, id_product, target_month, target``), ``predictions`` the test
    rows from ``training.evaluate``. Returns the PNG files written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = ["source", "id_product"]
    past = (
        history.select(*keys, "target_month", pl.col("target").alias("actual"))
        .sort("target_month")
        .group_by(keys, maintain_order=True)
        .tail(HISTORY_MONTHS)
    )
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
        fig.suptitle(f"Forecast vs actual in the test months (p10–p90 band), page {page}")
        path = out_dir / f"forecast_vs_actual_{page:02d}.png"
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
    ax.plot(x, test["actual"], color="black", marker="o", linestyle="none", label="actual (test)")
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
    names = sorted(gains, key=gains.get)
    fig = Figure(figsize=(8, 0.3 * max(len(names), 4) + 1.5), dpi=80, layout="constrained")
    ax = fig.subplots()
    values = np.array([gains[n] for n in names], dtype=float)
    ax.barh(names, values / values.sum() if values.sum() > 0 else values)
    ax.set_xlabel("share of total gain")
    ax.set_title("Feature importance (sales inputs are relative to the 3-month level)")
    fig.savefig(path)
    return path
