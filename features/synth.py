"""Sample raw deliveries of both sources in the exact raw layout, with every known quirk; deterministic by seed.

Demand comes from ``features.synth_demand`` (named profiles: ``realistic``, the default, and ``easy``), split
over regions and calorie categories. ERP: each (month, region, product, category) nets ~``fragments`` shuffled
rows (~40 % float residue such as ``6.16E-14``, exact ``0``, returns that the positive rows outweigh), Java
``Double.toString`` floats, an editor lock file, a code under two categories, non-numeric and zero-led codes.
TeInvento (longer history, ends earlier): Spark part files with skipped numbers and markers, ``""`` for
missing sales, an unnamed product, a region named ``""`` that facts reference, accents, a quoted name.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl

from features.raw_layout import ERP_REGION_FOLDERS, ERP_ROOT, MONTHS, TEINVENTO_ROOT
from features.synth_demand import DEFAULT_PROFILE, PROFILES, Profile, month_index, monthly_sales

DOC_PRODUCT = "206050084"  # the product id of the API contract's example
REGIONS = tuple(ERP_REGION_FOLDERS.values())
P_KIND = (0.41, 0.05, 0.02, 0.52)  # fragment kinds: residue, exact zero, return, positive
FLAVORS = {"Tamal mix": ("Dulce", "Mole", "Verde"), "Atole mix": ("Cajeta", "Arroz", "Chocolate")}
LOCK_FILE = "csv/E._Privados/.~lock.ventas_mensuales_E._Privados.csv#"
TEI_NAMES = (
    ("Tamal de Mole", "Doña Chonita"), ("Atole de Piña", "La Piñata"), ("Tamal Verde", "Tamalitos doña Mari"),
    ("Champurrado", "Abuelita Rosa"), ("Tamal de Rajas", "El Jarocho"), ("Atole de Arroz", "Mamá Lucha"),
    ("Tamal Oaxaqueño", "Sabor de Oaxaca"), ("Atole de Cajeta", "Dulcería Celaya"),
)  # fmt: skip


@dataclass(frozen=True)
class SynthSummary:
    """What ``generate`` wrote; ``rows`` is keyed by ``raw_layout`` table kind, the others by source."""

    out: str
    deliveries: dict[str, str]
    rows: dict[str, int]
    products: dict[str, int]
    months: dict[str, int]
    data_files: int
    other_files: int
    bytes: int


def java_double(x: float) -> str:
    """Java's ``Double.toString`` of a finite float (shortest digits; scientific outside [1e-3, 1e7))."""
    if x == 0:
        return "0.0"
    sign, digits, exponent = Decimal(repr(x)).as_tuple()
    exp10 = len(digits) + int(exponent) - 1
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    if not -3 <= exp10 < 7:
        return f"{'-' * sign}{ds[0]}.{ds[1:] or '0'}E{exp10}"
    if exp10 >= 0:
        return f"{'-' * sign}{ds[: exp10 + 1].ljust(exp10 + 1, '0')}.{ds[exp10 + 1 :] or '0'}"
    return f"{'-' * sign}0.{'0' * (-exp10 - 1)}{ds}"


