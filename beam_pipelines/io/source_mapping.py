"""Source mappings: how a user's own tables, views or files map onto the project's source model.

The jobs and the orders API speak one model, the DDL of :mod:`beam_pipelines.io.sql`:
products, users, orders and order_lines with fixed column names and the project's
order statuses. A real source system has its own names, its own status values and
often naive timestamps. A mapping file (TOML or JSON, parsed with the standard
library) says, once, how to read it::

    timezone = "America/Sao_Paulo"      # zone of naive timestamps in the source (default UTC)

    [statuses]                          # source status -> one of sql.ORDER_STATUSES
    created = "placed"
    canceled = "cancelled"

    [products]
    table = "shop.catalog_items"        # table or view, optionally schema-qualified
    columns = { product_id = "sku", product_name = "title", category = "category_name" }
    defaults = { price = "0.00", updated_at = "2018-01-01T00:00:00Z" }

Rules, checked by :func:`parse` (each failure a :class:`MappingError` with one line
naming the file, the key and what is allowed):

* top-level keys: ``timezone``, ``statuses`` and one section per entity of
  :data:`ENTITIES`; a section has ``table``, ``columns`` and ``defaults`` only;
* ``columns`` maps a project column to the source column holding it; a column that is
  neither mapped nor defaulted is read from a source column of its own name;
* ``defaults`` fill a column the source lacks (or its NULL / blank values). They are
  checked against the column's type; text defaults may name the row's columns as
  ``{column}`` (``email = "{user_id}@unknown.invalid"`` keeps emails unique). Key
  and required columns cannot have defaults;
* status targets must be project statuses; a source value not listed passes only if
  it already is one.

:meth:`SourceMapping.check_columns` then compares the mapping with the columns the
source really has (a live table's, or a file's header) and refuses, in one line,
every required column it cannot find. The built-in generated world is read through
:meth:`SourceMapping.default`: the identity onto the project's own DDL.

SQL is built by :meth:`EntityMapping.select_sql` as fixed text over these validated
identifiers, each quoted (``"name"``, quotes doubled) for SQLite and PostgreSQL alike;
values are always bound parameters.
"""

from __future__ import annotations

import json
import re
import tomllib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from beam_pipelines import events
from beam_pipelines.io import sql
from beam_pipelines.io.sql import ORDER_STATUSES
from beam_pipelines.io.sql_login import SqlLogin

ID, TEXT, DECIMAL, TIMESTAMP, DATE, INT, STATUS = "id", "text", "decimal", "timestamp", "date", "int", "status"
MAX_IDENTIFIER_LENGTH = 63  # PostgreSQL's NAMEDATALEN - 1; longer names are truncated silently there


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    required: bool = False  # must come from the source; a default is refused
    nullable: bool = False  # may stay NULL when neither mapped nor defaulted


@dataclass(frozen=True)
class Entity:
    name: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in (
        Entity(
            "products",
            ("product_id",),
            (
                Column("product_id", ID, required=True),
                Column("product_name", TEXT),
                Column("category", TEXT),
                Column("price", DECIMAL),
                Column("updated_at", TIMESTAMP),
            ),
        ),
        Entity(
            "users",
            ("user_id",),
            (
                Column("user_id", ID, required=True),
                Column("user_name", TEXT),
                Column("email", TEXT),
                Column("signup_date", DATE),
                Column("country", TEXT),
                Column("updated_at", TIMESTAMP),
            ),
        ),
        Entity(
            "orders",
            ("order_id",),
            (
                Column("order_id", ID, required=True),
                Column("user_id", ID, required=True),
                Column("session_id", ID, nullable=True),
                Column("status", STATUS, required=True),
                Column("order_ts", TIMESTAMP, required=True),
                Column("updated_at", TIMESTAMP, required=True),
                Column("currency", TEXT),
            ),
        ),
        Entity(
            "order_lines",
            ("order_id", "line_number"),
            (
                Column("order_id", ID, required=True),
                # Unmapped and without a default: lines are numbered 1..n per order in source order.
                Column("line_number", INT, nullable=True),
                Column("product_id", ID, required=True),
                Column("quantity", INT),
                Column("unit_price", DECIMAL, required=True),
            ),
        ),
        # A clickstream file read for its product and user columns (publishers.import_files).
        Entity(
            "clickstream",
            ("product_id",),
            (
                Column("product_id", ID, required=True),
                Column("user_id", ID, required=True),
                Column("event_ts", TIMESTAMP, required=True),
                Column("product_name", TEXT, nullable=True),
                Column("category", TEXT, nullable=True),
                Column("price", DECIMAL, nullable=True),
            ),
        ),
    )
}
# The public "eCommerce behavior data from multi category store" export's names.
CLICKSTREAM_COLUMNS = {
    "event_ts": "event_time",
    "category": "category_code",
    "product_name": "brand",
    "price": "price",
}
SECTION_KEYS = ("table", "columns", "defaults")
TOP_KEYS = ("timezone", "statuses", *ENTITIES)
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class MappingError(ValueError):
    """The mapping file, or the source it describes, breaks a rule; the message names key and rule."""


