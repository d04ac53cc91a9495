"""One small connection layer over the SQL source: SQLite (local) and PostgreSQL (Cloud SQL).

The catalog loader, the orders API and the ``extract_dims`` job share it, so the
same SQL text and the same parameters work on both engines::

    from beam_pipelines.io import sql

    with sql.connect("sqlite:///.local/source.db") as db:   # or postgresql://user@host:5432/db
        sql.create_schema(db)
        rows = db.query_dicts(
            "select product_id, price, updated_at from products where updated_at >= :since order by product_id",
            {"since": datetime(2026, 11, 22, tzinfo=UTC)},
        )
        rows = [sql.jsonable(r) for r in rows]  # identical values on both engines

Placeholders: write ``?`` (positional, with a sequence) or ``:name`` (named, with a
mapping); they are rewritten to psycopg's ``%s`` / ``%(name)s`` for PostgreSQL.
Values are always bound as parameters, never formatted into the SQL.

Storage conventions (see the cross-team contract): timestamps are ``TIMESTAMPTZ`` in
PostgreSQL and canonical ISO-8601 UTC text in SQLite (``2026-11-22T10:00:00.000000Z``,
which sorts and compares correctly as text); decimals are ``NUMERIC(12,2)`` in
PostgreSQL and decimal text in SQLite (TEXT affinity, so ``'20.00'`` is never
turned into the integer 20). :func:`jsonable` maps a row from either engine to the
same JSON-ready values.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from beam_pipelines.events import format_ts

SQLITE = "sqlite"
POSTGRESQL = "postgresql"

URL_FORMATS = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db, sqlite:///:memory: or "
    "postgresql://user[:password]@host:port/dbname"
)

# Tables in dependency order (parents first); dropping goes the other way.
TABLES = ("products", "users", "orders", "order_lines")

ORDER_STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled", "returned")

_STATUS_CHECK = "check (status in ({}))".format(", ".join(f"'{s}'" for s in ORDER_STATUSES))

# {ts} / {num} / {date} / {char2} / {char3} differ per engine; everything else is shared DDL.
_DDL = (
    """create table if not exists products (
        product_id text primary key,
        product_name text not null,
        category text not null,
        price {num} not null,
        updated_at {ts} not null
    )""",
    "create index if not exists products_updated_at_idx on products (updated_at)",
    """create table if not exists users (
        user_id text primary key,
        user_name text not null,
        email text not null unique,
        signup_date {date} not null,
        country {char2} not null,
        updated_at {ts} not null
    )""",
    "create index if not exists users_updated_at_idx on users (updated_at)",
    f"""create table if not exists orders (
        order_id text primary key,
        user_id text not null references users (user_id),
        session_id text,
        status text not null {_STATUS_CHECK},
        order_ts {{ts}} not null,
        updated_at {{ts}} not null,
        currency {{char3}} not null
    )""",
    # (updated_at, order_id) is the orders API's keyset order, so one index serves both.
    "create index if not exists orders_updated_at_idx on orders (updated_at, order_id)",
    """create table if not exists order_lines (
        order_id text not null references orders (order_id),
        line_number int not null,
        product_id text not null references products (product_id),
        quantity int not null check (quantity <> 0),
        unit_price {num} not null,
        primary key (order_id, line_number)
    )""",
    "create index if not exists order_lines_product_id_idx on order_lines (product_id)",
)

_TYPES = {
    POSTGRESQL: {"ts": "timestamptz", "num": "numeric(12,2)", "date": "date", "char2": "char(2)", "char3": "char(3)"},
    # TEXT affinity on purpose: exact decimals, sortable canonical timestamps.
    SQLITE: {"ts": "text", "num": "text", "date": "text", "char2": "text", "char3": "text"},
}

# Tokens that matter when rewriting placeholders; string literals are skipped whole.
_TOKEN = re.compile(r"'(?:[^']|'')*'|::|\?|:([A-Za-z_]\w*)|%")


class DatabaseURLError(ValueError):
    """The database URL is not one of the supported forms."""


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (for logs and error messages)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _to_pyformat(sql: str) -> str:
    def repl(m: re.Match[str]) -> str:
        piece = m.group(0)
        if piece == "?":
            return "%s"
        if piece == "%":
            return "%%"
        if m.group(1):
            return f"%({m.group(1)})s"
        return piece  # string literal or '::' cast

    return _TOKEN.sub(repl, sql)


def _pg_value(value: Any) -> Any:
    """A parameter for psycopg: as it is, but never a naive datetime (its zone would be guessed)."""
    if isinstance(value, datetime) and value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware (UTC) datetime")
    return value


def _sqlite_value(value: Any) -> Any:
    """A parameter for SQLite: timestamps, dates and decimals as the text SQLite stores."""
    return jsonable_value(_pg_value(value))


def jsonable(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row from either engine with JSON-ready, engine-independent values.

    Timestamps become canonical UTC strings (:func:`beam_pipelines.events.format_ts`),
    dates ``YYYY-MM-DD``, decimals strings; SQLite's text values pass through.
    """
    return {key: jsonable_value(value) for key, value in row.items()}


