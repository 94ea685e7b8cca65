"""What a planner would forecast instead: naive rules and statsforecast models, on the backtest's origins.

For each (source, origin month *T*) every series is forecast from its monthly totals before *T*:

- ``last_value``, ``mean_3`` (mean of the last 3 months), ``seasonal_naive`` (the month a year before *T*,
  else the last value) — read off the feature row whose target is *T* (its lags count from *T*);
- statsforecast's ``AutoETS``, ``AutoTheta`` and ``AutoARIMA`` with the yearly season (12) and, for a source
  with a retail calendar, its 3-month period cycle (``(cycle)``; the same as ``(12)`` for calendar months):
  a planner's default setup, ``n_jobs=1``, with ``Naive`` as statsforecast's fallback for series too short
  for a model. Inner gaps are filled by linear interpolation, leading gaps dropped (a planner must do
  something; this is the most common choice).

Each origin's statsforecast fit depends only on the series before it, so it is cached on disk (state dir)
by a digest of that history: a retrain on the same data, or on a delivery a month later, refits only what is
new.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl

from features.calendar import Calendar, has_period_cycle
from features.settings import Settings, get_settings

NAIVE = ("last_value", "mean_3", "seasonal_naive")
STAT_MODELS = ("AutoETS", "AutoTheta", "AutoARIMA")
SEASONS = ("12", "cycle")
STATISTICAL = tuple(f"{m}({s})" for m in STAT_MODELS for s in SEASONS)
BASELINES = (*NAIVE, *STATISTICAL)
CACHE_VERSION = "2"


def naive_forecasts(holdout: pl.DataFrame) -> pl.DataFrame:
    """The naive rules for feature rows (keys + ``last_value``, ``mean_3``, ``seasonal_naive``)."""
    last = pl.col("lag_1")
    return holdout.select(
        "source",
        "id_product",
        "target_month",
        last_value=last,
        mean_3=pl.col("rolling_mean_3").fill_null(last),
        seasonal_naive=pl.col("lag_12").fill_null(last),
    ).with_columns(pl.col(*NAIVE).cast(pl.Float64).fill_null(0.0).fill_nan(0.0))


def _history(series: pl.DataFrame, month: dt.date) -> dict[str, np.ndarray]:
    """Gap-filled monthly totals of every series before ``month`` (series with no value left out)."""
    out = {}
    for (pid,), part in series.filter(pl.col("year_month") < month).group_by("id_product"):
        values = part.sort("year_month")["total_sales"].cast(pl.Float64).fill_nan(None).to_numpy()
        known = np.flatnonzero(np.isfinite(values))
        if len(known) == 0:
            continue
        values = values[known[0] :]
        x = np.arange(len(values))
        ok = np.isfinite(values)
        out[str(pid)] = np.interp(x, x[ok], values[ok])
    return out


def _fit_forecast(history: dict[str, np.ndarray], month: dt.date, season: int) -> dict[str, np.ndarray]:
    """name -> forecasts (aligned to sorted ids) of the three models with ``season``, for ``month``."""
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta, Naive

    ids = sorted(history)
    frames = []
    for pid in ids:
        ds = pd.date_range(
            end=pd.Timestamp(month) - pd.DateOffset(months=1), periods=len(history[pid]), freq="MS"
        )
        frames.append(pd.DataFrame({"unique_id": pid, "ds": ds, "y": history[pid]}))
    models = [AutoETS(season_length=season), AutoTheta(season_length=season), AutoARIMA(season_length=season)]
    engine = StatsForecast(models=models, freq="MS", n_jobs=1, fallback_model=Naive())
    with warnings.catch_warnings():  # numpy warnings from short series, which the fallback then handles
        warnings.simplefilter("ignore", RuntimeWarning)
        fc = engine.forecast(df=pd.concat(frames, ignore_index=True), h=1).set_index("unique_id").loc[ids]
    return {name: np.clip(fc[name].to_numpy(dtype=float), 0.0, None) for name in STAT_MODELS}


def _digest(history: dict[str, np.ndarray], month: dt.date, cycle: int) -> str:
    """Content digest of one origin's fit: the histories before it, its month and the season cycle."""
    import statsforecast

    digest = hashlib.sha256(f"{CACHE_VERSION}|{statsforecast.__version__}|{month}|{cycle}".encode())
    for pid in sorted(history):
        digest.update(pid.encode() + b"\0" + history[pid].astype(np.float64).tobytes() + b"\0")
    return digest.hexdigest()[:24]