def quote_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier (``"a""b"``), valid in SQLite and PostgreSQL."""
    return '"' + name.replace('"', '""') + '"'


def quote_table(name: str) -> str:
    """``table`` or ``schema.table``, each part quoted."""
    return ".".join(quote_identifier(part) for part in name.split("."))


def _identifier(where: str, value: Any, *, dotted: bool = False) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MappingError(f"{where} must be a non-empty name, got {value!r:.60}")
    parts = value.split(".") if dotted else [value]
    if len(parts) > 2 or any(not p or p != p.strip() or _CONTROL.search(p) for p in parts):
        shape = "a table name or schema.table" if dotted else "a column name"
        raise MappingError(f"{where} = {value!r:.60} is not {shape} (no control characters or edge spaces)")
    if any(len(p) > MAX_IDENTIFIER_LENGTH for p in parts):
        raise MappingError(f"{where} = {value!r:.60} is longer than {MAX_IDENTIFIER_LENGTH} characters")
    return value


def parse_timezone(value: Any, where: str = "timezone") -> tzinfo:
    """An IANA zone name (``Europe/Berlin``) or ``UTC``; MappingError otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise MappingError(f"{where} must be an IANA time zone name such as 'UTC' or 'America/Sao_Paulo'")
    if value.strip().upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise MappingError(
            f"{where} = {value!r:.60} is not a known IANA time zone (e.g. 'America/Sao_Paulo')"
        ) from None


# ---------------------------------------------------------------------------- values


class ValueRejected(ValueError):
    """One value cannot be read as its column's type; the message is the reason."""


def to_timestamp(value: Any, zone: tzinfo) -> str:
    """A timestamp (datetime or ISO-8601 text, naive ones read in ``zone``) as canonical UTC text."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(" UTC"):
            text = text[:-4] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueRejected(f"not an ISO-8601 timestamp: {value!r:.60}") from None
    else:
        raise ValueRejected(f"not a timestamp: {type(value).__name__}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone)
    return events.format_ts(dt)


def _to_date(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        text = value.strip()
        try:
            return (
                date.fromisoformat(text[:10]).isoformat() if len(text) >= 10 else date.fromisoformat(text).isoformat()
            )
        except ValueError:
            raise ValueRejected(f"not a date (YYYY-MM-DD): {value!r:.60}") from None
    raise ValueRejected(f"not a date: {type(value).__name__}")


def _to_decimal(value: Any) -> str:
    if isinstance(value, bool):
        raise ValueRejected("not a number: a boolean")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueRejected(f"not a number: {value!r:.60}") from None
    if not amount.is_finite() or amount < 0 or amount >= Decimal("1e10"):
        raise ValueRejected(f"out of range [0, 1e10): {value!r:.60}")
    return str(amount.quantize(events.CENTS))


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueRejected("not an integer: a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        number = int(value.strip())
    elif isinstance(value, Decimal) and value == value.to_integral_value():
        number = int(value)
    else:
        raise ValueRejected(f"not an integer: {value!r:.60}")
    if number <= 0:
        raise ValueRejected(f"must be a positive integer, got {number}")
    return number


def convert_value(kind: str, column: str, value: Any, zone: tzinfo) -> Any:
    """``value`` as the project stores a ``kind`` column (statuses: :meth:`SourceMapping.status`)."""
    if kind == ID:
        if isinstance(value, uuid.UUID):  # PostgreSQL uuid columns come back as UUID objects
            value = str(value)
        try:
            return events.id_text(value, column, required=True)
        except events.InvalidEvent as exc:
            raise ValueRejected(exc.reason) from None
    if kind == TIMESTAMP:
        return to_timestamp(value, zone)
    if kind == DATE:
        return _to_date(value)
    if kind == DECIMAL:
        return _to_decimal(value)
    if kind == INT:
        return _to_int(value)
    return (value if isinstance(value, str) else str(value)).strip()


def is_blank(value: Any) -> bool:
    return (
        value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, float) and value != value)
    )


# ---------------------------------------------------------------------------- mapping


@dataclass(frozen=True)
class EntityMapping:
    """One entity's table, column names and defaults, validated."""

    entity: Entity
    table: str
    columns: dict[str, str]  # project column -> source column, for every column read from the source
    defaults: dict[str, Any]  # project column -> typed default (text may hold {column} placeholders)

    @property
    def name(self) -> str:
        return self.entity.name

    def source_column(self, column: str) -> str | None:
        return self.columns.get(column)

    def select_list(self) -> str:
        """The quoted source columns the mapping reads, each once (rows keep the source's names)."""
        return ", ".join(quote_identifier(src) for src in dict.fromkeys(self.columns.values()))

    def qcol(self, column: str) -> str:
        """The quoted source column of a project column (for where / order by)."""
        if column not in self.columns:
            raise MappingError(f"{self.name}.{column} has no source column; map it under [{self.name}.columns]")
        return quote_identifier(self.columns[column])

    @property
    def qtable(self) -> str:
        return quote_table(self.table)

    def missing_from(self, available: list[str] | tuple[str, ...]) -> list[str]:
        """Source columns this mapping reads that ``available`` lacks, as ``project (source)``."""
        have = set(available)
        return [f"{col} (as {src!r})" if col != src else col for col, src in self.columns.items() if src not in have]

    def unused(self, available: list[str] | tuple[str, ...]) -> list[str]:
        """Columns of ``available`` the mapping does not read (replay and import list them in a warning)."""
        used = set(self.columns.values())
        return [c for c in available if c not in used]


