"""Import a user's own files into the SQL source: products, users, orders, order lines, a clickstream.

One command loads CSV, JSONL or Parquet files into the project's source tables
(:mod:`beam_pipelines.io.sql`) through a source mapping
(:mod:`beam_pipelines.io.source_mapping`: column names, status values, the time zone of
naive timestamps, defaults for columns the files lack), so ``extract_dims`` and the
orders API then serve them like the built-in world::

    python -m publishers.import_files --database-url sqlite:///.local/source.db \\
        --mapping mapping.toml --timezone America/Sao_Paulo \\
        --products products.csv --users customers.csv --orders orders.csv --order-lines items.csv \\
        --clickstream 2019-Oct.csv --error-report errors.csv

A shop's line-level export (one row per order line: invoice, product, quantity, unit
price, customer, time; ``--line-export``) is read through the mapping's ``[orders]``,
``[order_lines]``, ``[products]`` and ``[users]`` sections at once: each order's header
from its first line (status rules included), every line as an order line (negative
quantities are credit lines), products and users from the lines (the latest line wins,
blanks keep known values), guest lines (blank user) under the ``user_id`` default,
counted in the summary's ``line_exports``.

Files are read strictly by :mod:`publishers.source_files` (ragged rows, bytes that are
not UTF-8, oversize cells are row errors; a repeated header column stops the file).
Every value is converted and checked before anything is written: ids by the id rule
(``events.id_text``), timestamps to UTC (naive ones in ``--timezone``, else the
mapping's zone), statuses through ``[statuses]``, decimals, dates, positive integers,
the source's constraints (2-letter country, 3-letter currency, unique keys and emails,
order lines and orders that reference known products, users and orders). Each broken
rule is one error ``file, row, column, reason`` (row 1 is the first data row); with any
error nothing is loaded and the command exits 1. Otherwise all rows are upserted in
one transaction (a re-import replaces rows by key) and a summary JSON line is printed:
rows per table, defaults used per column, unused file columns, orders without lines.

A clickstream file (``event_time, event_type, product_id, category_id, category_code,
brand, price, user_id, user_session``, the public "eCommerce behavior data from multi
category store" shape; the ``[clickstream]`` section maps other names) yields a
products snapshot from its product columns (``category_code`` -> category, ``brand`` ->
product_name, the latest price, ``updated_at`` = the product's latest event) and users
from its user ids, both completed by the ``[products]`` / ``[users]`` defaults. Rows of
a products or users file win over the clickstream's.

Orders without lines are loaded; the hourly job dead-letters them (``order X has no
lines``), as it would any such order from the API.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from beam_pipelines import cli
from beam_pipelines.io import source_mapping, sql
from beam_pipelines.io.source_mapping import ENTITIES, MappingError, SourceMapping
from publishers import source_files
from publishers.source_files import FORMATS

LINE_EXPORT = "line_export"
# Files in load order: a products or users file wins over what a line export or clickstream derives.
FILE_ENTITIES = ("products", "users", "orders", "order_lines", LINE_EXPORT, "clickstream")
# The sections a line export is read through, with the columns that come from the line's
# order instead of the file (the product and user keys, and their time: the order's).
LINE_EXPORT_SECTIONS = {
    "orders": (),
    "order_lines": (),
    "products": ("product_id", "updated_at"),
    "users": ("user_id", "updated_at"),
}
MAX_PRINTED_ERRORS = 20


class ImportFailed(RuntimeError):
    """Rows broke the rules; ``errors`` lists them and nothing was loaded; ``hints`` say why, when known."""

    def __init__(self, errors: list[RowError], hints: list[str] | None = None):
        super().__init__(f"{len(errors)} error(s); nothing was loaded")
        self.errors = errors
        self.hints = hints or []


@dataclass(frozen=True)
class RowError:
    file: str
    row: int  # 1 = the first data row
    column: str
    reason: str

    def line(self) -> str:
        return f"{self.file}, row {self.row}, {self.column}: {self.reason}"


@dataclass
class FileResult:
    rows: int = 0
    unused_columns: list[str] = field(default_factory=list)


class _LatestValues:
    """Per product / user key, the values of its latest row (by time, then file order).

    A later row's blank values do not erase known ones (a clickstream row without a
    brand keeps the product's name). ``latest[table][key] = (values, ts, first row)``.
    """

    def __init__(self) -> None:
        self.latest: dict[str, dict[str, tuple[dict[str, Any], str, int]]] = {"products": {}, "users": {}}

    def add(self, table: str, key: str, values: dict[str, Any], ts: str, number: int) -> None:
        seen = self.latest[table].get(key)
        if seen is None:
            self.latest[table][key] = (dict(values), ts, number)
            return
        known, known_ts, first = seen
        newer = ts >= known_ts
        merged = {**values, **known} if not newer else {**known, **values}
        self.latest[table][key] = (merged, max(ts, known_ts), first)


# ---------------------------------------------------------------------------- import


class Importer:
    """Converts and checks the files' rows, then loads them in one transaction."""

    def __init__(self, mapping: SourceMapping):
        self.mapping = mapping
        self.rows: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in sql.TABLES}
        self.origin: dict[str, dict[str, tuple[str, int]]] = {t: {} for t in sql.TABLES}
        self.errors: list[RowError] = []
        self.defaults_used: Counter[str] = Counter()
        self.files: dict[str, FileResult] = {}
        self.duplicates: Counter[tuple[str, str]] = Counter()  # (file, table) -> duplicate keys
        self.line_exports: dict[str, dict[str, int]] = {}

    def _error(self, file: str, row: int, column: str, reason: str) -> None:
        self.errors.append(RowError(file, row, column, reason))

    def _rows(self, file: str, rows: source_files.Rows, result: FileResult) -> Iterator[tuple[int, dict[str, Any]]]:
        """The file's usable rows; each fault (ragged row, bad bytes, oversize cell) is an error."""
        for number, row in rows:
            result.rows += 1
            if isinstance(row, source_files.Fault):
                self._error(file, number, row.column, row.reason)
                continue
            yield number, row

    def _check_lengths(self, entity: str, file: str, number: int, row: dict[str, Any], prefix: str = "") -> bool:
        ok = True
        for column in ENTITIES[entity].columns:
            value = row.get(column.name)
            if column.length is not None and isinstance(value, str) and len(value) != column.length:
                reason = f"must be {column.length} characters, got {value!r:.40}"
                self._error(file, number, prefix + column.name, reason)
                ok = False
        return ok

    def _converted(self, entity: str, file: str, columns: list[str], rows: source_files.Rows):
        self.mapping.check_columns(entity, columns, f"file {file}")
        result = self.files[file] = FileResult(unused_columns=self.mapping[entity].unused(columns))
        for number, source_row in self._rows(file, rows, result):
            row, errors, defaulted = self.mapping.row(entity, source_row)
            for column, reason in errors:
                self._error(file, number, column, reason)
            for column in defaulted:
                self.defaults_used[f"{entity}.{column}"] += 1
            if self._check_lengths(entity, file, number, row) and not errors:
                yield number, row

    def _keep(self, table: str, key: str, row: dict[str, Any], file: str, number: int) -> None:
        if key in self.rows[table]:
            first_file, first_row = self.origin[table][key]
            where = f"row {first_row}" if first_file == file else f"{first_file} row {first_row}"
            self._error(file, number, ENTITIES[table].key[0], f"duplicate key {key!r:.60} (first at {where})")
            self.duplicates[(file, table)] += 1
            return
        self.rows[table][key] = row
        self.origin[table][key] = (file, number)

    def add_file(self, entity: str, path: Path, fmt: str | None = None) -> None:
        """Read one file of ``entity`` (a table of the source, ``clickstream`` or ``line_export``)."""
        columns, rows = source_files.read(path, fmt)
        file = str(path)
        if entity == "clickstream":
            self._add_clickstream(file, columns, rows)
            return
        if entity == LINE_EXPORT:
            self._add_line_export(file, columns, rows)
            return
        numbered: Counter[str] = Counter()
        for number, row in self._converted(entity, file, columns, rows):
            if entity == "order_lines":
                numbered[row["order_id"]] += 1
                if row["line_number"] is None:
                    row["line_number"] = numbered[row["order_id"]]
                key = f"{row['order_id']}\x00{row['line_number']}"
            else:
                key = row[ENTITIES[entity].key[0]]
            self._keep(entity, key, row, file, number)

    def _add_clickstream(self, file: str, columns: list[str], rows: source_files.Rows) -> None:
        derived = _LatestValues()
        for number, row in self._converted("clickstream", file, columns, rows):
            pid, uid, ts = row["product_id"], row["user_id"], row["event_ts"]
            product = {k: row[k] for k in ("product_name", "category", "price") if row[k] is not None}
            derived.add("products", pid, {"product_id": pid, **product}, ts, number)
            derived.add("users", uid, {"user_id": uid}, ts, number)
        self._add_derived(derived, file, "clickstream")

    def _add_line_export(self, file: str, columns: list[str], rows: source_files.Rows) -> None:
        """One row per order line: orders (header from each order's first line), lines, products, users."""
        for entity, derived_columns in LINE_EXPORT_SECTIONS.items():
            self.mapping.check_columns(entity, columns, f"file {file} (--line-export)", derived_columns)
        read = set()
        for entity, derived_columns in LINE_EXPORT_SECTIONS.items():
            m = self.mapping[entity]
            read |= {src for col, src in m.columns.items() if col not in derived_columns}
            read |= {r.column for r in m.status_rules}
        result = self.files[file] = FileResult(unused_columns=[c for c in columns if c not in read])
        stats = self.line_exports[file] = Counter()
        orders: dict[str, dict[str, Any] | None] = {}  # order_id -> header (None: its first line failed)
        guests: set[str] = set()
        numbered: Counter[str] = Counter()
        derived = _LatestValues()
        for number, src in self._rows(file, rows, result):
            stats["lines"] += 1
            line, errors, defaulted = self.mapping.row("order_lines", src)
            for column, reason in errors:
                self._error(file, number, f"order_lines.{column}", reason)
            for column in defaulted:
                self.defaults_used[f"order_lines.{column}"] += 1
            order_id = line.get("order_id")
            if order_id is None:
                continue
            if order_id not in orders:
                orders[order_id] = self._line_export_order(file, number, src, guests)
            order = orders[order_id]
            if order_id in guests:
                stats["guest_lines"] += 1
            if errors or order is None:
                continue
            numbered[order_id] += 1
            if line["line_number"] is None:
                line["line_number"] = numbered[order_id]
            if line["quantity"] < 0:
                stats["credit_lines"] += 1
            self._keep("order_lines", f"{order_id}\x00{line['line_number']}", line, file, number)
            when = order["order_ts"]
            for entity, key in (("products", line["product_id"]), ("users", order["user_id"])):
                key_column = ENTITIES[entity].key[0]
                values, value_errors = self.mapping.values(entity, src, {key_column: key})
                for column, reason in value_errors:
                    self._error(file, number, f"{entity}.{column}", reason)
                if not value_errors:
                    derived.add(entity, key, values, when, number)
        stats["orders"] = sum(1 for o in orders.values() if o is not None)
        stats["guest_orders"] = len(guests)
        stats["products"], stats["users"] = len(derived.latest["products"]), len(derived.latest["users"])
        self._add_derived(derived, file, "line export")

    def _line_export_order(self, file: str, number: int, src: dict[str, Any], guests: set[str]):
        """The order header of an order's first line (later lines' header columns are not read)."""
        order, errors, defaulted = self.mapping.row("orders", src)
        for column, reason in errors:
            self._error(file, number, f"orders.{column}", reason)
        for column in defaulted:
            self.defaults_used[f"orders.{column}"] += 1
        if not self._check_lengths("orders", file, number, order, "orders.") or errors:
            return None
        if "user_id" in defaulted:
            guests.add(order["order_id"])
        self._keep("orders", order["order_id"], order, file, number)
        return order

    def _add_derived(self, derived: _LatestValues, file: str, what: str) -> None:
        """Products and users a clickstream or line export yields; rows of their own files win."""
        for table in ("products", "users"):
            for key, (values, ts, number) in derived.latest[table].items():
                if key in self.rows[table]:
                    continue
                row, errors, defaulted = self.mapping.complete(table, {**values, "updated_at": ts})
                for column, reason in errors:
                    self._error(file, number, f"{table}.{column}", f"{reason} (derived from the {what})")
                if errors or not self._check_lengths(table, file, number, row, f"{table}."):
                    continue
                for column in defaulted:
                    self.defaults_used[f"{table}.{column}"] += 1
                self.rows[table][key] = row
                self.origin[table][key] = (file, number)

    def hints(self) -> list[str]:
        """Advice for patterns of errors whose cause is the command, not the rows."""
        out = []
        for (file, table), count in sorted(self.duplicates.items()):
            if table in ("orders", "products", "users") and file not in self.line_exports:
                out.append(
                    f"hint: {file} repeats {count:,} {ENTITIES[table].key[0]} value(s); if it has one row per "
                    "order line, import it with --line-export (orders, lines, products and users are derived)"
                )
        return out

    # ------------------------------------------------------------------ checks
    def check_references(self, db: sql.Database) -> None:
        """Orders need known users; lines need known orders and products; emails stay unique."""

        def known(table: str, column: str) -> set[str]:
            return set(self.rows[table]) | {str(r[0]) for r in db.query(f"select {column} from {table}")}

        users, products = known("users", "user_id"), known("products", "product_id")
        orders = known("orders", "order_id")
        for key, row in self.rows["orders"].items():
            if row["user_id"] not in users:
                self._error(*self.origin["orders"][key], "user_id", f"unknown user {row['user_id']!r:.60}")
        for key, row in self.rows["order_lines"].items():
            if row["order_id"] not in orders:
                self._error(*self.origin["order_lines"][key], "order_id", f"unknown order {row['order_id']!r:.60}")
            if row["product_id"] not in products:
                self._error(
                    *self.origin["order_lines"][key], "product_id", f"unknown product {row['product_id']!r:.60}"
                )
        emails: dict[str, str] = {}
        existing = dict(db.query("select email, user_id from users"))
        for key, row in self.rows["users"].items():
            owner = emails.setdefault(row["email"], key)
            other = existing.get(row["email"])
            if owner != key or (other is not None and str(other) != key):
                self._error(*self.origin["users"][key], "email", f"email {row['email']!r:.60} is used by another user")

    def orders_without_lines(self) -> list[str]:
        with_lines = {row["order_id"] for row in self.rows["order_lines"].values()}
        return sorted(k for k in self.rows["orders"] if k not in with_lines)

    def load(self, db: sql.Database) -> dict[str, int]:
        """Check references, then upsert every row in one transaction; ImportFailed on any error."""
        self.check_references(db)
        if self.errors:
            raise ImportFailed(self.errors, self.hints())
        if any(r["quantity"] < 0 for r in self.rows["order_lines"].values()):
            sql.require_credit_lines(db)
        loaded = {}
        with db.transaction():
            for table in sql.TABLES:
                entity = ENTITIES[table]
                cols = entity.names
                updates = [c for c in cols if c not in entity.key]
                statement = (
                    f"insert into {table} ({', '.join(cols)}) values ({', '.join('?' for _ in cols)}) "
                    f"on conflict ({', '.join(entity.key)}) do update set "
                    + ", ".join(f"{c} = excluded.{c}" for c in updates)
                )
                db.executemany(statement, [tuple(r[c] for c in cols) for r in self.rows[table].values()])
                loaded[table] = len(self.rows[table])
        return loaded


