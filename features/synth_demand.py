"""The sample generator's demand model: named profiles of phenomena and the monthly sales they produce.

A product's demand is a *weekly rate*; a source reports ``rate x weeks in the period`` under its reporting
calendar (``features.calendar``: calendar months for the ERP, 4-4-5 retail periods for the market vendor by
default), so the market source's every third month is ~25 % above its neighbours for flat demand. The rate is

    log rate = log level + yearly season + trend + shock + source-wide noise + product noise (AR(1))

Every phenomenon is a ``Profile`` parameter:

- ``levels``: monthly volume range per source (log10, spread evenly over the products);
- ``season_amplitude``: yearly cycle (peaks in February, Candelaria, and December), weak by default;
- ``trend``: per-product drift of the log rate per month;
- ``noise_ar``: month-to-month persistence of the products' noise; ``common_noise_sd``: a source-wide
  monthly factor;
- ``shock_month`` / ``shock_depth`` / ``shock_sensitivity`` / ``shock_recovery_months`` / ``shock_permanent``:
  a demand shock hitting every product of both sources at once (each with its own sensitivity), then partly
  recovering (exponentially, with ``shock_permanent`` of the drop never recovering);
- per source (``SourceShape``): history length and end, calendar, heteroscedastic noise (``noise_sd`` at 10 and
  at 2e7 units a month: larger for small products), products launched during the history (with a
  ramp-up), brand-new products with 1–2 months of history, discontinued products, tiny intermittent products
  (Poisson sales, frequent zeros) and the share of product-months without a report (``missing_rate``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from features.calendar import Calendar, period_weeks

# Log seasonal shape by month of year (index 0 = Jan), unit peak: Candelaria (Feb) and December.
SEASON = np.array([0.1, 0.8, 0.0, -0.2, -0.3, -0.5, -0.5, -0.4, -0.2, 0.0, 0.3, 1.0])
LAUNCH_RAMP = (0.35, 0.65, 0.85)  # share of the mature level in a launched product's first months


@dataclass(frozen=True)
class SourceShape:
    """Size, history and product mix of one source's delivery."""

    products: int
    months: int
    last_month: int  # year * 12 + month - 1 of the last reported month (of the full, uncut history)
    delivery_day: int  # the delivery folder is dated this day of the month after the last reported one
    calendar: Calendar
    levels: tuple[float, float]  # log10 of the monthly volume of the smallest and the largest product
    noise_sd: tuple[float, float] = (0.35, 0.06)  # log-sd of the noise at 10 and at 2e7 units a month
    launches: int = 0  # products launched during the history
    new_products: int = 0  # products with 1-2 months of history at the end
    discontinued: int = 0  # products that stop selling 2-4 months before the end
    intermittent: int = 0  # tiny products with Poisson sales (mean 1-6 units a month)
    missing_rate: float = 0.0  # share of product-months without a report
    cut: int = 0  # months of the full history not delivered yet (``Profile.cut``)

    @property
    def delivery(self) -> str:
        """``YYYYMMDD`` folder of this delivery: ``delivery_day`` of the month after its last month."""
        after = self.last_month - self.cut + 1
        return f"{after // 12:04d}{after % 12 + 1:02d}{self.delivery_day:02d}"


@dataclass(frozen=True)
class Profile:
    """Every phenomenon of the sample data, as parameters (see module docstring)."""

    name: str
    erp: SourceShape
    teinvento: SourceShape
    season_amplitude: tuple[float, float] = (0.05, 0.2)
    trend: tuple[float, float] = (-0.01, 0.015)
    noise_ar: float = 0.5
    common_noise_sd: float = 0.03
    shock_month: int | None = None
    shock_depth: float = 0.0
    shock_sensitivity: tuple[float, float] = (0.3, 1.6)
    shock_recovery_months: float = 3.0
    shock_permanent: float = 0.4

    def sized(self, products: int | None = None, months: int | None = None) -> Profile:
        """This profile with ``products`` per source and ``months`` of ERP history (the vendor keeps its
        extra months); None keeps the profile's own."""
        erp, tei = self.erp, self.teinvento
        if products is not None:
            erp, tei = replace(erp, products=products), replace(tei, products=products)
        if months is not None:
            tei = replace(tei, months=months + tei.months - erp.months)
            erp = replace(erp, months=months)
        return replace(self, erp=erp, teinvento=tei)

    def cut(self, months: int) -> Profile:
        """This profile delivered ``months`` months earlier (same history, last months not there yet)."""
        if months < 0:
            raise ValueError("cut must be >= 0")
        return replace(self, erp=replace(self.erp, cut=months), teinvento=replace(self.teinvento, cut=months))


def _ym(year: int, month: int) -> int:
    return year * 12 + month - 1


