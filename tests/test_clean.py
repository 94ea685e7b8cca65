"""Unit tests of every cleaning rule on hand-made raw rows (strings, as the raw CSV parser yields them)."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from features.clean import CleaningCounts, clean_erp, clean_teinvento, combine_netted, monthly_totals
from features.raw_layout import TABLES


def erp_frame(rows: list[tuple]) -> pl.LazyFrame:
    """ERP raw rows → the all-string frame the parser produces."""
    return pl.DataFrame(
        rows, schema=dict.fromkeys(TABLES["erp_sales"].columns, pl.String), orient="row"
    ).lazy()


def tei(kind: str, rows: list[tuple]) -> pl.LazyFrame:
    """TeInvento raw rows of one table."""
    return pl.DataFrame(rows, schema=dict.fromkeys(TABLES[kind].columns, pl.String), orient="row").lazy()


def erp_row(
    sales: str, month: str = "Jan", zone: str = "Centro", code: str = "206050084", cat: str = "Regular"
):
    return ("2024", month, "Mexico", cat, "Dulce", zone, code, "Tamal mix", sales)


def test_erp_fragments_net_to_their_plain_sum_with_residue_as_zero():
    counts = CleaningCounts()
    rows = [
        erp_row("1.5E4"),
        erp_row("6.16E-14"),
        erp_row("-4.55E-13"),
        erp_row("0"),
        erp_row("-2000"),
        erp_row("500"),
    ]
    out = combine_netted([clean_erp(erp_frame(rows), counts)], counts)
    assert out.height == 1
    assert out["sales"][0] == pytest.approx(15000 - 2000 + 500, abs=0)
    c = counts.as_dict()
    assert c["erp.rows_read"] == 6
    assert c["erp.residue_to_zero"] == 2
    assert c["erp.exact_zero"] == 1
    assert c["erp.returns_netted"] == 1
    assert c["erp.series_months_after_netting"] == 1


def test_erp_product_code_stays_a_string_with_leading_letters_and_zeros():
    out = clean_erp(
        erp_frame([erp_row("1", code="ABYT055818"), erp_row("2", code="006050084")]), CleaningCounts()
    )
    assert sorted(out["id_product"].to_list()) == ["006050084", "ABYT055818"]
    assert out.schema["id_product"] == pl.String


def test_erp_invalid_month_is_counted_and_set_aside():
    counts = CleaningCounts()
    out = clean_erp(erp_frame([erp_row("10"), erp_row("20", month="Foo")]), counts)
    assert out["sales"].sum() == 10
    assert counts.as_dict()["erp.invalid_month"] == 1


def test_erp_regions_are_separate_series_months_before_totals():
    out = clean_erp(
        erp_frame([erp_row("10", zone="Centro"), erp_row("5", zone="E. Privados")]), CleaningCounts()
    )
    assert sorted(out["region"].to_list()) == ["Centro", "E. Privados"]
    totals = monthly_totals(out, CleaningCounts())
    assert totals.height == 1 and totals["total_sales"][0] == 15
    assert totals["year_month"][0] == date(2024, 1, 1)


def test_same_code_under_two_calorie_categories_is_one_series_with_the_dominant_category():
    counts = CleaningCounts()
    rows = [erp_row("100", cat="Regular"), erp_row("900", cat="Low-Calorie"), erp_row("50", month="Feb")]
    totals = monthly_totals(clean_erp(erp_frame(rows), counts), counts)
    assert totals["id_product"].n_unique() == 1
    assert set(totals["calorie_category"]) == {"Low-Calorie"}
    assert totals.filter(pl.col("year_month") == date(2024, 1, 1))["total_sales"][0] == 1000
    assert counts.as_dict()["products_with_two_calorie_categories"] == 1


def _teinvento(fact_rows, product_rows=None, region_rows=None, counts=None):
    products = product_rows or [("85899345920", "Regular", "Tamal doña Piña", "Marca", "Tamaleria Factory")]
    regions = region_rows or [("446676598784", "Mexico", "Norte"), ("1", "Mexico", "")]
    return clean_teinvento(
        tei("tei_fact", fact_rows),
        tei("tei_product", products),
        tei("tei_region", regions),
        counts or CleaningCounts(),
    )


def test_teinvento_quoted_empty_sales_is_missing_not_zero():
    counts = CleaningCounts()
    out = _teinvento([("2023", "Jan", "", "446676598784", "85899345920")], counts=counts)
    assert out["sales"][0] is None
    assert counts.as_dict()["teinvento.missing_sales"] == 1
    totals = monthly_totals(out, CleaningCounts())
    assert totals["total_sales"][0] is None


def test_teinvento_missing_fragment_does_not_hide_the_others():
    out = _teinvento(
        [
            ("2023", "Jan", "", "446676598784", "85899345920"),
            ("2023", "Jan", "1.9752487552490275E7", "446676598784", "85899345920"),
        ]
    )
    assert out["sales"][0] == pytest.approx(1.9752487552490275e7)


def test_national_total_is_missing_when_one_region_did_not_report():
    """A partial sum would look like a drop in demand: the month is missing, counted, never undercounted."""
    counts = CleaningCounts()
    facts = [
        ("2023", "Jan", "100", "446676598784", "85899345920"),  # two regions report
        ("2023", "Jan", "50", "1", "85899345920"),
        ("2023", "Feb", "110", "446676598784", "85899345920"),  # one region missing in February
        ("2023", "Feb", "", "1", "85899345920"),
    ]
    totals = monthly_totals(_teinvento(facts), counts).sort("year_month")
    assert totals["total_sales"].to_list() == [150.0, None]
    assert counts.as_dict()["product_months_partially_reported"] == 1


def test_teinvento_unknown_region_and_product_are_kept_and_flagged():
    counts = CleaningCounts()
    facts = [
        ("2023", "Jan", "10", "1", "85899345920"),  # region with empty name
        ("2023", "Jan", "20", "999", "85899345920"),  # region missing from the dimension
        ("2023", "Jan", "30", "446676598784", "77"),  # product missing from the dimension
    ]
    out = _teinvento(facts, counts=counts)
    c = counts.as_dict()
    assert c["teinvento.rows_unknown_region"] == 2
    assert c["teinvento.rows_unknown_product"] == 1
    totals = monthly_totals(out, CleaningCounts())
    by_id = {r["id_product"]: r for r in totals.to_dicts()}
    assert by_id["85899345920"]["total_sales"] == 30 and not by_id["85899345920"]["unknown_key"]
    assert by_id["77"]["total_sales"] == 30 and by_id["77"]["unknown_key"]


def test_teinvento_product_with_empty_name_is_flagged_unknown():
    products = [("85899345920", "Zero", "", "", "OTROS FABRICANTES")]
    out = _teinvento([("2023", "Feb", "5", "446676598784", "85899345920")], product_rows=products)
    totals = monthly_totals(out, CleaningCounts())
    assert totals["unknown_key"][0] is True
    assert totals["product_name"][0] is None
    assert totals["producer"][0] == "OTROS FABRICANTES"


def test_teinvento_duplicate_dimension_keys_are_counted_not_multiplied():
    counts = CleaningCounts()
    products = [("85899345920", "Regular", "A", "B", "Tamales Inc")] * 2
    out = _teinvento(
        [("2023", "Mar", "7", "446676598784", "85899345920")], product_rows=products, counts=counts
    )
    assert out["sales"].sum() == 7
    assert counts.as_dict()["teinvento.product_dim_duplicate_keys"] == 1


def test_netting_file_by_file_equals_netting_the_whole_delivery():
    rows = [erp_row(v, zone=z) for v in ("1.5E4", "-2000", "6.16E-14", "0.1") for z in ("Centro", "Sur")]
    whole = combine_netted([clean_erp(erp_frame(rows), CleaningCounts())], CleaningCounts())
    split = combine_netted(
        [clean_erp(erp_frame(rows[:3]), CleaningCounts()), clean_erp(erp_frame(rows[3:]), CleaningCounts())],
        CleaningCounts(),
    )
    assert whole.equals(split) and whole.height == 2
    assert whole["sales"].to_list() == pytest.approx([13000.1, 13000.1])


# --- netting beyond int64 (issue 9, item 5) and values out of the sales domain (item 6) ----------------------

BIG = "9.5E11"  # within the per-value bound (1e12) but 10 of them exceed int64 micro-units (9.22e12 units)


def test_netting_a_product_month_past_int64_gives_the_exact_total_not_a_wrapped_one():
    rows = [erp_row(BIG)] * 10 + [erp_row("0.000001")]
    out = combine_netted([clean_erp(erp_frame(rows), CleaningCounts())], CleaningCounts())
    assert out["sales"].to_list() == [9.5e12 + 1e-6]  # int64 sums wrapped to -8.95e12


def test_netting_past_int64_is_exact_across_files_regions_and_order():
    rows = [erp_row(BIG, zone=z) for z in ("Centro", "Sur") for _ in range(6)] + [erp_row("-0.5")]
    expected = 12 * 9.5e11 - 0.5
    totals = []
    for order in (rows, rows[::-1], rows[5:] + rows[:5]):
        parts = [clean_erp(erp_frame(order[i : i + 4]), CleaningCounts()) for i in range(0, len(order), 4)]
        totals.append(monthly_totals(combine_netted(parts, CleaningCounts()), CleaningCounts()))
    assert [t["total_sales"].to_list() for t in totals] == [[expected]] * 3
    assert totals[0].equals(totals[1]) and totals[0].equals(totals[2])  # bit-identical, order-independent


def test_teinvento_netting_past_int64_is_exact():
    fact = [("2023", "Jan", BIG, "446676598784", "85899345920")] * 10
    totals = monthly_totals(_teinvento(fact), CleaningCounts())
    assert totals["total_sales"].to_list() == [9.5e12]


@pytest.mark.parametrize("value", ["5e12", "-5e12", "NaN", "nan", "inf", "-inf", "1e400"])
def test_sales_out_of_range_or_not_finite_are_missing_and_counted(value: str):
    """Files ingested before ingest checked the sales domain: the features run completes, nothing wrong."""
    counts = CleaningCounts()
    rows = [erp_row(value), erp_row(value), erp_row("10", month="Feb"), erp_row(value, month="Feb")]
    totals = monthly_totals(combine_netted([clean_erp(erp_frame(rows), counts)], counts), counts)
    assert totals["total_sales"].to_list() == [None, 10.0]  # two 5e12 netted to -8.45e12 before
    assert counts.as_dict()["erp.sales_out_of_range"] == 3
    assert counts.as_dict()["erp.returns_netted"] == 0
    tei_counts = CleaningCounts()
    out = _teinvento([("2023", "Jan", value, "446676598784", "85899345920")], counts=tei_counts)
    assert out["sales"].to_list() == [None] and tei_counts.as_dict()["teinvento.sales_out_of_range"] == 1
