"""Strict, vectorised parsing of one raw CSV file into a frame of strings.

Every raw table is read as ``pl.String`` columns named by its ``TableSpec`` (typing is the cleaners' job).
A quoted empty field ``""`` stays an empty string while an unquoted empty field is null: TeInvento writes
``""`` for a value that exists but is empty, and the cleaners need to tell the two apart.

A file that cannot be read faithfully raises ``RawFileError`` with a reason naming the first offending line;
ingest quarantines such files instead of letting a shifted or truncated row reach the features.
"""

from __future__ import annotations

import polars as pl

from features.raw_layout import TableSpec

# A quoted field (doubled quotes inside it are two adjacent quoted runs, also matched): removing these runs
# leaves only the separators that split fields.
_QUOTED_RUN = r'"[^"]*"'
_LINE_READER_SEPARATOR = "\x1f"  # ASCII unit separator: not expected in a CSV file


class RawFileError(ValueError):
    """A raw file that cannot be parsed faithfully; ``reason`` says why (and where)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _schema(spec: TableSpec) -> dict[str, pl.DataType]:
    return {name: pl.String() for name in spec.columns}


def _utf8_error(data: bytes) -> RawFileError | None:
    """A ``RawFileError`` locating the first invalid UTF-8 byte, or None when ``data`` is valid UTF-8."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return RawFileError(f"not UTF-8: line {line}, byte {exc.start}: {exc.reason}")
    return None


def _lines(data: bytes) -> pl.Series:
    """The file's lines (without line ends), read by polars' CSV reader as one unquoted column."""
    if _LINE_READER_SEPARATOR.encode() in data:  # cannot serve as the "never seen" separator: split instead
        if error := _utf8_error(data):
            raise error
        lines = pl.Series([data.decode("utf-8")]).str.split("\n").explode().str.strip_suffix("\r")
        return lines.head(-1) if lines[-1] == "" else lines
    try:
        frame = pl.read_csv(
            data,
            has_header=False,
            schema={"line": pl.String()},
            separator=_LINE_READER_SEPARATOR,
            quote_char=None,
            empty_string_is_null=False,
            raise_if_empty=False,
        )
    except pl.exceptions.ComputeError as exc:  # polars validates UTF-8 but does not say where it fails
        raise _utf8_error(data) or RawFileError(f"unreadable: {str(exc).splitlines()[0]}") from None
    return frame.to_series().fill_null("")


def _check_field_counts(data: bytes, expected: int) -> int:
    """Raise unless every line has ``expected`` fields; returns the number of lines."""
    frame = pl.DataFrame({"line": _lines(data)}).with_row_index("lineno", offset=1)
    line = pl.col("line")
    # Only lines with quotes or a wrong comma count (few) need the slower regex that drops quoted runs.
    suspects = frame.filter(
        line.str.contains('"', literal=True) | (line.str.count_matches(",", literal=True) != expected - 1)
    )
    bad = (
        suspects.with_columns(
            quotes=line.str.count_matches('"', literal=True),
            fields=line.str.replace_all(_QUOTED_RUN, "").str.count_matches(",", literal=True) + 1,
        )
        .filter((pl.col("quotes") % 2 == 1) | (pl.col("fields") != expected))
        .head(1)
    )
    if bad.height:
        lineno, shown, quotes, fields = bad.select("lineno", "line", "quotes", "fields").row(0)
        if quotes % 2:
            raise RawFileError(
                f"line {lineno}: unbalanced quote (or a quoted field spanning lines): {shown[:120]!r}"
            )
        raise RawFileError(f"line {lineno}: {fields} fields, expected {expected}: {shown[:120]!r}")
    return frame.height


def _check_integers(values: pl.Series, first_line: int) -> None:
    """Raise unless every value parses as an integer (surrounding blanks allowed, as the cleaners strip)."""
    suspects = values.cast(pl.Int64, strict=False).is_null().arg_true()  # fast path: usually empty
    if suspects.len() == 0:
        return
    candidates = values.gather(suspects)
    invalid = suspects.filter(
        candidates.is_null() | candidates.str.strip_chars().cast(pl.Int64, strict=False).is_null()
    )
    if invalid.len():
        first = invalid[0]
        raise RawFileError(
            f"line {first + first_line}: {values.name}={values[first]!r} is not an integer"
            f" ({invalid.len()} such rows)"
        )


def parse_raw_csv(data: bytes, spec: TableSpec) -> pl.DataFrame:
    """Parse a headerless raw CSV file as ``spec.columns`` (all ``pl.String``), validating it strictly.

    A first row whose first field equals ``spec.header_first_column`` is a header and is dropped. A 0-byte
    file (a legit empty Spark part) gives zero rows. Raises ``RawFileError`` when the file is not UTF-8,
    when a line does not have exactly ``len(spec.columns)`` fields, or when a value of an integer column
    (``spec.int_columns``) is missing or not an integer.
    """
    if not data:
        return pl.DataFrame(schema=_schema(spec))
    n_lines = _check_field_counts(data, len(spec.columns))
    try:
        df = pl.read_csv(data, has_header=False, schema=_schema(spec), raise_if_empty=False)
    except pl.exceptions.PolarsError as exc:  # the checks above should have caught it; keep the reason
        raise RawFileError(f"unreadable CSV: {str(exc).splitlines()[0]}") from exc
    if df.height != n_lines:
        raise RawFileError(f"{n_lines} lines but {df.height} CSV rows (blank or multi-line records)")
    first_line = 1
    if spec.header_first_column is not None and df.height and df.item(0, 0) == spec.header_first_column:
        df, first_line = df.slice(1), 2
    for column in spec.int_columns:
        _check_integers(df.get_column(column), first_line)
    return df