PROFILES: dict[str, Profile] = {
    # What the company's deliveries look like (issue #10): short histories ending in 2020, a 4-4-5 market
    # vendor, the pandemic shock from March 2020, few series from a handful of units to 2e7 a month.
    "realistic": Profile(
        name="realistic",
        erp=SourceShape(
            products=6, months=20, last_month=_ym(2020, 8), delivery_day=14, calendar="month",
            levels=(3.3, 6.6), noise_sd=(0.15, 0.04), launches=1, new_products=1, discontinued=1,
            missing_rate=0.02,
        ),
        teinvento=SourceShape(
            products=12, months=29, last_month=_ym(2020, 5), delivery_day=22, calendar="4-4-5",
            levels=(2.0, 7.3), noise_sd=(0.35, 0.04), launches=1, new_products=1, discontinued=1, intermittent=2, missing_rate=0.03,
        ),
        shock_month=_ym(2020, 3),
        shock_depth=0.35,
    ),
    # Clean, long, strongly seasonal series without shocks or odd products: a smoke-test profile.
    "easy": Profile(
        name="easy",
        erp=SourceShape(
            products=12, months=20, last_month=_ym(2025, 1), delivery_day=14, calendar="month",
            levels=(3.0, 7.3), noise_sd=(0.05, 0.05), launches=1,
        ),
        teinvento=SourceShape(
            products=12, months=29, last_month=_ym(2024, 1), delivery_day=20, calendar="4-4-5",
            levels=(3.0, 7.3), noise_sd=(0.05, 0.05), missing_rate=0.03,
        ),
        season_amplitude=(0.2, 0.4),
        trend=(-0.008, 0.02),
        common_noise_sd=0.0,
    ),
}  # fmt: skip
DEFAULT_PROFILE = "realistic"


def month_index(shape: SourceShape) -> np.ndarray:
    """Absolute month numbers (year * 12 + month - 1) of a source's history, oldest first."""
    return np.arange(shape.last_month - shape.months + 1, shape.last_month + 1)


def _roles(shape: SourceShape) -> dict[str, list[int]]:
    """Which products are odd: taken from the end so that product 0 (the API example) stays a plain one."""
    order = list(range(shape.products - 1, 0, -1))
    roles = {}
    for role in ("new_products", "discontinued", "launches", "intermittent"):
        n = getattr(shape, role)
        roles[role], order = order[:n], order[n:]
    return roles


def _shock(profile: Profile, rng: np.random.Generator, months: np.ndarray, n: int) -> np.ndarray:
    """(n, m) log effect of the common shock: a drop at ``shock_month`` that partly recovers."""
    if profile.shock_month is None or profile.shock_depth == 0:
        return np.zeros((n, len(months)))
    sensitivity = rng.uniform(*profile.shock_sensitivity, (n, 1))
    since = (months - profile.shock_month)[None, :]
    keep = profile.shock_permanent + (1 - profile.shock_permanent) * np.exp(
        -np.clip(since, 0, None) / profile.shock_recovery_months
    )
    return np.where(since >= 0, -profile.shock_depth * sensitivity * keep, 0.0)


def _noise(
    profile: Profile, shape: SourceShape, rng: np.random.Generator, log_level: np.ndarray, m: int
) -> np.ndarray:
    """(n, m) AR(1) log noise whose scale shrinks with the product's level (heteroscedastic)."""
    small, large = shape.noise_sd
    position = np.clip((log_level - np.log(10.0)) / (np.log(2e7) - np.log(10.0)), 0, 1)
    sd = (small + (large - small) * position)[:, None]
    shocks, noise = rng.normal(0.0, 1.0, (len(log_level), m)) * sd, np.zeros((len(log_level), m))
    for t in range(m):
        noise[:, t] = shocks[:, t] + (profile.noise_ar * noise[:, t - 1] if t else 0.0)
    return noise * np.sqrt(1 - profile.noise_ar**2)  # stationary sd = sd


def monthly_sales(profile: Profile, shape: SourceShape, rng: np.random.Generator) -> np.ndarray:
    """(products, months) sales of one source; NaN before a product's launch and after it was discontinued.

    Months without a report (``shape.missing_rate``) are left to the writers: a source marks them its own way.
    """
    n, months = shape.products, month_index(shape)
    m, roles = len(months), _roles(shape)
    lo, hi = shape.levels
    log10_monthly = lo + (hi - lo) * (rng.permutation(n) + rng.uniform(0, 1, n)) / n
    odd = roles["new_products"] + roles["launches"] + roles["discontinued"]
    # Launched and discontinued products sell less than the established ones: at most the median level.
    log10_monthly[odd] = np.minimum(
        log10_monthly[odd], np.median(log10_monthly) - rng.uniform(0, 0.5, len(odd))
    )
    log10_monthly[roles["intermittent"]] = rng.uniform(0.0, 0.8, len(roles["intermittent"]))
    log_level = np.log(10**log10_monthly / (52 / 12))  # weekly rate of an average month
    amplitude = rng.uniform(*profile.season_amplitude, (n, 1))
    growth = rng.uniform(*profile.trend, (n, 1))
    common = rng.normal(0.0, profile.common_noise_sd, (1, m))
    log_rate = (
        log_level[:, None]
        + amplitude * SEASON[months % 12]
        + growth * (np.arange(m) - (m - 1) / 2)
        + _shock(profile, rng, months, n)
        + common
        + _noise(profile, shape, rng, log_level, m)
    )
    weeks = np.array([period_weeks(int(t // 12), int(t % 12) + 1, shape.calendar) for t in months])
    sales = np.exp(log_rate) * weeks
    for p in roles["intermittent"]:
        sales[p] = rng.poisson(sales[p]).astype(float)
    for p in roles["launches"]:
        start = int(rng.integers(m // 4, m // 2))
        sales[p, :start] = np.nan
        ramp = LAUNCH_RAMP[: m - start]
        sales[p, start : start + len(ramp)] *= ramp
    for p in roles["new_products"]:
        start = m - int(rng.integers(1, 3))
        sales[p, :start] = np.nan
        sales[p, start:] *= LAUNCH_RAMP[: m - start]
    for p in roles["discontinued"]:
        sales[p, m - int(rng.integers(2, 5)) :] = np.nan
    return sales