def run_import(
    db: sql.Database, mapping: SourceMapping, files: list[tuple[str, Path]], fmt: str | None = None
) -> dict[str, Any]:
    """Import ``(entity, path)`` files; return the summary (ImportFailed / MappingError / ValueError otherwise)."""
    importer = Importer(mapping)
    for entity, path in sorted(files, key=lambda f: FILE_ENTITIES.index(f[0])):
        importer.add_file(entity, path, fmt)
    sql.create_schema(db)
    loaded = importer.load(db)
    without = importer.orders_without_lines()
    return {
        "loaded": loaded,
        "files": {name: {"rows": r.rows, "unused_columns": r.unused_columns} for name, r in importer.files.items()},
        **({"line_exports": importer.line_exports} if importer.line_exports else {}),
        "defaults_used": dict(sorted(importer.defaults_used.items())),
        "orders_without_lines": len(without),
        "orders_without_lines_sample": without[:5],
        "timezone": mapping.timezone_name,
    }


# ---------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="python -m publishers.import_files",
        description="Load your own products, users, orders and order lines (CSV, JSONL or Parquet), and "
        "products/users derived from a clickstream file, into the SQL source through a source mapping. "
        "Nothing is loaded when any row breaks a rule; every broken rule is reported as file, row, column, "
        "reason. See docs/bring-your-own-data.md.",
    )
    parser.add_argument("--database-url", required=True, help=f"SQL source to load into: {sql.URL_FORMATS}")
    parser.add_argument(
        "--mapping",
        type=Path,
        metavar="FILE",
        help="source mapping (.toml or .json): the files' column names, status values, time zone and "
        "defaults (default: files named like the project's columns)",
    )
    parser.add_argument(
        "--timezone",
        metavar="ZONE",
        help="IANA time zone of naive timestamps in the files, e.g. America/Sao_Paulo (overrides the "
        "mapping's timezone; default UTC)",
    )
    for entity in FILE_ENTITIES:
        what = {
            "clickstream": "clickstream events whose product and user columns yield products and users",
            LINE_EXPORT: "a shop's order export with one row per order line (invoice, product, quantity, unit "
            "price, customer, time): orders, order lines, products and users are all derived from it, "
            "each section of the mapping naming its columns; negative quantities are credit lines",
        }.get(entity, f"{entity.replace('_', ' ')} file")
        parser.add_argument(f"--{entity.replace('_', '-')}", type=Path, metavar="FILE", help=what)
    parser.add_argument("--format", choices=FORMATS, help="format of every file (default: from each extension)")
    parser.add_argument(
        "--error-report",
        type=Path,
        metavar="FILE",
        help="write every error as CSV (file,row,column,reason); the first "
        f"{MAX_PRINTED_ERRORS} are always printed to stderr",
    )
    parser.add_argument(cli.VERBOSE_FLAG, action="store_true", help="print the full traceback of an error")
    return parser


