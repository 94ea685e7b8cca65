"""The planner baselines' per-origin statsforecast cache: same numbers, and a later delivery refits only new origins."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

from training import reference


def _series(months: int) -> pl.DataFrame:
    start = dt.date(2018, 1, 1)
    dates = pl.date_range(
        start, dt.date(2018 + (months - 1) // 12, (months - 1) % 12 + 1, 1), "1mo", eager=True
    )
    frames = []
    for pid, level in (("1", 100.0), ("2", 5000.0)):
        noise = np.random.default_rng(int(pid)).lognormal(0, 0.05, 48)[:months]  # same past for any length
        season = 1 + 0.2 * np.sin(np.arange(months) * 2 * np.pi / 12)
        frames.append(
            pl.DataFrame(
                {
                    "source": "erp",
                    "id_product": pid,
                    "year_month": dates,
                    "total_sales": level * season * noise,
                }
            )
        )
    return pl.concat(frames)


def _origins(last: dt.date, n: int) -> dict[str, list[dt.date]]:
    months = pl.date_range(dt.date(2000, 1, 1), last, "1mo", eager=True).to_list()[-n:]
    return {"erp": months}


def test_cached_forecasts_equal_fresh_ones_and_a_later_delivery_refits_only_the_new_origin(tmp_path):
    series, origins = _series(30), _origins(dt.date(2020, 6, 1), 3)
    fresh = reference.statistical_forecasts(series, origins, {})
    cached = reference.statistical_forecasts(series, origins, {}, cache=tmp_path)
    assert_frame_equal(fresh, cached)
    assert set(fresh.columns) >= set(reference.STATISTICAL) and fresh.height == 2 * 3
    files = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.parquet")}
    assert len(files) == 3

    # A month later: one more month of actuals, the origins move by one.
    later = reference.statistical_forecasts(_series(31), _origins(dt.date(2020, 7, 1), 3), {}, cache=tmp_path)
    after = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.parquet")}
    assert len(after) == 4 and all(after[name] == mtime for name, mtime in files.items())
    shared = later.filter(pl.col("target_month") < dt.date(2020, 7, 1))
    assert_frame_equal(shared, fresh.filter(pl.col("target_month") > dt.date(2020, 4, 1)))