def jsonable_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_ts(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


class Database:
    """A connection to the SQL source with the same API on SQLite and PostgreSQL.

    Connections are in autocommit mode; group statements with :meth:`transaction`.
    Use as a context manager to close it.
    """

    def __init__(self, raw: Any, dialect: str, url: str):
        self.raw = raw
        self.dialect = dialect
        self.url = url

    def __repr__(self) -> str:
        return f"Database({self.dialect}, {redact(self.url)})"

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.raw.close()

    # ------------------------------------------------------------------ statements
    def _bind(self, params: Sequence[Any] | Mapping[str, Any] | None) -> Any:
        if params is None:
            params = ()
        convert = _sqlite_value if self.dialect == SQLITE else _pg_value
        if isinstance(params, Mapping):
            return {k: convert(v) for k, v in params.items()}
        return tuple(convert(v) for v in params)

    def _prepare(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None) -> tuple[str, Any]:
        return (_to_pyformat(sql) if self.dialect == POSTGRESQL else sql), self._bind(params)

    def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> int:
        """Run one statement; return the number of affected rows (-1 when unknown)."""
        sql, bound = self._prepare(sql, params)
        cur = self.raw.cursor()
        try:
            cur.execute(sql, bound)
            return cur.rowcount
        finally:
            cur.close()

    def executemany(self, sql: str, rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> None:
        """Run one statement for each parameter row (inside :meth:`transaction` for speed)."""
        prepared = [self._bind(row) for row in rows]
        if not prepared:
            return
        sql = _to_pyformat(sql) if self.dialect == POSTGRESQL else sql
        cur = self.raw.cursor()
        try:
            cur.executemany(sql, prepared)
        finally:
            cur.close()

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> list[tuple]:
        """All rows of a query, as tuples."""
        sql, bound = self._prepare(sql, params)
        cur = self.raw.cursor()
        try:
            cur.execute(sql, bound)
            return [tuple(r) for r in cur.fetchall()]
        finally:
            cur.close()

    def query_dicts(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """All rows of a query, as ``{column: value}`` dicts."""
        sql, bound = self._prepare(sql, params)
        cur = self.raw.cursor()
        try:
            cur.execute(sql, bound)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        finally:
            cur.close()

    def iter_query(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None, batch_size: int = 10_000
    ) -> Iterator[dict[str, Any]]:
        """Stream a large result as dicts without holding it all in memory.

        PostgreSQL uses a named (server-side) cursor inside a transaction.
        """
        sql, bound = self._prepare(sql, params)
        if self.dialect == POSTGRESQL:
            with self.raw.transaction(), self.raw.cursor(name="iter_query") as cur:
                cur.itersize = batch_size
                cur.execute(sql, bound)
                names = [d[0] for d in cur.description]
                for r in cur:
                    yield dict(zip(names, r, strict=True))
            return
        cur = self.raw.cursor()
        try:
            cur.execute(sql, bound)
            names = [d[0] for d in cur.description]
            while batch := cur.fetchmany(batch_size):
                for r in batch:
                    yield dict(zip(names, r, strict=True))
        finally:
            cur.close()

    def describe(self, sql: str) -> list[str]:
        """The column names a query returns, without fetching rows (wrap it in ``where 1 = 0``)."""
        cur = self.raw.cursor()
        try:
            cur.execute(sql)
            return [d[0] for d in cur.description]
        finally:
            cur.close()

    def scalar(self, sql: str, params: Sequence[Any] | Mapping[str, Any] | None = None) -> Any:
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """Everything inside commits together or not at all."""
        if self.dialect == POSTGRESQL:
            with self.raw.transaction():
                yield self
            return
        self.raw.execute("begin")
        try:
            yield self
        except BaseException:
            self.raw.execute("rollback")
            raise
        self.raw.execute("commit")

    # ------------------------------------------------------------------ bulk load
    def bulk_load(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Append many rows fast, in one transaction; return how many were loaded.

        PostgreSQL streams them with ``COPY ... FROM STDIN``; SQLite uses one
        ``executemany`` with durability pragmas relaxed for the load (the load is
        all-or-nothing anyway: a crash leaves the previous state).
        """
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; expected one of {TABLES}")
        cols = ", ".join(columns)
        if self.dialect == POSTGRESQL:
            count = 0
            with self.raw.transaction(), self.raw.cursor() as cur, cur.copy(f"copy {table} ({cols}) from stdin") as cp:
                for row in rows:
                    cp.write_row(row)
                    count += 1
            return count
        placeholders = ", ".join("?" for _ in columns)
        raw: sqlite3.Connection = self.raw
        raw.execute("pragma synchronous = off")
        raw.execute("pragma cache_size = -262144")  # 256 MiB page cache for index builds
        raw.execute("pragma temp_store = memory")
        counter = _Counter(rows, _sqlite_value)
        try:
            with self.transaction():
                # Into an empty table, building secondary indexes once at the end is ~2x faster.
                indexes = []
                if raw.execute(f"select not exists (select 1 from {table})").fetchone()[0]:
                    indexes = raw.execute(
                        "select name, sql from sqlite_master where type = 'index' and tbl_name = ? and sql is not null",
                        (table,),
                    ).fetchall()
                    for name, _ in indexes:
                        raw.execute(f'drop index "{name}"')
                raw.executemany(f"insert into {table} ({cols}) values ({placeholders})", counter)
                for _, ddl in indexes:
                    raw.execute(ddl)
        finally:
            raw.execute("pragma synchronous = normal")
        return counter.count


class _Counter:
    """Iterate rows for executemany, converting values where needed and counting them.

    The columns that need conversion (datetime, date, Decimal) are found on the first
    row, so rows of plain str/int/float values pass through untouched (bulk loads
    of a million rows would otherwise spend seconds in type checks).
    """

    _SPECIAL = (datetime, date, Decimal)

    def __init__(self, rows: Iterable[Sequence[Any]], convert: Any):
        self._rows = iter(rows)
        self._convert = convert
        self._columns: list[int] | None = None
        self.count = 0

    def __iter__(self) -> _Counter:
        return self

    def __next__(self) -> Sequence[Any]:
        row = next(self._rows)
        self.count += 1
        if self._columns is None:
            self._columns = [i for i, v in enumerate(row) if isinstance(v, self._SPECIAL)]
        if not self._columns:
            return row
        out = list(row)
        for i in self._columns:
            out[i] = self._convert(out[i])
        return out


# ---------------------------------------------------------------------------- connect


def parse_url(url: str) -> tuple[str, str]:
    """Split a database URL into ``(dialect, target)``; raise :class:`DatabaseURLError` otherwise.

    ``target`` is the SQLite file path or the PostgreSQL conninfo URL.
    """
    if not isinstance(url, str) or not url.strip():
        raise DatabaseURLError(f"empty database URL; expected {URL_FORMATS}")
    url = url.strip()
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if not path:
            raise DatabaseURLError(f"database URL {url!r} has no file path; expected {URL_FORMATS}")
        return SQLITE, path
    if url.startswith(("postgresql://", "postgres://")):
        return POSTGRESQL, url
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise DatabaseURLError(f"unsupported database URL {redact(url)!r} (scheme {scheme!r}); expected {URL_FORMATS}")


def connect(url: str, *, password: str | None = None, connect_timeout: int = 10) -> Database:
    """Open a :class:`Database` for ``sqlite:///path`` or ``postgresql://...``.

    Args:
      url: the database URL.
      password: PostgreSQL password sent apart from the URL (read from Secret Manager by
        :mod:`beam_pipelines.io.sql_login`), so the URL stays printable.
      connect_timeout: seconds to wait for the server.

    Raises:
      DatabaseURLError: the URL is not one of the supported forms.
      ConnectionError: the database cannot be reached or opened (message says why).
    """
    dialect, target = parse_url(url)
    if dialect == SQLITE:
        if target != ":memory:":
            parent = Path(target).expanduser().parent
            if not parent.exists():
                raise ConnectionError(f"cannot open SQLite database {target!r}: folder {str(parent)!r} does not exist")
        try:
            raw = sqlite3.connect(target, isolation_level=None, timeout=30, check_same_thread=False)
            # WAL lets the orders API read while the simulator writes orders.
            if target != ":memory:":
                raw.execute("pragma journal_mode = wal")
            raw.execute("pragma foreign_keys = on")
            raw.execute("pragma synchronous = normal")
        except sqlite3.Error as exc:
            raise ConnectionError(f"cannot open SQLite database {target!r}: {exc}") from None
        return Database(raw, SQLITE, url)
    import psycopg

    extra = {"password": password} if password is not None else {}
    try:
        raw = psycopg.connect(target, autocommit=True, connect_timeout=connect_timeout, **extra)
    except psycopg.OperationalError as exc:
        reason = refused_login(exc)
        if reason:
            raise ConnectionError(f"PostgreSQL at {redact(url)} refused the login: {reason}") from None
        raise ConnectionError(
            f"cannot connect to PostgreSQL at {redact(url)}: {' '.join(str(exc).split())}. "
            "Check that the server is running and the URL (user, host, port, database) is right."
        ) from None
    return postgres_database(raw, url)


def refused_login(exc: BaseException) -> str | None:
    """The server's reason when a PostgreSQL connection error is a refused login, else None.

    libpq's message spans lines and leads with the socket it used; the server's own
    words (``password authentication failed for user "x"``) are what says what to fix.
    """
    message = " ".join(str(exc).split())
    if "authentication failed" not in message and "no password supplied" not in message:
        return None
    reason = message.split("FATAL:", 1)[1] if "FATAL:" in message else message.rsplit(" failed: ", 1)[-1]
    return reason.strip()


def postgres_database(raw: Any, url: str) -> Database:
    """A :class:`Database` over an open psycopg connection (autocommit, session zone UTC).

    ``url`` only names it in messages (:func:`redact` hides a password in it).
    """
    raw.execute("set time zone 'UTC'")
    return Database(raw, POSTGRESQL, url)


# ---------------------------------------------------------------------------- schema


def schema_statements(dialect: str) -> list[str]:
    """The DDL of the SQL source for ``dialect`` (``sqlite`` or ``postgresql``)."""
    types = _TYPES[dialect]
    return [stmt.format(**types) for stmt in _DDL]


def create_schema(db: Database, *, drop_existing: bool = False) -> None:
    """Create products, users, orders and order_lines (with keys, foreign keys and indexes).

    Idempotent; with ``drop_existing`` the four tables are dropped first (all data lost).
    """
    with db.transaction():
        if drop_existing:
            for table in reversed(TABLES):
                db.execute(f"drop table if exists {table}")
        for stmt in schema_statements(db.dialect):
            db.execute(stmt)


_OLD_QUANTITY_CHECK = re.compile(r"quantity\s*>\s*0")


def require_credit_lines(db: Database) -> None:
    """Refuse, in one line, an ``order_lines`` table whose check still says ``quantity > 0``.

    Credit lines (negative quantities: a credit note's, a return line's) are allowed
    since the source DDL says ``quantity <> 0``; ``create table if not exists`` leaves
    a table created before that as it was.

    Raises:
      ValueError: naming the migration in docs/migrations.md.
    """
    if db.dialect == SQLITE:
        definitions = [db.scalar("select sql from sqlite_master where type = 'table' and name = 'order_lines'") or ""]
    else:
        definitions = [
            r[0]
            for r in db.query(
                "select pg_get_constraintdef(c.oid) from pg_constraint c "
                "where c.conrelid = to_regclass('order_lines') and c.contype = 'c'"
            )
        ]
    if any(_OLD_QUANTITY_CHECK.search(d) for d in definitions):
        raise ValueError(
            "the source's order_lines table refuses negative quantities (check quantity > 0, created by an "
            "older version): apply the 'Credit lines' migration of docs/migrations.md, or import into a new database"
        )


def table_counts(db: Database) -> dict[str, int]:
    """Row count of each source table."""
    return {table: int(db.scalar(f"select count(*) from {table}")) for table in TABLES}