def _write_report(path: Path, errors: list[RowError]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "row", "column", "reason"])
        writer.writerows((e.file, e.row, e.column, e.reason) for e in errors)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    files = [(e, getattr(args, e)) for e in FILE_ENTITIES if getattr(args, e) is not None]
    if not files:
        print(
            "error: nothing to import: pass at least one of "
            + ", ".join(f"--{e.replace('_', '-')}" for e in FILE_ENTITIES),
            file=sys.stderr,
        )
        return 2
    try:
        mapping = source_mapping.load(args.mapping)
        if args.timezone:
            source_mapping.parse_timezone(args.timezone, "--timezone")
            mapping = source_mapping.parse({**mapping.to_json(), "timezone": args.timezone}, mapping.origin)
        with sql.connect(args.database_url) as db:
            summary = run_import(db, mapping, files, args.format)
    except ImportFailed as failed:
        for error in failed.errors[:MAX_PRINTED_ERRORS]:
            print(f"error: {error.line()}", file=sys.stderr)
        more = len(failed.errors) - MAX_PRINTED_ERRORS
        for hint in failed.hints:
            print(hint, file=sys.stderr)
        if args.error_report:
            _write_report(args.error_report, failed.errors)
        print(
            f"import failed: {len(failed.errors)} error(s)"
            + (f" ({more} more not shown)" if more > 0 else "")
            + (f", all in {args.error_report}" if args.error_report else "")
            + "; nothing was loaded",
            file=sys.stderr,
        )
        return 1
    except (MappingError, sql.DatabaseURLError, ConnectionError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        cli.report_error(
            cli.failure_summary("import", exc, [str(p) for _, p in files]), exc, args.verbose, "publishers.import_files"
        )
        return cli.EXIT_FAILED
    if args.error_report:
        _write_report(args.error_report, [])
    for name, result in summary["files"].items():
        if result["unused_columns"]:
            print(f"warning: {name}: column(s) not imported: {', '.join(result['unused_columns'])}", file=sys.stderr)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