@dataclass(frozen=True)
class SourceMapping:
    """A validated mapping (see the module docstring); :meth:`default` is the identity."""

    timezone_name: str = "UTC"
    statuses: dict[str, str] = field(default_factory=dict)
    entities: dict[str, EntityMapping] = field(default_factory=dict)
    origin: str = "default mapping"

    @property
    def timezone(self) -> tzinfo:
        return parse_timezone(self.timezone_name)

    def __getitem__(self, name: str) -> EntityMapping:
        return self.entities[name]

    @classmethod
    def default(cls) -> SourceMapping:
        """The identity onto the project's own DDL (the built-in generated world), nullable columns too."""
        document = {
            name: {"columns": {c.name: c.name for c in e.columns if c.nullable}}
            for name, e in ENTITIES.items()
            if name != "clickstream"
        }
        return parse(document, "default mapping")

    def to_json(self) -> dict[str, Any]:
        """The mapping as a JSON-ready document :func:`parse` reads back (jobs ship it to workers)."""
        return {
            "timezone": self.timezone_name,
            "statuses": dict(self.statuses),
            **{
                name: {"table": m.table, "columns": dict(m.columns), "defaults": dict(m.defaults)}
                for name, m in self.entities.items()
            },
        }

    # ------------------------------------------------------------------ values
    def status(self, value: Any) -> str:
        """The project status of a source status; ValueRejected when the mapping has none."""
        text = value.strip() if isinstance(value, str) else value
        if isinstance(text, str) and text in self.statuses:
            return self.statuses[text]
        if text in ORDER_STATUSES:
            return text
        listed = ", ".join(sorted(self.statuses)) or "none"
        raise ValueRejected(
            f"status {value!r:.60} is not mapped: add it under [statuses] (mapped: {listed}; "
            f"targets: {', '.join(ORDER_STATUSES)})"
        )

    def unmapped_statuses(self, values: list[Any]) -> list[str]:
        out = []
        for value in values:
            try:
                self.status(value)
            except ValueRejected:
                out.append(str(value))
        return sorted(set(out))

    def convert(self, entity: str, column: str, value: Any) -> Any:
        """One source value as the project stores it (canonical text / int); ValueRejected otherwise."""
        kind = ENTITIES[entity].column(column).kind
        if kind == STATUS:
            return self.status(value)
        return convert_value(kind, column, value, self.timezone)

    def row(self, entity: str, source_row: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]], list[str]]:
        """A row with project column names and values from a row with source column names.

        Returns ``(row, errors, defaulted)``: errors as ``(column, reason)`` pairs (the
        row is unusable when there are any), ``defaulted`` the columns a default filled.
        Unmapped nullable columns without a default are ``None``.
        """
        mapping = self.entities[entity]
        values: dict[str, Any] = {}
        errors: list[tuple[str, str]] = []
        for col, src in mapping.columns.items():
            raw = source_row.get(src)
            if is_blank(raw):
                continue
            try:
                values[col] = self.convert(entity, col, raw)
            except ValueRejected as exc:
                errors.append((col, str(exc)))
        failed = {col for col, _ in errors}
        out, missing, defaulted = self.complete(entity, values, skip=failed)
        order = mapping.entity.names
        return out, sorted(errors + missing, key=lambda e: order.index(e[0])), defaulted

    def complete(
        self, entity: str, values: dict[str, Any], skip: set[str] = frozenset()
    ) -> tuple[dict[str, Any], list[tuple[str, str]], list[str]]:
        """Project values of one row with blanks filled by the mapping's defaults.

        Returns ``(row, errors, defaulted)`` as :meth:`row`; ``skip`` names columns
        already reported as errors.
        """
        mapping = self.entities[entity]
        out: dict[str, Any] = {}
        errors: list[tuple[str, str]] = []
        pending: list[str] = []
        for col in mapping.entity.names:
            if col in skip:
                continue
            if not is_blank(values.get(col)):
                out[col] = values[col]
            elif col in mapping.defaults:
                pending.append(col)
            elif mapping.entity.column(col).nullable:
                out[col] = None
            else:
                src = mapping.columns.get(col)
                where = f"source column {src!r}" if src else "not in the source"
                errors.append((col, f"is empty ({where}) and the mapping gives no default"))
        # Plain defaults first, then templates, so a template can name a defaulted column too.
        templated = [
            c for c in pending if isinstance(mapping.defaults[c], str) and _PLACEHOLDER.search(mapping.defaults[c])
        ]
        for col in [c for c in pending if c not in templated] + templated:
            default = mapping.defaults[col]
            if col in templated:
                default = _PLACEHOLDER.sub(lambda m: str(out.get(m.group(1)) or ""), default)
            out[col] = default
        return out, errors, pending

    # ------------------------------------------------------------------ checks
    def check_columns(self, entity: str, available: list[str] | tuple[str, ...], where: str) -> None:
        """Refuse, in one line, every column the mapping reads that ``where`` does not have."""
        mapping = self.entities[entity]
        missing = mapping.missing_from(available)
        if missing:
            raise MappingError(
                f"{self.origin}: {entity}: column(s) {', '.join(missing)} not found in {where} "
                f"(it has: {', '.join(available) or 'no columns'}); map them under [{entity}.columns]"
                f" (or, for optional columns, give [{entity}.defaults])"
            )