def _origin_forecasts(
    source: str, month: dt.date, history: dict[str, np.ndarray], cycle: int
) -> pl.DataFrame:
    """One origin's statistical forecasts, one row per series with history."""
    by_season = {"12": _fit_forecast(history, month, 12)}
    by_season["cycle"] = by_season["12"] if cycle == 12 else _fit_forecast(history, month, cycle)
    frame: dict[str, object] = {"source": source, "id_product": sorted(history), "target_month": month}
    frame |= {f"{m}({s})": by_season[s][m] for m in STAT_MODELS for s in SEASONS}
    return pl.DataFrame(frame)


def _cached_origin(
    cache: Path, source: str, month: dt.date, history: dict[str, np.ndarray], cycle: int
) -> pl.DataFrame:
    """``_origin_forecasts`` read from / written to ``cache/<digest>.parquet`` (atomic replace)."""
    path = cache / f"{_digest(history, month, cycle)}.parquet"
    if path.is_file():
        return pl.read_parquet(path)
    result = _origin_forecasts(source, month, history, cycle)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(f"{path}.{os.getpid()}.tmp")
    result.write_parquet(tmp)
    os.replace(tmp, path)
    return result


def statistical_forecasts(
    series: pl.DataFrame,
    origins: Mapping[str, list[dt.date]],
    calendars: Mapping[str, Calendar],
    cache: Path | None = None,
) -> pl.DataFrame:
    """statsforecast forecasts: one row per (source, id_product, target_month) of the origins, one column per
    name of ``STATISTICAL``. ``series`` holds ``source, id_product, year_month, total_sales``.

    With ``cache``, each origin's fit is kept under its content digest: a fit depends only on the months before
    its origin, so a delivery a month later re-fits only the new origin."""
    rows = []
    for source, months in origins.items():
        cycle = 3 if has_period_cycle(calendars.get(source, "month")) else 12
        own = series.filter(pl.col("source") == source)
        for month in months:
            history = _history(own, month)
            if not history:
                continue
            if cache is None:
                rows.append(_origin_forecasts(source, month, history, cycle))
            else:
                rows.append(_cached_origin(cache, source, month, history, cycle))
    return pl.concat(rows) if rows else pl.DataFrame()


def cached_statistical_forecasts(
    series: pl.DataFrame,
    origins: Mapping[str, list[dt.date]],
    calendars: Mapping[str, Calendar],
    settings: Settings | None = None,
) -> pl.DataFrame:
    """``statistical_forecasts`` with the per-origin cache in ``<state dir>/cache/reference``.

    statsforecast 2.x fits these models in its compiled core (no numba function is compiled for them); its
    numba cache is still pointed at the state dir, in case a version does compile some."""
    settings = settings or get_settings()
    cache = settings.state_dir.resolve() / "cache"
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache / "numba"))
    os.environ.setdefault("NIXTLA_NUMBA_CACHE", "1")
    return statistical_forecasts(series, origins, calendars, cache=cache / "reference")


def baseline_forecasts(
    rows: pl.DataFrame, origins: Mapping[str, list[dt.date]], calendars: Mapping[str, Calendar]
) -> pl.DataFrame:
    """Every baseline of ``BASELINES`` for the labelled rows at the origins (keys + one column each)."""
    holdout = pl.concat(
        [
            rows.filter(
                (pl.col("source") == s) & pl.col("target_month").is_in(ms) & pl.col("target").is_not_null()
            )
            for s, ms in origins.items()
        ]
    )
    naive = naive_forecasts(holdout)
    series = rows.select("source", "id_product", "year_month", "total_sales")
    stats = cached_statistical_forecasts(series, origins, calendars)
    keys = ["source", "id_product", "target_month"]
    joined = naive.join(stats, on=keys, how="left") if not stats.is_empty() else naive
    # A series with no value before the origin has no statistical forecast: use the naive last value (0).
    return joined.with_columns(
        pl.col(name).fill_null(pl.col("last_value"))
        if name in joined.columns
        else pl.col("last_value").alias(name)
        for name in STATISTICAL
    )
