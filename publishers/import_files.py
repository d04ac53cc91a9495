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

FORMATS = ("csv", "jsonl", "parquet")
FILE_ENTITIES = ("products", "users", "orders", "order_lines", "clickstream")
MAX_PRINTED_ERRORS = 20
# The source DDL's constraints that a column type does not already say (beam_pipelines.io.sql).
FIXED_LENGTH = {("users", "country"): 2, ("orders", "currency"): 3}


class ImportFailed(RuntimeError):
    """Rows broke the rules; ``errors`` lists them and nothing was loaded."""

    def __init__(self, errors: list[RowError]):
        super().__init__(f"{len(errors)} error(s); nothing was loaded")
        self.errors = errors


@dataclass(frozen=True)
class RowError:
    file: str
    row: int
    column: str
    reason: str

    def line(self) -> str:
        return f"{self.file}, row {self.row}, {self.column}: {self.reason}"


@dataclass
class FileResult:
    rows: int = 0
    unused_columns: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- reading


def file_format(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise ValueError(f"{path}: cannot tell the format from the extension; pass --format {'|'.join(FORMATS)}")


def read_file(path: Path, fmt: str | None = None) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """The columns and rows of a CSV (header row), JSONL or Parquet file."""
    if not path.is_file():
        raise ValueError(f"{path} does not exist or is not a file")
    kind = file_format(path, fmt)
    if kind == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return list(table.column_names), iter(table.to_pylist())
    if kind == "csv":
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            columns = list(reader.fieldnames or [])
            rows = list(reader)
        return columns, iter(rows)
    rows = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}: line {number} is not JSON: {exc}") from None
            if not isinstance(value, dict):
                raise ValueError(f"{path}: line {number} is not a JSON object")
            rows.append(value)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return columns, iter(rows)


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

    def _error(self, file: str, row: int, column: str, reason: str) -> None:
        self.errors.append(RowError(file, row, column, reason))

    def _converted(self, entity: str, file: str, columns: list[str], rows: Iterator[dict[str, Any]]):
        self.mapping.check_columns(entity, columns, f"file {file}")
        result = self.files[file] = FileResult(unused_columns=self.mapping[entity].unused(columns))
        for number, source_row in enumerate(rows, start=1):
            result.rows += 1
            row, errors, defaulted = self.mapping.row(entity, source_row)
            for column, reason in errors:
                self._error(file, number, column, reason)
            for column in defaulted:
                self.defaults_used[f"{entity}.{column}"] += 1
            for (table, column), length in FIXED_LENGTH.items():
                value = row.get(column)
                if table == entity and isinstance(value, str) and len(value) != length:
                    self._error(file, number, column, f"must be {length} characters, got {value!r:.40}")
            if not errors:
                yield number, row

    def _keep(self, table: str, key: str, row: dict[str, Any], file: str, number: int) -> None:
        if key in self.rows[table]:
            first_file, first_row = self.origin[table][key]
            where = f"row {first_row}" if first_file == file else f"{first_file} row {first_row}"
            self._error(file, number, ENTITIES[table].key[0], f"duplicate key {key!r:.60} (first at {where})")
            return
        self.rows[table][key] = row
        self.origin[table][key] = (file, number)

    def add_file(self, entity: str, path: Path, fmt: str | None = None) -> None:
        """Read one file of ``entity`` (a table of the source, or ``clickstream``)."""
        columns, rows = read_file(path, fmt)
        file = str(path)
        if entity == "clickstream":
            self._add_clickstream(file, columns, rows)
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

    def _add_clickstream(self, file: str, columns: list[str], rows: Iterator[dict[str, Any]]) -> None:
        products: dict[str, tuple[dict[str, Any], int]] = {}
        users: dict[str, tuple[str, int]] = {}
        for number, row in self._converted("clickstream", file, columns, rows):
            pid, uid, ts = row["product_id"], row["user_id"], row["event_ts"]
            seen = products.get(pid)
            # The latest event's product attributes win; blanks do not erase known values.
            if seen is None:
                products[pid] = ({**row, "updated_at": ts}, number)
            else:
                merged = dict(seen[0])
                newer = ts >= merged["updated_at"]
                for col in ("product_name", "category", "price"):
                    if row[col] is not None and (newer or merged[col] is None):
                        merged[col] = row[col]
                merged["updated_at"] = max(ts, merged["updated_at"])
                products[pid] = (merged, seen[1])
            if uid not in users or ts > users[uid][0]:
                users[uid] = (ts, users.get(uid, (ts, number))[1])
        for pid, (values, number) in products.items():
            if pid in self.rows["products"]:
                continue
            self._derived("products", {k: values.get(k) for k in ENTITIES["products"].names}, pid, file, number)
        for uid, (ts, number) in users.items():
            if uid in self.rows["users"]:
                continue
            self._derived("users", {"user_id": uid, "updated_at": ts}, uid, file, number)

    def _derived(self, table: str, values: dict[str, Any], key: str, file: str, number: int) -> None:
        row, errors, defaulted = self.mapping.complete(table, values)
        for column, reason in errors:
            self._error(file, number, f"{table}.{column}", f"{reason} (derived from the clickstream)")
        if errors:
            return
        for column in defaulted:
            self.defaults_used[f"{table}.{column}"] += 1
        self.rows[table][key] = row
        self.origin[table][key] = (file, number)

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
            raise ImportFailed(self.errors)
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
    # Products and users files first, so they win over what a clickstream derives.
    for entity, path in sorted(files, key=lambda f: FILE_ENTITIES.index(f[0]) if f[0] != "clickstream" else 99):
        importer.add_file(entity, path, fmt)
    sql.create_schema(db)
    loaded = importer.load(db)
    without = importer.orders_without_lines()
    return {
        "loaded": loaded,
        "files": {name: {"rows": r.rows, "unused_columns": r.unused_columns} for name, r in importer.files.items()},
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
        what = (
            "clickstream events whose product and user columns yield products and users"
            if entity == "clickstream"
            else f"{entity.replace('_', ' ')} file"
        )
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