def _java_cents(cents: pl.Expr) -> pl.Expr:
    """``java_double(cents / 100)`` vectorised, for integer cents (exact zero written as ``0``)."""
    a, sign = cents.abs(), pl.when(cents < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    frac = (a % 100).cast(pl.String).str.zfill(2).str.strip_chars_end("0")
    frac = pl.when(frac == "").then(pl.lit("0")).otherwise(frac)
    digits = a.cast(pl.String)
    stripped = digits.str.strip_chars_end("0")
    tail = pl.when(stripped.str.len_chars() == 1).then(pl.lit("0")).otherwise(stripped.str.slice(1))
    exp10 = (digits.str.len_chars() - 3).cast(pl.String)
    sci = pl.concat_str(sign, stripped.str.slice(0, 1), pl.lit("."), tail, pl.lit("E"), exp10)
    plain = pl.concat_str(sign, (a // 100).cast(pl.String), pl.lit("."), frac)
    return pl.when(a == 0).then(pl.lit("0")).when(a >= 10**9).then(sci).otherwise(plain)


def _erp_series(rng: np.random.Generator, level: np.ndarray) -> tuple[list[dict], np.ndarray]:
    """One dict per (product, region, category) series and its share of the product's sales."""
    products, top = len(level), int(np.argmax(level))  # the top product sells in one region (E7 values)
    codes, series, shares = [DOC_PRODUCT], [], []
    while len(codes) < products:
        if len(codes) == 2:  # a leading zero: the code is a string, never a number
            code = f"{rng.integers(10**7, 10**8):09d}"
        elif len(codes) % 2:
            code = "".join(rng.choice(list("ABCDEFGHJKLMNPRSTUVWXYZ"), 4)) + f"{rng.integers(0, 10**6):06d}"
        else:
            code = str(rng.integers(10**8, 10**9))
        codes += [code] if code not in codes else []
    for p, code in enumerate(codes):
        name = "Atole mix" if p % 3 == 2 else "Tamal mix"
        flavor = str(rng.choice(FLAVORS[name]))
        n_regions = 1 if p == top else 4 if p == 0 else int(rng.integers(1, 5))
        regions = sorted(rng.choice(4, n_regions, replace=False))
        region_share, regular = rng.dirichlet(np.full(len(regions), 3.0)), rng.uniform(0.55, 0.8)
        cats = {"Regular": regular, "Low-Calorie": 1 - regular} if p % 4 == 1 else {"Regular": 1.0}
        for r, r_share in zip(regions, region_share, strict=True):
            for cat, c_share in cats.items():
                series.append(dict(p=p, code=code, name=name, flavor=flavor, zone=REGIONS[r], cat=cat))
                shares.append(r_share * c_share)
    return series, np.asarray(shares)


def _erp_fragments(rng: np.random.Generator, value: np.ndarray, launched: np.ndarray, fragments: int):
    """Fragment rows of every launched series-month: (series, month position, cents, residue code or -1)."""
    sm_series, sm_month = np.nonzero(launched)
    target = np.maximum(np.rint(value[sm_series, sm_month] * 100), 1).astype(np.int64)
    n_frag = rng.integers(max(1, fragments // 2), fragments + fragments // 2 + 1, len(sm_series))
    group = np.repeat(np.arange(len(sm_series)), n_frag)
    first = np.concatenate([[0], np.cumsum(n_frag)[:-1]])
    kind = rng.choice(4, len(group), p=P_KIND)
    kind[first] = 3  # every series-month has a positive "main booking" fragment
    cents = np.zeros(len(group), dtype=np.int64)
    is_ret, is_pos = kind == 2, kind == 3
    cap = np.minimum(target[group[is_ret]] * 0.05, 400_000)  # returns: up to 5 % of the month, <= 4000
    cents[is_ret] = -np.maximum(np.rint(rng.uniform(0.05, 1.0, is_ret.sum()) * cap), 1).astype(np.int64)
    positive = target - np.bincount(group, weights=cents, minlength=len(target)).astype(np.int64)
    weight = np.where(is_pos, rng.lognormal(0.0, 1.0, len(group)), 0.0)
    weight[first] = 0.0
    weight[first] = np.maximum(np.bincount(group, weights=weight), 1.0) * rng.uniform(1, 3, len(first))
    share = weight / np.bincount(group, weights=weight)[group]
    cents[is_pos] = np.floor(share[is_pos] * positive[group[is_pos]]).astype(np.int64)
    cents[first] += target - np.bincount(group, weights=cents).astype(np.int64)  # nets to the target exactly
    residue = np.where(kind == 0, rng.integers(0, 5400, len(group)), -1)
    order = rng.permutation(len(group))
    return sm_series[group][order], sm_month[group][order], cents[order], residue[order]


def _write_erp(root: Path, rng: np.random.Generator, profile: Profile, fragments: int) -> int:
    """ERP delivery: one shuffled fragment CSV per region folder plus a lock file; returns the row count."""
    shape = profile.erp
    sales = monthly_sales(profile, shape, rng)
    series, share = _erp_series(rng, np.nanmean(sales, axis=1))
    month_idx = month_index(shape)
    product = np.array([s["p"] for s in series])
    value = sales[product] * share[:, None]
    missing = (rng.random(sales.shape) < shape.missing_rate) & (np.arange(shape.products) > 0)[:, None]
    launched = np.isfinite(value) & ~missing[product]  # a month without a report has no rows at all
    keep = shape.months - shape.cut  # a cut delivery: the same history, without its last months
    value, launched, month_idx = value[:, :keep], launched[:, :keep], month_idx[:keep]
    s_of, m_of, cents, residue = _erp_fragments(rng, value, launched, fragments)
    zone = np.array([REGIONS.index(s["zone"]) for s in series])[s_of]
    # float residue such as 6.16E-14: sign x 3 digits x exponent 13..15, indexed by the residue code
    mantissas = (*range(-999, -99), *range(100, 1000))
    residues = pl.Series([java_double(float(f"{m}e-{e}")) for m in mantissas for e in (15, 16, 17)])
    residue_s = pl.lit(residues).gather(pl.col("r").clip(0))
    sales_expr = pl.when(pl.col("r") < 0).then(_java_cents(pl.col("c"))).otherwise(residue_s).alias("sales")
    attr = {k: pl.Series([s[k] for s in series]) for k in ("cat", "flavor", "zone", "code", "name")}
    for r, folder in enumerate(ERP_REGION_FOLDERS):
        i = np.nonzero(zone == r)[0]
        frame = pl.DataFrame({"s": s_of[i], "m": month_idx[m_of[i]], "c": cents[i], "r": residue[i]})
        table = frame.select(
            (pl.col("m") // 12).alias("year"),
            pl.lit(pl.Series(MONTHS)).gather(pl.col("m") % 12).alias("month"),
            pl.lit("Mexico").alias("country"),
            *(pl.lit(attr[k]).gather(pl.col("s")).alias(k) for k in attr),
            sales_expr,
        )
        path = root / ERP_ROOT / shape.delivery / "csv" / folder / f"ventas_mensuales_{folder}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        table.write_csv(path, include_header=False)
    lock = ",ana.lopez,ERP-PC07,14.02.2025 08:41,file:///home/ana.lopez/.config/libreoffice/4;\n"
    (root / ERP_ROOT / shape.delivery / LOCK_FILE).write_text(lock, encoding="utf-8")
    return len(s_of)


def _csv_line(fields: list[str]) -> str:
    """CSV quoting only where needed; empty strings as ``""`` (as the TeInvento export writes them)."""
    quoted = [
        '"' + f.replace('"', '""') + '"' if f == "" or any(c in f for c in ',"\n\r') else f for f in fields
    ]
    return ",".join(quoted) + "\n"


def _spark_ids(rng: np.random.Generator, n: int) -> list[int]:
    """Ids as Spark's monotonically_increasing_id makes them: partition << 33 plus a row number."""
    partitions = rng.choice(np.arange(1, 4 * n + 60), n, replace=False)
    return [int(p) << 33 | int(rng.integers(0, 4)) for p in partitions]


def _write_spark(folder: Path, lines: list[str], rng: np.random.Generator, parts: int) -> None:
    """A Spark output folder: shuffled rows in part files numbered with gaps, plus the job's marker files."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [lines[i] for i in rng.permutation(len(lines))]
    tid, job = int(rng.integers(10**18, 9 * 10**18)), uuid.UUID(bytes=rng.bytes(16), version=4)
    numbers = np.cumsum([0, rng.integers(2, 4), *rng.integers(1, 4, max(parts - 2, 0))])
    cuts = np.sort(rng.choice(np.arange(1, len(lines)), min(parts, len(lines)) - 1, replace=False))
    names = []
    for number, chunk in zip(numbers, np.split(np.arange(len(lines)), cuts), strict=False):
        names.append(f"part-{number:05d}-tid-{tid}-{job}-{int(rng.integers(100, 9999))}-1-c000.csv")
        (folder / names[-1]).write_text("".join(lines[i] for i in chunk), encoding="utf-8")
    committed = json.dumps({"added": names, "removed": []}, separators=(",", ":"))
    (folder / f"_committed_{tid}").write_text(committed)
    for marker in (f"_started_{tid}", "_SUCCESS"):
        (folder / marker).write_bytes(b"")


def _write_teinvento(root: Path, rng: np.random.Generator, profile: Profile) -> dict[str, int]:
    """TeInvento delivery (fact table, product and region dims as Spark folders); returns rows per table."""
    shape = profile.teinvento
    products = shape.products
    base = root / TEINVENTO_ROOT / shape.delivery
    region_ids = _spark_ids(rng, len(REGIONS) + 1)  # the last region's name is empty; facts reference it
    regions = [_csv_line([str(i), "Mexico", r]) for i, r in zip(region_ids, [*REGIONS, ""], strict=True)]
    _write_spark(base / "region_dim", regions, rng, 1)
    product_ids, dim = _spark_ids(rng, products), []
    for p, pid in enumerate(product_ids):
        base_name, brand = TEI_NAMES[p % len(TEI_NAMES)]
        size = f"{500 + 250 * (p // len(TEI_NAMES))} g"
        name = {0: f"{base_name}, {size}", 1: ""}.get(p, f"{base_name} {size}")  # needs quoting / is empty
        producer = rng.choice(["Tamales Inc", "Tamaleria Factory", "OTROS FABRICANTES"], p=[0.35, 0.25, 0.4])
        category = rng.choice(["Regular", "Light", "Zero"], p=[0.6, 0.25, 0.15])
        dim.append(_csv_line([str(pid), str(category), name, "" if p == 2 else brand, str(producer)]))
    _write_spark(base / "product_dim", dim, rng, 2)
    keys = []  # (product, region) series: most products in one region; product 2 also in the unnamed one
    for p in range(products):
        chosen = rng.choice(4, 2 if p % 4 == 3 else 1, replace=False, p=[0.25, 0.15, 0.4, 0.2])
        keys += [(p, int(r)) for r in chosen] + ([(p, len(REGIONS))] if p == 2 else [])
    share = np.array([1.0 if sum(q == p for q, _ in keys) == 1 else rng.uniform(0.3, 0.7) for p, _ in keys])
    month_idx = month_index(shape)
    value = monthly_sales(profile, shape, rng)[[p for p, _ in keys]] * share[:, None]
    missing = rng.random(value.shape) < shape.missing_rate  # a region's report is the quoted empty string
    missing.flat[rng.choice(np.flatnonzero(np.isfinite(value)))] = True
    keep = shape.months - shape.cut  # a cut delivery: the same history, without its last months
    value, missing, month_idx = value[:, :keep], missing[:, :keep], month_idx[:keep]
    facts, year_month = [], [(str(mi // 12), MONTHS[mi % 12]) for mi in month_idx]
    for k, (p, r) in enumerate(keys):
        for t, ym in enumerate(year_month):
            if not np.isfinite(value[k, t]):
                continue  # not on the market that month
            sales = "" if missing[k, t] else java_double(float(value[k, t]))
            facts.append(_csv_line([*ym, sales, str(region_ids[r]), str(product_ids[p])]))
    _write_spark(base / "fact_table", facts, rng, 4)
    return {"tei_fact": len(facts), "tei_product": len(dim), "tei_region": len(regions)}


def _publish(tmp: Path, out: Path, relpaths: list[str]) -> None:
    """Move each generated delivery folder from ``tmp`` into ``out``, replacing one of the same date."""
    for n, rel in enumerate(relpaths):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        if (out / rel).exists():  # moved aside into tmp (deleted with it), then swapped in
            os.replace(out / rel, tmp / f"replaced-{n}")
        os.replace(tmp / rel, out / rel)


def generate(
    out: Path,
    seed: int = 7,
    products: int | None = None,
    months: int | None = None,
    fragments: int = 24,
    profile: str | Profile = DEFAULT_PROFILE,
    cut: int = 0,
) -> SynthSummary:
    """Write both sample deliveries under ``out`` (deterministic by the arguments) and summarise them.

    ``profile`` names the phenomena (``features.synth_demand.PROFILES``: ``realistic`` by default, ``easy``);
    ``products`` (per source) and ``months`` (of ERP history; the vendor keeps its extra months) resize it.
    ``cut`` > 0 writes the deliveries each source made ``cut`` months earlier: the same history without its
    last ``cut`` months, in folders dated a month earlier per month cut (``cut=1`` then ``cut=0`` is a
    delivery followed by the next month's).
    """
    shape = PROFILES[profile] if isinstance(profile, str) else profile
    shape = shape.sized(products, months).cut(cut)
    if min(shape.erp.products, shape.teinvento.products) < 3 or shape.erp.months - cut < 6 or fragments < 1:
        raise ValueError("need products >= 3, months >= 6 (after the cut) and fragments >= 1")
    (out := Path(out)).mkdir(parents=True, exist_ok=True)
    erp_rng, tei_rng = (np.random.default_rng([seed, k]) for k in (1, 2))
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.synth-", dir=out.parent))
    deliveries = {"erp": shape.erp.delivery, "teinvento": shape.teinvento.delivery}
    try:
        rows = {"erp_sales": _write_erp(tmp, erp_rng, shape, fragments)}
        rows |= _write_teinvento(tmp, tei_rng, shape)
        files = [p for p in tmp.rglob("*") if p.is_file()]
        data = sum(1 for p in files if not p.name.startswith(("_", ".")))
        size = sum(p.stat().st_size for p in files)
        _publish(tmp, out, [f"{ERP_ROOT}/{deliveries['erp']}", f"{TEINVENTO_ROOT}/{deliveries['teinvento']}"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n_months = {"erp": shape.erp.months - cut, "teinvento": shape.teinvento.months - cut}
    per_source = {"erp": shape.erp.products, "teinvento": shape.teinvento.products}
    return SynthSummary(str(out), deliveries, rows, per_source, n_months, data, len(files) - data, size)


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m features.synth --out DIR [--profile P] [--seed N] [--products N] [--months N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder that receives both deliveries")
    parser.add_argument("--profile", choices=sorted(PROFILES), default=DEFAULT_PROFILE, help="phenomena")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--products", type=int, help="products per source (default: the profile's)")
    parser.add_argument(
        "--months", type=int, help="ERP months (default: the profile's; TeInvento keeps its extra)"
    )
    parser.add_argument("--fragments", type=int, default=24, help="mean ERP rows per series-month")
    parser.add_argument("--cut", type=int, default=0, help="write the deliveries of N months earlier")
    args = parser.parse_args(argv)
    summary = generate(
        args.out, args.seed, args.products, args.months, args.fragments, args.profile, args.cut
    )
    print(json.dumps(asdict(summary), indent=2))


if __name__ == "__main__":
    main()
