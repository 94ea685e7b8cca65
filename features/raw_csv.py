"""Strict, vectorised parsing of one raw CSV file into a frame of strings.

Every raw table is read as ``pl.String`` columns named by its ``TableSpec`` (typing is the cleaners' job).
A quoted empty field ``""`` stays an empty string while an unquoted empty field is null: TeInvento writes
``""`` for a value that exists but is empty, and the cleaners need to tell the two apart.

A file that cannot be read faithfully raises ``RawFileError`` with a reason naming the first offending line;
ingest quarantines such files instead of letting a shifted or truncated row reach the features. Reasons quote
at most ``QUOTE_LIMIT`` characters of the file, escaped (``repr``): never raw control characters, never more.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Set
from dataclasses import dataclass, field
from typing import BinaryIO

import polars as pl

from features.raw_layout import MAX_ABS_SALES, TableSpec

# A quoted field (doubled quotes inside it are two adjacent quoted runs, also matched): removing these runs
# leaves only the separators that split fields.
_QUOTED_RUN = r'"[^"]*"'
_LINE_READER_SEPARATOR = "\x1f"  # ASCII unit separator: not expected in a CSV file
QUOTE_LIMIT = 60
# A number as the exporters write it (Java's Double.toString, plain decimals): a cut one ("1.2345E", "1.")
# does not match. Checked only on a last line without a line break (see ``_check_last_line``).
_COMPLETE_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
CHUNK_BYTES = 32 * 2**20  # iter_raw_csv: ~0.5 M ERP rows per chunk


class RawFileError(ValueError):
    """A raw file that cannot be parsed faithfully; ``reason`` says why (and where)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def quote(text: object) -> str:
    """``repr`` of at most ``QUOTE_LIMIT`` characters of ``text`` (escaped; ``…`` marks a cut)."""
    if not isinstance(text, str):
        return repr(text)
    return repr(text[:QUOTE_LIMIT]) + ("…" if len(text) > QUOTE_LIMIT else "")


def _schema(spec: TableSpec) -> dict[str, pl.DataType]:
    return {name: pl.String() for name in spec.columns}


