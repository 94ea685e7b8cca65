"""Training data: the published train/test splits, time-ordered folds, and model matrices.

Model inputs come only from ``features.schema.to_model_matrix``; nothing here names a feature.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from features import processed
from features.schema import KEY_COLUMNS, conform, to_model_matrix
from features.settings import Settings


@dataclass(frozen=True)
class Matrices:
    """Model matrix, actual next-month sales and the source of every row."""

    X: np.ndarray
    y: np.ndarray
    sources: np.ndarray


def load_split(version: str, split: processed.SplitName, settings: Settings | None = None) -> pl.DataFrame:
    """A published split, conformed to the feature-store schema, rows with a known target, in key order."""
    df = conform(processed.read_split(version, split, settings))
    df = df.filter(pl.col("target").is_not_null() & pl.col("target").is_not_nan())
    if df.is_empty():
        raise ValueError(f"{split} of data version {version} has no rows with a known target")
    return df.sort(KEY_COLUMNS)


def load_all(version: str, settings: Settings | None = None) -> pl.DataFrame:
    """Train and test rows together (for the rolling-origin backtest), in key order."""
    frames = [load_split(version, "train_set", settings), load_split(version, "test_set", settings)]
    return pl.concat(frames, how="vertical").unique(KEY_COLUMNS, keep="first").sort(KEY_COLUMNS)


def matrices(df: pl.DataFrame) -> Matrices:
    """Model matrix (``to_model_matrix``), targets and sources of ``df``."""
    return Matrices(
        X=to_model_matrix(df),
        y=df["target"].cast(pl.Float64).to_numpy(),
        sources=df["source"].to_numpy().astype(str),
    )


def with_month_rank(df: pl.DataFrame) -> pl.DataFrame:
    """Add ``month_rank``: 1 for the last target month of the row's source, 2 for the one before, ..."""
    rank = pl.col("target_month").rank("dense", descending=True).over("source").cast(pl.Int32)
    return df.with_columns(month_rank=rank)


def holdout_last_months(df: pl.DataFrame, n_months: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split into (earlier rows, rows whose target month is among the last ``n_months`` of their source)."""
    ranked = with_month_rank(df)
    fit = ranked.filter(pl.col("month_rank") > n_months).drop("month_rank")
    holdout = ranked.filter(pl.col("month_rank") <= n_months).drop("month_rank")
    if fit.is_empty() or holdout.is_empty():
        raise ValueError(f"not enough months to hold out the last {n_months} target months of each source")
    return fit, holdout


def origin_split(df: pl.DataFrame, origin: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rolling origin ``origin`` (1 = last month): (rows with an earlier target month, rows of that month)."""
    ranked = with_month_rank(df)
    fit = ranked.filter(pl.col("month_rank") > origin).drop("month_rank")
    holdout = ranked.filter(pl.col("month_rank") == origin).drop("month_rank")
    if fit.is_empty() or holdout.is_empty():
        raise ValueError(f"no data for backtest origin {origin}")
    return fit, holdout


def validation_folds(
    df: pl.DataFrame, n_months: int, n_folds: int
) -> list[tuple[pl.DataFrame, pl.DataFrame]]:
    """Time-ordered folds: fold k validates on the k-th last block of ``n_months`` target months of each
    source and fits on every earlier row. Fold 1 is the most recent."""
    ranked = with_month_rank(df)
    folds = []
    for k in range(1, n_folds + 1):
        fit = ranked.filter(pl.col("month_rank") > k * n_months).drop("month_rank")
        val = ranked.filter(pl.col("month_rank").is_between((k - 1) * n_months + 1, k * n_months)).drop(
            "month_rank"
        )
        if fit.is_empty() or val.is_empty():
            raise ValueError(f"not enough months for {n_folds} validation folds of {n_months} months")
        folds.append((fit, val))
    return folds
