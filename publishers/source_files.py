"""Strict reading of a user's data files (CSV/TSV, JSONL, Parquet): every fault named by file, row and column.

``publishers.import_files`` and ``publishers.replay`` read files through :func:`read`,
so both refuse the same things the same way::

    columns, rows = source_files.read(Path("export.csv"))
    for number, row in rows:           # number 1 = the first data row
        if isinstance(row, Fault):     # this row is unusable; the reason names the column
            ...

What is a fault (one per row, the first found; the row is not given as data):

* CSV: a row with fewer or more fields than the header (a truncated last line, an
  unquoted delimiter), a byte sequence that is not UTF-8 (the reason gives the byte
  offset in the file), quoting the ``csv`` module refuses in strict mode;
* JSONL: a line that is not JSON or not an object, an object that repeats a key,
  bytes that are not UTF-8 (with the byte offset);
* every format: a cell larger than :data:`MAX_CELL_BYTES` in UTF-8 (the same limit for
  CSV, JSONL and Parquet; in CSV an unclosed quote is the usual cause).

What stops the file (:class:`FileError`, one line): a header that repeats a column, a
header that is not UTF-8, an unreadable Parquet file. Blank lines are skipped in CSV and
JSONL. Rows are numbered from 1 after the header (CSV) or per non-blank line (JSONL);
a reason adds the physical line where it differs.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

FORMATS = ("csv", "jsonl", "parquet")
# One limit for every format. 1 MiB holds any real description or address many times over;
# a larger CSV cell is almost always an unclosed quote that swallowed the rest of the file.
MAX_CELL_BYTES = 1024 * 1024
_BOM = b"\xef\xbb\xbf"


class FileError(ValueError):
    """The file cannot be read at all (its header, its format); the message is one line naming it."""


@dataclass(frozen=True)
class Fault:
    """Why one row of a file is unusable: ``column`` is a header name or ``field <n>``."""

    row: int
    column: str
    reason: str


Rows = Iterator[tuple[int, "dict[str, Any] | Fault"]]


def file_format(path: Path, fmt: str | None = None) -> str:
    """``fmt``, or the format named by the file's extension."""
    if fmt:
        if fmt not in FORMATS:
            raise FileError(f"{path}: unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise FileError(f"{path}: cannot tell the format from the extension; pass --format {'|'.join(FORMATS)}")


def read(path: Path, fmt: str | None = None, *, max_cell_bytes: int = MAX_CELL_BYTES) -> tuple[list[str], Rows]:
    """The columns of ``path`` and an iterator of ``(row number, row dict or Fault)``.

    Raises:
      FileError: the file is missing, its format unknown, or its header unusable.
    """
    path = Path(path)
    if not path.is_file():
        raise FileError(f"{path} does not exist or is not a file")
    kind = file_format(path, fmt)
    if kind == "parquet":
        return _read_parquet(path, max_cell_bytes)
    if kind == "csv":
        return _read_csv(path, max_cell_bytes)
    return _read_jsonl(path, max_cell_bytes)


def _oversize(value: Any, limit: int) -> int | None:
    """The UTF-8 size of ``value`` when it is above ``limit``, else None (cheap for short values)."""
    if isinstance(value, str):
        if len(value) * 4 <= limit:  # at most 4 bytes a character: certainly small enough
            return None
        size = len(value.encode("utf-8", "surrogatepass"))
    elif isinstance(value, bytes):
        size = len(value)
    elif isinstance(value, (dict, list)):
        size = len(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass"))
    else:
        return None
    return size if size > limit else None


def _too_big(number: int, column: str, size: int, limit: int, hint: str = "") -> Fault:
    return Fault(number, column, f"cell of {size:,} bytes is larger than the limit of {limit:,} bytes{hint}")


def _check_header(path: Path, columns: list[str]) -> None:
    seen: dict[str, int] = {}
    for position, name in enumerate(columns, start=1):
        if name in seen:
            raise FileError(
                f"{path}, header, {name or '(blank)'}: the column appears twice (fields {seen[name]} and {position}); "
                "rename one: a repeated column would keep only one of its values"
            )
        seen[name] = position


def _bad_byte(raw: bytes, start: int, offset: int) -> str:
    return f"not valid UTF-8 at byte offset {offset + start:,} (0x{raw[start]:02x}); save the file as UTF-8"


# ---------------------------------------------------------------------------- CSV


class _Lines:
    """A binary file's lines as text for ``csv.reader``: the first bad byte of a record is noted, then replaced.

    Used for the header and for a file that is not all UTF-8 (so a fault names its offset).
    """

    def __init__(self, fh: BinaryIO):
        self._fh = fh
        self.offset = 0  # bytes before the next line
        self.line = 0  # physical lines read
        self.bad: str | None = None  # the first encoding fault since the last record

    def __iter__(self) -> Iterator[str]:
        for raw in self._fh:
            if self.line == 0 and raw.startswith(_BOM):
                raw, self.offset = raw[len(_BOM) :], len(_BOM)
            self.line += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if self.bad is None:
                    self.bad = _bad_byte(raw, exc.start, self.offset)
                text = raw.decode("utf-8", "replace")
            self.offset += len(raw)
            yield text

    def take_bad(self) -> str | None:
        """The record's encoding fault, if any, cleared for the next record."""
        bad, self.bad = self.bad, None
        return bad


class _Strict:
    """Text-mode lines, strictly UTF-8: any bad byte raises, and reading starts again byte by byte."""

    bad = None

    @staticmethod
    def take_bad() -> None:
        return None


def _csv_reader(fh, delimiter: str):
    return csv.reader(fh, delimiter=delimiter, strict=True)


def _read_csv(path: Path, limit: int) -> tuple[list[str], Rows]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    # The header is read byte by byte, so a bad byte in it has its offset.
    with open(path, "rb") as fh:
        lines = _Lines(fh)
        try:
            header = next(_csv_reader(lines, delimiter), None)
        except csv.Error as exc:
            raise FileError(f"{path}, header: not valid CSV: {exc}") from None
        if lines.bad is not None:
            raise FileError(f"{path}, header: {lines.bad}")
    columns = [c.strip() for c in header or []]
    _check_header(path, columns)

    def rows() -> Rows:
        # The csv module's own cap (128 KiB) would refuse a big cell with a message naming
        # neither row nor column; the cap here is ours, checked per cell.
        previous = csv.field_size_limit()
        csv.field_size_limit(2**31 - 1)
        done = [0, 0]  # records read after the header, data rows numbered
        try:
            try:
                # Text mode decodes in C: as fast as csv.DictReader (measured 2.5 s per 500k rows,
                # against 4 s decoding each line in Python to know its byte offset).
                with open(path, newline="", encoding="utf-8-sig") as fh:
                    reader = _csv_reader(fh, delimiter)
                    next(reader, None)
                    yield from _csv_records(reader, _Strict(), columns, limit, done)
            except UnicodeDecodeError:
                # Not all UTF-8: again byte by byte from where text mode stopped, to name the offset.
                with open(path, "rb") as fh:
                    lines = _Lines(fh)
                    reader = _csv_reader(lines, delimiter)
                    next(reader, None)
                    for _ in range(done[0]):
                        next(reader, None)
                    lines.take_bad()
                    yield from _csv_records(reader, lines, columns, limit, done)
        finally:
            csv.field_size_limit(previous)

    return columns, rows()


def _csv_records(reader, lines, columns: list[str], limit: int, done: list[int]) -> Rows:
    """``(number, row or Fault)`` for each record of ``reader``; ``done`` counts records and rows so far."""
    while True:
        first_line = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            done[0] += 1
            done[1] += 1
            lines.take_bad()
            yield done[1], Fault(done[1], "(row)", f"not valid CSV at line {reader.line_num}: {exc}")
            continue
        done[0] += 1
        if not fields or (len(fields) == 1 and not fields[0].strip() and len(columns) != 1):
            lines.take_bad()
            continue  # a blank line
        done[1] += 1
        number = done[1]
        where = f" (line {first_line})" if first_line != number + 1 else ""
        yield number, _csv_row(number, columns, fields, lines.take_bad(), where, limit)


def _csv_row(number: int, columns: list[str], fields: list[str], bad: str | None, where: str, limit: int):
    if bad is not None:
        column = next((columns[i] for i, f in enumerate(fields) if "\ufffd" in f and i < len(columns)), "(row)")
        return Fault(number, column, bad)
    if len(fields) < len(columns):
        missing = columns[len(fields) :]
        return Fault(
            number,
            missing[0] or "(blank)",
            f"row has {len(fields)} of the header's {len(columns)} fields{where}: "
            f"{', '.join(repr(m) for m in missing[:5])}{' ...' if len(missing) > 5 else ''} missing "
            "(a truncated line?)",
        )
    if len(fields) > len(columns):
        return Fault(
            number,
            f"field {len(columns) + 1}",
            f"row has {len(fields)} fields but the header {len(columns)}{where} "
            "(an unquoted delimiter inside a value?)",
        )
    # One C-level pass over the lengths; cells are looked at one by one only when one may be
    # too big (measured: checking each cell in Python doubled the time of reading a row).
    if max(map(len, fields), default=0) * 4 > limit:
        for name, value in zip(columns, fields, strict=True):
            size = _oversize(value, limit)
            if size is not None:
                return _too_big(number, name or "(blank)", size, limit, " (an unclosed quote?)")
    return dict(zip(columns, fields, strict=True))


# ---------------------------------------------------------------------------- JSONL


def _object_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _RepeatedKey(key)
        out[key] = value
    return out


class _RepeatedKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _read_jsonl(path: Path, limit: int) -> tuple[list[str], Rows]:
    items: list[tuple[int, dict[str, Any] | Fault]] = []
    columns: dict[str, None] = {}
    offset = 0
    number = 0
    with open(path, "rb") as fh:
        for line_number, raw in enumerate(fh, start=1):
            if line_number == 1 and raw.startswith(_BOM):
                raw, offset = raw[len(_BOM) :], len(_BOM)
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            number += 1
            where = f" (line {line_number})" if line_number != number else ""
            items.append((number, _json_row(number, raw, start, where, limit, columns)))
    return list(columns), iter(items)


def _json_row(number: int, raw: bytes, start: int, where: str, limit: int, columns: dict[str, None]):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        column = "(line)"
        try:
            value = json.loads(raw.decode("utf-8", "replace"))
            if isinstance(value, dict):
                column = next((k for k, v in value.items() if "\ufffd" in str(v)), column)
        except ValueError:
            pass
        return Fault(number, column, _bad_byte(raw, exc.start, start))
    try:
        value = json.loads(text.rstrip("\r\n"), object_pairs_hook=_object_without_repeats)
    except _RepeatedKey as exc:
        return Fault(number, exc.key, f"the object repeats the key {exc.key!r}{where}")
    except (ValueError, RecursionError) as exc:
        return Fault(number, "(line)", f"line is not JSON{where}: {str(exc)[:120]}")
    if not isinstance(value, dict):
        return Fault(number, "(line)", f"line is not a JSON object but {type(value).__name__}{where}")
    for key, cell in value.items():
        size = _oversize(cell, limit)
        if size is not None:
            return _too_big(number, key, size, limit)
    columns.update(dict.fromkeys(value))
    return value


# ---------------------------------------------------------------------------- Parquet


def _read_parquet(path: Path, limit: int) -> tuple[list[str], Rows]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise FileError(f"{path}: not a readable Parquet file: {str(exc).splitlines()[0][:200]}") from None
    columns = list(table.column_names)
    _check_header(path, columns)

    def rows() -> Rows:
        for number, row in enumerate(table.to_pylist(), start=1):
            fault = next(
                (
                    _too_big(number, name, size, limit)
                    for name, value in row.items()
                    if (size := _oversize(value, limit)) is not None
                ),
                None,
            )
            yield number, fault or row

    return columns, rows()
