"""The sample-data generator: exact raw layout, every quirk, determinism, a learnable signal (read back with
the csv module only, no project parsing code, so these tests pin the raw format ingest and cleaning handle)."""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from features.calendar import period_weeks
from features.raw_layout import ERP_REGION_FOLDERS, MONTHS, classify
from features.synth import DOC_PRODUCT, SynthSummary, generate, java_double, main

JAVA_DOUBLE = re.compile(r"^-?(\d+\.\d+|\d\.\d+E-?\d+)$")


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, SynthSummary]:
    """Default-sized sample (seed 7) and its summary."""
    out = tmp_path_factory.mktemp("synth") / "delivery"
    return out, generate(out, seed=7)


@pytest.fixture(scope="module")
def sample(generated) -> Path:
    return generated[0]


def files_of(root: Path) -> dict[str, bytes]:
    """Relative path (posix) -> bytes of every file under root."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def rows_of(root: Path, kind: str) -> list[list[str]]:
    """All CSV rows of the data files of one table kind, plus their file's region folder as last field."""
    rows = []
    for rel in files_of(root):
        raw = classify(rel)
        if raw is not None and raw.kind == kind:
            with open(root / rel, encoding="utf-8", newline="") as handle:
                rows += [[*row, rel.split("/")[-2]] for row in csv.reader(handle)]
    return rows


def month_index(year: str, month: str) -> int:
    return int(year) * 12 + MONTHS.index(month)


def test_same_seed_gives_identical_bytes_and_other_seed_differs(sample, tmp_path):
    again, other = tmp_path / "again", tmp_path / "other"
    generate(again, seed=7)
    generate(other, seed=8)
    assert files_of(again) == files_of(sample)
    differing = [rel for rel, data in files_of(other).items() if files_of(sample).get(rel) != data]
    assert any(rel.endswith("ventas_mensuales_Centro.csv") for rel in differing)
    assert any("/fact_table/part-" in rel for rel in differing)


