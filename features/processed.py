"""The processed bucket's layout: ``<processed_url>/<version>/{train_set,test_set}/*.parquet``.

Each version directory also holds ``data_quality.json`` and a ``_SUCCESS`` marker (written last). The
``LATEST`` object at the bucket root names the newest published version. ``<version>`` is derived from the
input deliveries' fingerprints, so the same input always lands in the same version.
"""

from __future__ import annotations

import io
import json
from typing import Literal, cast

import polars as pl
import pyarrow.parquet as pq

from features import storage
from features.settings import Settings, get_settings

SplitName = Literal["train_set", "test_set"]
LATEST_POINTER = "LATEST"
QUALITY_REPORT = "data_quality.json"


def version_url(version: str, settings: Settings | None = None) -> str:
    """URL of a version directory in the processed bucket."""
    settings = settings or get_settings()
    return storage.join(settings.processed_url, version)


def split_url(version: str, split: SplitName, settings: Settings | None = None) -> str:
    """URL of the train or test folder of a version."""
    return storage.join(version_url(version, settings), split)


def latest_version(settings: Settings | None = None) -> str:
    """The newest published version (from ``LATEST``); raises FileNotFoundError when none was published."""
    settings = settings or get_settings()
    url = storage.join(settings.processed_url, LATEST_POINTER)
    if not storage.exists(url, settings):
        raise FileNotFoundError(
            f"no processed data version under {settings.processed_url}: run the features flow"
        )
    return storage.read_bytes(url, settings).decode().strip()


def read_split(version: str, split: SplitName, settings: Settings | None = None) -> pl.DataFrame:
    """Read a published split as a polars frame (raises if the version was never completely published)."""
    settings = settings or get_settings()
    root = version_url(version, settings)
    if not storage.is_published(root, settings):
        raise FileNotFoundError(f"version {version} is not (completely) published at {root}")
    fs = storage.filesystem(root, settings)
    folder = storage.fs_path(split_url(version, split, settings))
    frames = []
    for path in sorted(p for p in fs.ls(folder, detail=False) if p.endswith(".parquet")):
        with fs.open(path, "rb") as handle:
            frames.append(cast(pl.DataFrame, pl.from_arrow(pq.read_table(io.BytesIO(handle.read())))))
    if not frames:
        raise FileNotFoundError(f"no parquet files in {folder}")
    return pl.concat(frames, how="vertical")


def read_quality_report(version: str, settings: Settings | None = None) -> dict:
    """The data-quality report published with a version."""
    url = storage.join(version_url(version, settings), QUALITY_REPORT)
    return json.loads(storage.read_bytes(url, settings))