def _section(origin: str, name: str, raw: Any, zone: tzinfo) -> EntityMapping:
    entity = ENTITIES[name]
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise MappingError(f"{origin}: [{name}] must be a table with keys {', '.join(SECTION_KEYS)}")
    unknown = sorted(set(raw) - set(SECTION_KEYS))
    if unknown:
        raise MappingError(
            f"{origin}: unknown key(s) {', '.join(f'{name}.{k}' for k in unknown)}; allowed: {', '.join(SECTION_KEYS)}"
        )
    table = _identifier(f"{origin}: {name}.table", raw.get("table", name), dotted=True)
    columns_raw = raw.get("columns", {})
    defaults_raw = raw.get("defaults", {})
    for key, value in (("columns", columns_raw), ("defaults", defaults_raw)):
        if not isinstance(value, dict):
            raise MappingError(f"{origin}: {name}.{key} must be a table of column = value")
        unknown = sorted(set(value) - set(entity.names))
        if unknown:
            raise MappingError(
                f"{origin}: unknown column(s) {', '.join(f'{name}.{key}.{k}' for k in unknown)}; "
                f"{name} has: {', '.join(entity.names)}"
            )
    columns: dict[str, str] = {}
    for col in entity.names:
        if col in columns_raw:
            columns[col] = _identifier(f"{origin}: {name}.columns.{col}", columns_raw[col])
        elif col not in defaults_raw and not entity.column(col).nullable:
            columns[col] = col  # identity: a source column of the project's name
    # Nullable columns are read only when mapped: a source without session ids just has none.
    if name == "clickstream":
        for col, src in CLICKSTREAM_COLUMNS.items():
            if col not in columns_raw and col not in defaults_raw:
                columns[col] = src
    defaults: dict[str, Any] = {}
    for col, value in defaults_raw.items():
        column = entity.column(col)
        where = f"{origin}: {name}.defaults.{col}"
        if column.required:
            raise MappingError(
                f"{where}: {col} is required and must come from the source; map it under [{name}.columns]"
            )
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise MappingError(f"{where} must be text or a number, got {type(value).__name__}")
        if isinstance(value, str):
            names = set(_PLACEHOLDER.findall(value))
            bad = sorted(names - set(entity.names))
            if bad:
                raise MappingError(
                    f"{where}: placeholder(s) {', '.join('{' + b + '}' for b in bad)} are not {name} columns"
                )
            if names and column.kind == TEXT:
                defaults[col] = value
                continue
            if names:
                raise MappingError(f"{where}: placeholders are only allowed in text columns")
        try:
            defaults[col] = convert_value(column.kind, col, value, zone)
        except ValueRejected as exc:
            raise MappingError(f"{where}: {exc}") from None
    return EntityMapping(entity, table, columns, defaults)


