"""Training data: the feature table of a published data version.

Model inputs come only from ``features.schema.to_model_matrix`` (``training.model``); nothing here names a
feature.
"""

from __future__ import annotations

import polars as pl

from features import dataset
from features.schema import KEY_COLUMNS
from features.settings import Settings


def load_rows(version: str, settings: Settings | None = None) -> pl.DataFrame:
    """Every feature row of a data version (labelled or not), in key order."""
    rows = dataset.read_features(version, settings)
    if rows.filter(pl.col("target").is_not_null()).is_empty():
        raise ValueError(f"data version {version} has no rows with a known target")
    return rows.sort(KEY_COLUMNS)
