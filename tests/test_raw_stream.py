"""``iter_raw_csv``: a raw file parsed in line-aligned chunks gives the rows, checks and reasons of the whole file."""

from __future__ import annotations

import io

import polars as pl
import pytest

from features.raw_csv import RawFileError, iter_raw_csv, parse_raw_csv
from features.raw_layout import TABLES

ERP, FACT, PRODUCTS = TABLES["erp_sales"], TABLES["tei_fact"], TABLES["tei_product"]
ERP_ROWS = [f"2024,Jan,Mexico,Regular,Dulce,Centro,P{i % 7},Tamal mix,{i}.5\n" for i in range(1000)]


def chunked(data: bytes, spec, chunk_bytes: int = 211, **kwargs) -> pl.DataFrame:
    """All chunks of ``data`` parsed with ``iter_raw_csv`` (tiny chunks: many boundaries), concatenated."""
    frames = list(iter_raw_csv(io.BytesIO(data), spec, chunk_bytes=chunk_bytes, **kwargs))
    assert len(frames) > 1 or len(data) <= chunk_bytes
    return pl.concat(frames) if frames else parse_raw_csv(b"", spec)


def reasons(data: bytes, spec) -> tuple[str, str]:
    """The whole-file reason and the chunked one."""
    with pytest.raises(RawFileError) as whole:
        parse_raw_csv(data, spec)
    with pytest.raises(RawFileError) as parts:
        chunked(data, spec)
    return whole.value.reason, parts.value.reason


def test_chunks_give_the_rows_of_the_whole_file():
    data = "".join(ERP_ROWS).encode()
    assert chunked(data, ERP).equals(parse_raw_csv(data, ERP))
    assert chunked(data[:-1], ERP).equals(parse_raw_csv(data[:-1], ERP))  # no final line break
    header = b"id_product,calorie_category,product,product_brand,producer\n"
    dims = header + b"".join(b'%d,Regular,"Tamal, %d g",Marca,Tamales Inc\n' % (i, i) for i in range(300))
    assert chunked(dims, PRODUCTS).equals(parse_raw_csv(dims, PRODUCTS))
    assert chunked(dims, PRODUCTS).height == 300  # the header row only counts in the first chunk
    assert chunked(b"", ERP).height == 0


@pytest.mark.parametrize(
    "line, bad",
    [
        (537, "2024,Feb,Mexico,Regular,Dulce,Centro,P1,1.0\n"),  # 8 fields
        (800, "2O24,Feb,Mexico,Regular,Dulce,Centro,P1,Tamal mix,1.0\n"),  # not an integer
        (900, "2024,Feb,Mexico,Regular,Dulce,Centro,P1,Tamal mix,NaN\n"),  # not a finite number
        (950, '2024,Feb,Mexico,Regular,Dulce,Centro,P1,"Tamal mix,1.0\n'),  # unbalanced quote
    ],
)
def test_chunks_report_the_whole_files_reason_and_line(line: int, bad: str):
    rows = [*ERP_ROWS[: line - 1], bad, *ERP_ROWS[line - 1 :]]
    whole, parts = reasons("".join(rows).encode(), ERP)
    assert parts == whole and f"line {line}" in whole


def test_chunks_locate_bytes_that_are_not_utf8():
    data = "".join(ERP_ROWS).encode()
    data = data[:30_000] + b"\xff" + data[30_000:]
    whole, parts = reasons(data, ERP)
    assert parts == whole and "byte 30000" in whole


def test_a_cut_last_id_is_judged_against_the_whole_file():
    rows = "".join(f"2023,Jan,{i}.0,8589934592,{17179869185 + i % 50}\n" for i in range(400)).encode()
    rows = b"2023,Jan,9.0,8589934592,99\n" + rows
    seen_early = rows + b"2023,Feb,1.0,8589934592,99"  # the id occurs on the first line only
    assert chunked(seen_early, FACT).equals(parse_raw_csv(seen_early, FACT))
    whole, parts = reasons(rows + b"2023,Feb,1.0,8589934592,1717986", FACT)  # occurs nowhere: cut
    assert parts == whole and "looks truncated" in whole