def test_rerun_into_same_folder_replaces_the_deliveries_without_leftovers(tmp_path):
    out = tmp_path / "out"
    generate(out, seed=1)
    summary = generate(out, seed=2)
    generate(tmp_path / "fresh", seed=2)
    assert files_of(out) == files_of(tmp_path / "fresh")
    assert summary.data_files + summary.other_files == len(files_of(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "out"]  # no temp folders left
    with pytest.raises(ValueError):
        generate(tmp_path / "bad", products=2)


def test_every_file_is_classified_exactly_as_the_raw_layout_says(generated):
    sample, summary = generated
    kinds: dict[str, int] = defaultdict(int)
    for rel, data in files_of(sample).items():
        raw = classify(rel)
        name = rel.rsplit("/", 1)[-1]
        if name.startswith(("_", ".")):
            assert raw is None, rel
            continue
        assert raw is not None, rel
        assert raw.delivery == summary.deliveries[raw.source]
        assert data.endswith(b"\n") and b"\r" not in data
        kinds[raw.kind] += 1
    assert kinds["erp_sales"] == 4 and kinds["tei_fact"] >= 3 and kinds["tei_product"] >= 1
    assert kinds["tei_region"] >= 1 and sum(kinds.values()) == summary.data_files
    erp = [r for r in files_of(sample) if r.endswith(".csv") and r.startswith("tamales_inc/")]
    assert sorted(r.split("/")[-2] for r in erp) == sorted(ERP_REGION_FOLDERS)
    assert summary.rows == {
        kind: len(rows_of(sample, kind)) for kind in ("erp_sales", "tei_fact", "tei_product", "tei_region")
    }
    assert 3_000 < summary.rows["erp_sales"] < 60_000  # thousands of fragment rows by default


def test_column_counts_and_values(sample):
    erp = rows_of(sample, "erp_sales")
    assert {len(r) for r in erp} == {9 + 1}
    for year, month, country, category, _flavor, zone, code, name, sales, folder in erp[::7]:
        assert year.isdigit() and month in MONTHS and country == "Mexico"
        assert category in ("Regular", "Low-Calorie") and name in ("Tamal mix", "Atole mix")
        assert zone == ERP_REGION_FOLDERS[folder] and code.strip() == code
        assert sales == "0" or JAVA_DOUBLE.match(sales), sales
        assert sales == "0" or java_double(float(sales)) == sales  # Java's Double.toString, shortest digits
    assert {len(r) for r in rows_of(sample, "tei_fact")} == {5 + 1}
    assert {len(r) for r in rows_of(sample, "tei_product")} == {5 + 1}
    assert {len(r) for r in rows_of(sample, "tei_region")} == {3 + 1}
    for year, month, sales, id_region, id_product, _ in rows_of(sample, "tei_fact"):
        assert year.isdigit() and month in MONTHS and id_region.isdigit() and id_product.isdigit()
        assert sales == "" or java_double(float(sales)) == sales


def test_erp_quirks(sample):
    erp = rows_of(sample, "erp_sales")
    sales = [float(r[8]) for r in erp]
    residue = sum(1 for s in sales if s != 0 and abs(s) < 1e-6) / len(sales)
    assert 0.30 <= residue <= 0.50
    assert any(r[8] == "0" for r in erp) and any(re.fullmatch(r"-?\d\.\d+E-1\d", r[8]) for r in erp)
    assert sum(1 for s in sales if s <= -1) > 10  # returns
    assert max(-s for s in sales) < 5000  # returns are at most a few thousand
    net: dict[tuple, float] = defaultdict(float)
    fragments: dict[tuple, int] = defaultdict(int)
    for r in erp:
        net[(r[0], r[1], r[3], r[5], r[6])] += float(r[8])
        fragments[(r[0], r[1], r[3], r[5], r[6])] += 1
    assert min(net.values()) > 0  # positive fragments outweigh returns in every series-month
    assert 15 <= np.mean(list(fragments.values())) <= 35
    codes = {r[6] for r in erp}
    assert (
        DOC_PRODUCT in codes and any(not c.isdigit() for c in codes) and any(c.startswith("0") for c in codes)
    )
    categories: dict[str, set] = defaultdict(set)
    for r in erp:
        categories[r[6]].add(r[3])
    assert any(len(c) == 2 for c in categories.values())
    keys = [tuple(r[:8]) for r in erp]
    assert keys != sorted(keys)  # fragments are shuffled
    locks = [rel for rel in files_of(sample) if rel.endswith("/.~lock.ventas_mensuales_E._Privados.csv#")]
    assert len(locks) == 1


def test_teinvento_quirks(sample):
    files = files_of(sample)
    fact = rows_of(sample, "tei_fact")
    missing = sum(1 for r in fact if r[2] == "") / len(fact)
    assert 0 < missing < 0.1
    assert any(b',"",' in data for rel, data in files.items() if "/fact_table/part-" in rel)  # literal ""
    regions = {r[0]: r[2] for r in rows_of(sample, "tei_region")}
    assert sorted(regions.values()) == sorted(["", *ERP_REGION_FOLDERS.values()])
    unnamed_region = next(k for k, v in regions.items() if v == "")
    assert any(r[3] == unnamed_region for r in fact)
    products = rows_of(sample, "tei_product")
    assert any(r[2] == "" for r in products) and any("ñ" in r[2] + r[3] for r in products)
    assert {r[1] for r in products} <= {"Regular", "Light", "Zero"}
    assert {r[4] for r in products} <= {"Tamales Inc", "Tamaleria Factory", "OTROS FABRICANTES"}
    assert {r[4] for r in fact} <= {r[0] for r in products}
    regions_per_product: dict[str, set] = defaultdict(set)
    for r in fact:
        regions_per_product[r[4]].add(r[3])
    assert sum(len(v) == 1 for v in regions_per_product.values()) > len(regions_per_product) / 2
    folders = {rel.rsplit("/", 1)[0] for rel in files if rel.startswith("teinvento_inc/")}
    skipped = False
    for folder in folders:
        names = [rel.rsplit("/", 1)[1] for rel in files if rel.rsplit("/", 1)[0] == folder]
        parts = sorted(n for n in names if n.startswith("part-"))
        numbers = [int(n[5:10]) for n in parts]
        skipped |= numbers != list(range(len(numbers)))
        assert all(re.fullmatch(r"part-\d{5}-tid-\d+-[0-9a-f-]{36}-\d+-1-c000\.csv", n) for n in parts)
        assert files[f"{folder}/_SUCCESS"] == b""
        (started,) = [n for n in names if n.startswith("_started_")]
        assert files[f"{folder}/{started}"] == b""
        committed = json.loads(files[f"{folder}/_committed_{started.removeprefix('_started_')}"])
        assert committed == {"added": parts, "removed": []}
    assert skipped


def test_teinvento_has_a_longer_history_that_ends_earlier(sample):
    erp = {month_index(r[0], r[1]) for r in rows_of(sample, "erp_sales")}
    tei = {month_index(r[0], r[1]) for r in rows_of(sample, "tei_fact")}
    assert max(tei) < max(erp) and min(tei) < min(erp)
    assert len(tei) == len(erp) + 9 == 29
    assert tei == set(range(min(tei), max(tei) + 1)) and erp == set(range(min(erp), max(erp) + 1))


def national_totals(sample: Path, source: str) -> dict[str, dict[int, float]]:
    """Netted monthly national total per product; a TeInvento month with a missing value is left out."""
    totals: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    incomplete = set()
    if source == "erp":
        for r in rows_of(sample, "erp_sales"):
            totals[r[6]][month_index(r[0], r[1])] += float(r[8])
    else:
        for year, month, sales, _region, product, _ in rows_of(sample, "tei_fact"):
            if sales == "":
                incomplete.add((product, month_index(year, month)))
            else:
                totals[product][month_index(year, month)] += float(sales)
    return {p: {t: v for t, v in s.items() if (p, t) not in incomplete} for p, s in totals.items()}


def model_and_naive_errors(totals: dict[str, dict[int, float]], test_months: int = 3) -> tuple[float, float]:
    """Mean absolute log error on the last target months: pooled lag/seasonal regression vs the last value."""
    rows = []
    for series in totals.values():
        for t, y in series.items():
            lags = [series.get(t - k) for k in (1, 2, 3)]
            if None in lags:
                continue
            log_lags = np.log(lags)
            momentum = [log_lags[0] - log_lags[1], log_lags[1] - log_lags[2], log_lags[0] - log_lags.mean()]
            rows.append((t, np.log(y) - log_lags[0], [*momentum, *np.eye(12)[t % 12]]))
    cutoff = max(t for t, _, _ in rows) - test_months
    train = [(x, y) for t, y, x in rows if t <= cutoff]
    test = [(x, y) for t, y, x in rows if t > cutoff]
    beta = np.linalg.lstsq(np.array([x for x, _ in train]), np.array([y for _, y in train]), rcond=None)[0]
    model = np.mean([abs(y - np.dot(x, beta)) for x, y in test])
    naive = np.mean([abs(y) for _, y in test])  # the last value predicts a log change of 0
    return float(model), float(naive)


@pytest.mark.parametrize("source", ["erp", "teinvento"])
def test_easy_profile_has_a_learnable_signal(tmp_path, source):
    generate(tmp_path / "easy", seed=7, profile="easy")
    totals = national_totals(tmp_path / "easy", source)
    levels = [np.mean(list(s.values())) for s in totals.values()]
    assert max(levels) > 1e6 and min(levels) < 1e4  # levels span 10^3..10^7
    peak = [
        np.mean([np.log(v) for t, v in s.items() if t % 12 == 11])
        - np.mean([np.log(v) for t, v in s.items() if t % 12 == 5])
        for s in totals.values()
        if {t % 12 for t in s} >= {5, 11}
    ]
    assert np.mean(peak) > 0.3  # yearly seasonality peaking in December (vs June, per product)
    model, naive = model_and_naive_errors(totals)
    assert model < 0.6 * naive, (model, naive)


def per_week(totals: dict[str, dict[int, float]], calendar: str) -> dict[str, dict[int, float]]:
    """Totals divided by the weeks of their reporting period."""
    return {
        p: {t: v / period_weeks(t // 12, t % 12 + 1, calendar) for t, v in s.items()}
        for p, s in totals.items()
    }


def test_realistic_market_vendor_reports_4_4_5_retail_periods(sample):
    totals = national_totals(sample, "teinvento")
    big = [s for s in totals.values() if np.mean(list(s.values())) > 1e4]
    ratios = [  # a 5-week month over the mean of its 4-week neighbours
        s[t] / np.mean([s[t - 1], s[t + 1]])
        for s in big
        for t in s
        if t % 3 == 2 and {t - 1, t + 1} <= set(s)
    ]
    assert 1.15 < np.median(ratios) < 1.35  # ~25 % more for flat demand
    flat = per_week(totals, "4-4-5")
    ratios_per_week = [
        s[t] / np.mean([s[t - 1], s[t + 1]])
        for s in flat.values()
        for t in s
        if t % 3 == 2 and {t - 1, t + 1} <= set(s)
    ]
    assert abs(np.median(ratios_per_week) - 1) < 0.08  # per week of sales the effect is gone


def test_realistic_shock_hits_every_product_at_once_and_partly_recovers(sample):
    shock = month_index("2020", "Mar")
    for source, calendar in (("erp", "month"), ("teinvento", "4-4-5")):
        rates = per_week(national_totals(sample, source), calendar)
        drops = [
            np.log(s[shock] / s[shock - 1])
            for s in rates.values()
            if {shock - 1, shock} <= set(s) and s[shock - 1] > 100
        ]
        assert np.median(drops) < -0.2 and np.mean(np.array(drops) < 0) > 0.7, (source, drops)
    erp = per_week(national_totals(sample, "erp"), "month")
    recovery = [
        np.log(s[shock + 5] / s[shock])
        for s in erp.values()
        if {shock, shock + 5} <= set(s) and s[shock] > 100
    ]
    below = [
        np.log(s[shock + 5] / s[shock - 1])
        for s in erp.values()
        if {shock - 1, shock + 5} <= set(s) and s[shock - 1] > 100
    ]
    assert np.median(recovery) > 0 and np.median(below) < 0  # partly recovered, still below


def test_realistic_products_include_launches_discontinued_tiny_and_intermittent_ones(sample):
    for source in ("erp", "teinvento"):
        totals = national_totals(sample, source)
        last = max(t for s in totals.values() for t in s)
        first = min(t for s in totals.values() for t in s)
        assert any(min(s) > first + 2 for s in totals.values())  # launched during the history
        assert any(len(s) <= 2 and max(s) == last for s in totals.values())  # 1-2 months of history
        assert any(max(s) < last - 1 for s in totals.values())  # discontinued
    tei = national_totals(sample, "teinvento")
    tiny = [s for s in tei.values() if np.mean(list(s.values())) < 10]
    assert len(tiny) >= 2 and any(0.0 in s.values() for s in tiny)  # tiny and intermittent

    # Heteroscedastic: month-to-month changes are relatively larger for small products.
    def volatility(s: dict[int, float]) -> float:
        values = np.array([s[t] for t in sorted(s) if s[t] > 0])
        return float(np.std(np.diff(np.log(values))))

    by_size = sorted(
        (np.mean(list(s.values())), volatility(s))
        for s in tei.values()
        if len(s) > 12 and min(s.values()) > 0
    )
    assert np.mean([v for _, v in by_size[:3]]) > 1.5 * np.mean([v for _, v in by_size[-3:]])


def test_a_cut_delivery_is_the_same_history_a_month_earlier(sample, tmp_path):
    earlier = generate(tmp_path / "earlier", seed=7, cut=1)
    assert earlier.deliveries == {"erp": "20200814", "teinvento": "20200522"}
    for source in ("erp", "teinvento"):
        full, cut = national_totals(sample, source), national_totals(tmp_path / "earlier", source)
        end = max(t for s in full.values() for t in s)
        assert max(t for s in cut.values() for t in s) == end - 1
        for product, series in cut.items():
            assert series == pytest.approx({t: v for t, v in full[product].items() if t < end})


def test_java_double_matches_java_double_to_string():
    cases = {
        1.9752487552490275e7: "1.9752487552490275E7",
        6.16e-14: "6.16E-14",
        -4.55e-13: "-4.55E-13",
        1e7: "1.0E7",
        9999999.0: "9999999.0",
        100.0: "100.0",
        0.001: "0.001",
        1e-4: "1.0E-4",
        -0.5: "-0.5",
        123456.789: "123456.789",
        0.0: "0.0",
    }
    assert {x: java_double(x) for x in cases} == cases


def test_cli_writes_the_deliveries_and_prints_the_summary(tmp_path, capsys):
    main(
        [
            "--out",
            str(tmp_path / "cli"),
            "--seed",
            "3",
            "--products",
            "4",
            "--months",
            "8",
            "--fragments",
            "3",
        ]
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["months"] == {"erp": 8, "teinvento": 17}
    assert summary["rows"]["erp_sales"] == len(rows_of(tmp_path / "cli", "erp_sales"))
    assert summary["deliveries"]["erp"] in "".join(files_of(tmp_path / "cli"))


def test_hand_made_raw_samples_classify_and_net_to_their_expected_totals(tmp_path):
    """The hand-made fixture other tests use is itself consistent (netted here with the csv module)."""
    from tests.fixtures.raw_samples import EXPECTED_TOTALS, MALFORMED, write_raw_samples

    written = write_raw_samples(tmp_path, malformed=True)
    kinds = {rel: (raw.kind if (raw := classify(rel)) else None) for rel in written}
    assert all(kinds[rel] for rel in MALFORMED) and sum(k is None for k in kinds.values()) == 10
    parts: dict[tuple, list[str]] = defaultdict(list)
    for rel, kind in kinds.items():
        if kind in ("erp_sales", "tei_fact") and rel not in MALFORMED:
            with open(tmp_path / rel, encoding="utf-8", newline="") as handle:
                for r in csv.reader(handle):
                    month = date(int(r[0]), MONTHS.index(r[1]) + 1, 1)
                    if kind == "erp_sales":
                        parts[("erp", r[6], month)].append(r[8])
                    else:
                        parts[("teinvento", r[4], month)].append(r[2])
    totals = {
        key: None if "" in values else sum(v for v in map(float, values) if abs(v) >= 1e-6)
        for key, values in parts.items()
    }
    assert totals == pytest.approx(EXPECTED_TOTALS)
