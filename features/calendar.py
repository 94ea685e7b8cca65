"""Reporting calendars: how many weeks of sales a source's "month" holds.

The ERP reports calendar months (28–31 days). Market-research vendors report retail periods: quarters of
13 weeks split 4-4-5 (TeInvento), 4-5-4 or 5-4-4, so one month in three holds five weeks and, for flat demand,
reports ~25 % more than its neighbours. The calendar is a property of the source (``features.settings``:
``TAMALES_CALENDAR_ERP``, ``TAMALES_CALENDAR_TEINVENTO``); both the sample generator and the features use it.

A period's length is expressed in weeks for every calendar (a calendar month is ``days / 7`` weeks), so sales
per week compare like with like whatever the source. The 53rd week that a retail year gets every five or six
years is not modelled (the vendor's files do not say which year carries it).
"""

from __future__ import annotations

import calendar as _stdlib_calendar
from typing import Literal

import polars as pl

Calendar = Literal["month", "4-4-5", "4-5-4", "5-4-4"]
CALENDARS: tuple[Calendar, ...] = ("month", "4-4-5", "4-5-4", "5-4-4")


def _pattern(kind: Calendar) -> tuple[int, int, int]:
    a, b, c = (int(part) for part in kind.split("-"))
    return a, b, c


def period_weeks(year: int, month: int, kind: Calendar) -> float:
    """Weeks of sales in the reporting period ``year``-``month`` under calendar ``kind``."""
    if kind not in CALENDARS:
        raise ValueError(f"unknown calendar {kind!r}; expected one of {CALENDARS}")
    if kind == "month":
        return _stdlib_calendar.monthrange(year, month)[1] / 7.0
    return float(_pattern(kind)[(month - 1) % 3])


def weeks_expr(date: pl.Expr, kind: Calendar) -> pl.Expr:
    """``period_weeks`` as a polars expression over a column of first-of-month dates (Float64)."""
    if kind not in CALENDARS:
        raise ValueError(f"unknown calendar {kind!r}; expected one of {CALENDARS}")
    if kind == "month":
        return date.dt.month_end().dt.day().cast(pl.Float64) / 7.0
    a, b, c = _pattern(kind)
    position = (date.dt.month().cast(pl.Int32) - 1) % 3
    return pl.when(position == 0).then(float(a)).when(position == 1).then(float(b)).otherwise(float(c))


def has_period_cycle(kind: Calendar) -> bool:
    """True for retail calendars, whose 4/5-week pattern repeats every 3 months."""
    return kind != "month"