def _utf8_error(data: bytes, at: _Offset) -> RawFileError | None:
    """A ``RawFileError`` locating the first invalid UTF-8 byte, or None when ``data`` is valid UTF-8."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = at.lines + data.count(b"\n", 0, exc.start) + 1
        return RawFileError(f"not UTF-8: line {line}, byte {at.bytes + exc.start}: {exc.reason}")
    return None


def _lines(data: bytes, at: _Offset) -> pl.Series:
    """The file's lines (without line ends), read by polars' CSV reader as one unquoted column."""
    if _LINE_READER_SEPARATOR.encode() in data:  # cannot serve as the "never seen" separator: split instead
        if error := _utf8_error(data, at):
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
        raise _utf8_error(data, at) or RawFileError(f"unreadable: {str(exc).splitlines()[0]}") from None
    return frame.to_series().fill_null("")


def _check_field_counts(data: bytes, expected: int, at: _Offset) -> int:
    """Raise unless every line has ``expected`` fields; returns the number of lines."""
    frame = pl.DataFrame({"line": _lines(data, at)}).with_row_index("lineno", offset=at.lines + 1)
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
                f"line {lineno}: unbalanced quote (or a quoted field spanning lines): {quote(shown)}"
            )
        raise RawFileError(f"line {lineno}: {fields} fields, expected {expected}: {quote(shown)}")
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
            f"line {first + first_line}: {values.name}={quote(values[first])} is not an integer"
            f" ({invalid.len()} such rows)"
        )


def _check_numbers(values: pl.Series, first_line: int) -> None:
    """Raise unless every value is missing or a finite number within ±``MAX_ABS_SALES`` (blanks allowed)."""
    numbers = values.cast(pl.Float64, strict=False)
    invalid = (~(numbers.abs() <= MAX_ABS_SALES)).fill_null(False)  # NaN and ±inf compare false: caught
    suspects = (numbers.is_null() & values.is_not_null()).arg_true()  # usually just the "" (missing) values
    if suspects.len():
        stripped = values.gather(suspects).str.strip_chars()
        parsed = stripped.cast(pl.Float64, strict=False)
        unparsed = parsed.is_null() & (stripped != "")
        out_of_range = ~(parsed.abs() <= MAX_ABS_SALES).fill_null(True)
        invalid = invalid.scatter(suspects.filter(unparsed | out_of_range), True)
    rows = invalid.arg_true()
    if rows.len():
        first = rows[0]
        raise RawFileError(
            f"line {first + first_line}: {values.name}={quote(values[first])} is not a finite number"
            f" within ±{MAX_ABS_SALES:.0e} ({rows.len()} such rows)".replace("e+", "e")
        )


def _check_last_line(df: pl.DataFrame, spec: TableSpec, lineno: int, seen: Set[str]) -> None:
    """A last line without a line break may have been cut inside its last field: check that field's domain.

    A number must be complete (``1.2345E`` is not), an identifier must occur on another row of the file (a
    cut id is a new one), any other field must not be empty. A cut that leaves a well-formed value of the
    same domain (``1.2`` of ``1.25``) cannot be told from the file alone.
    """
    column = spec.columns[-1]
    value = df.item(-1, column)
    occurs = column in spec.key_columns and (
        value in seen or bool((df.get_column(column).head(-1) == value).any())
    )
    if problem := last_field_problem(spec, value, occurs_elsewhere=occurs):
        raise RawFileError(f"line {lineno}: {problem}")


def last_field_problem(spec: TableSpec, value: str | None, occurs_elsewhere: bool) -> str | None:
    """Why the last field ``value`` of a last line without a line break looks cut, or None if it does not.

    ``occurs_elsewhere``: whether another row of the file holds the same value in that column (only asked
    of identifier columns).
    """
    column = spec.columns[-1]
    if value is None or not value.strip():
        why = "is empty"
    elif column in spec.number_columns and not _COMPLETE_NUMBER.fullmatch(value.strip()):
        why = "is not a complete number"
    elif column in spec.key_columns and not occurs_elsewhere:
        why = "occurs on no other row"
    else:
        return None
    return f"last line without a line break and its {column}={quote(value)} {why}: the file looks truncated"


def parse_raw_csv(
    data: bytes, spec: TableSpec, *, check_numbers: bool = True, at: _Offset | None = None
) -> pl.DataFrame:
    """Parse a headerless raw CSV file as ``spec.columns`` (all ``pl.String``), validating it strictly.

    A first row whose first field equals ``spec.header_first_column`` is a header and is dropped. A 0-byte
    file (a legit empty Spark part) gives zero rows. Raises ``RawFileError`` when the file is not UTF-8,
    when a line does not have exactly ``len(spec.columns)`` fields, when a value of an integer column
    (``spec.int_columns``) is missing or not an integer, when a last line without a line break looks cut
    (``_check_last_line``) or, with ``check_numbers``, when a value of a number column
    (``spec.number_columns``) is neither missing nor a finite number within ±``MAX_ABS_SALES``.

    ``at``: where ``data`` starts in its file when it is a chunk of it (``iter_raw_csv``).
    """
    at = at or _Offset()
    if not data:
        return pl.DataFrame(schema=_schema(spec))
    n_lines = _check_field_counts(data, len(spec.columns), at)
    try:
        df = pl.read_csv(data, has_header=False, schema=_schema(spec), raise_if_empty=False)
    except pl.exceptions.PolarsError as exc:  # the checks above should have caught it; keep the reason
        raise RawFileError(f"unreadable CSV: {str(exc).splitlines()[0]}") from exc
    if df.height != n_lines:
        raise RawFileError(f"{n_lines} lines but {df.height} CSV rows (blank or multi-line records)")
    first_line = at.lines + 1
    header = spec.header_first_column
    if at.lines == 0 and header is not None and df.height and df.item(0, 0) == header:
        df, first_line = df.slice(1), 2
    for column in spec.int_columns:
        _check_integers(df.get_column(column), first_line)
    if check_numbers:
        for column in spec.number_columns:
            _check_numbers(df.get_column(column), first_line)
    if df.height and not data.endswith(b"\n"):
        _check_last_line(df, spec, at.lines + n_lines, at.last_column_values)
    return df


@dataclass
class _Offset:
    """Where a chunk starts in its file, and the last column's values seen before it (if an identifier)."""

    lines: int = 0
    bytes: int = 0
    last_column_values: set[str] = field(default_factory=set)


def iter_raw_csv(
    handle: BinaryIO, spec: TableSpec, *, check_numbers: bool = True, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[pl.DataFrame]:
    """``parse_raw_csv`` of a file read in line-aligned chunks of about ``chunk_bytes``: the same rows, checks
    and reasons (line numbers count from the file's start), with memory bounded by the chunk, not the file."""
    at, buffer, done = _Offset(), b"", False
    key_last = spec.columns[-1] in spec.key_columns
    while not done:
        block = handle.read(chunk_bytes)
        done = not block
        buffer += block
        cut = len(buffer) if done else buffer.rfind(b"\n") + 1
        if not done and (cut == 0 or len(buffer) < chunk_bytes):
            continue  # no complete line yet, or a short read: read on
        chunk, buffer = buffer[:cut], buffer[cut:]
        if not chunk:
            continue
        frame = parse_raw_csv(chunk, spec, check_numbers=check_numbers, at=at)
        yield frame
        if key_last:
            at.last_column_values.update(frame.get_column(spec.columns[-1]).drop_nulls().unique().to_list())
        at.lines += chunk.count(b"\n")
        at.bytes += len(chunk)