def parse(document: Any, origin: str) -> SourceMapping:
    """Validate a decoded mapping document (see the module docstring)."""
    if not isinstance(document, dict):
        raise MappingError(f"{origin}: the mapping must be a table (TOML) or an object (JSON)")
    unknown = sorted(set(document) - set(TOP_KEYS))
    if unknown:
        raise MappingError(f"{origin}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(TOP_KEYS)}")
    zone_name = document.get("timezone", "UTC")
    zone = parse_timezone(zone_name, f"{origin}: timezone")
    statuses_raw = document.get("statuses", {})
    if not isinstance(statuses_raw, dict):
        raise MappingError(f"{origin}: statuses must be a table of source_status = project_status")
    statuses: dict[str, str] = {}
    for source, target in statuses_raw.items():
        if target not in ORDER_STATUSES:
            raise MappingError(
                f"{origin}: statuses.{source} = {target!r:.40} is not a project status; expected one of "
                f"{', '.join(ORDER_STATUSES)}"
            )
        statuses[str(source).strip()] = target
    entities = {name: _section(origin, name, document.get(name), zone) for name in ENTITIES}
    return SourceMapping(str(zone_name).strip(), statuses, entities, origin)


def load(path: str | Path | None) -> SourceMapping:
    """The mapping in ``path`` (``.toml`` or ``.json``), or the default (identity) mapping for None."""
    if path is None:
        return SourceMapping.default()
    path = Path(path)
    origin = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"cannot read mapping file {origin}: {exc.strerror or exc}") from None
    try:
        document = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise MappingError(f"{origin} is not valid {kind}: {str(exc).splitlines()[0]}") from None
    return parse(document, origin)


def live_columns(db: Any, mapping: EntityMapping) -> list[str]:
    """The columns of the mapped table or view in ``db`` (:class:`beam_pipelines.io.sql.Database`)."""
    try:
        return db.describe(f"select * from {mapping.qtable} where 1 = 0")
    except Exception as exc:  # sqlite3 / psycopg errors differ; both mean the table cannot be read
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MappingError(f"{mapping.name}: table or view {mapping.table!r} cannot be read: {first}") from None


def check_live(db: Any, mapping: SourceMapping, entity: str) -> None:
    """Refuse a mapping whose table or columns the live database does not have."""
    columns = live_columns(db, mapping[entity])
    mapping.check_columns(entity, columns, f"table {mapping[entity].table!r}")


def connect(login: SqlLogin | str, mapping: SourceMapping) -> Any:
    """``login.connect()`` (a URL: :class:`SqlLogin` of that URL), with PostgreSQL's session zone set to the mapping's.

    Then a ``timestamp without time zone`` column compares with the (UTC) bound
    parameters as local time of the source, which is what its values mean.
    """
    db = (SqlLogin(database_url=login) if isinstance(login, str) else login).connect()
    if db.dialect == sql.POSTGRESQL and mapping.timezone_name.upper() != "UTC":
        db.scalar("select set_config('TimeZone', :zone, false)", {"zone": mapping.timezone_name})
    return db
