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
  checked once, here, against the column's type and the source DDL's length (``char(n)``);
  text and id defaults may name the row's columns as ``{column}``
  (``email = "{user_id}@unknown.invalid"`` keeps emails unique; ``orders.user_id =
  "guest-{order_id}"`` names guest orders), checked per row once filled. Key and
  required columns cannot have defaults;
* status targets must be project statuses; a source value not listed passes only if
  it already is one. An order's status comes from the first ``[[orders.status_rules]]``
  entry its row meets (:class:`StatusRule`: ``prefix``, ``equals``, ``negative`` or
  ``not_blank`` on a source column), else from the status column, else from the default;
* ``order_lines.quantity`` is a non-zero integer: negative on a credit line.

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
SIGNED_INT = "signed_int"  # a non-zero integer: an order line's quantity, negative on a credit line
MAX_IDENTIFIER_LENGTH = 63  # PostgreSQL's NAMEDATALEN - 1; longer names are truncated silently there


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    required: bool = False  # must come from the source; a default is refused
    nullable: bool = False  # may stay NULL when neither mapped nor defaulted
    length: int | None = None  # exact length in characters the source DDL requires (char(n))


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
                Column("country", TEXT, length=2),
                Column("updated_at", TIMESTAMP),
            ),
        ),
        Entity(
            "orders",
            ("order_id",),
            (
                Column("order_id", ID, required=True),
                # A default names guests (``guest-{order_id}``): orders whose user column is blank.
                Column("user_id", ID),
                Column("session_id", ID, nullable=True),
                # From [orders.status_rules] first, then the mapped column, then a default.
                Column("status", STATUS),
                Column("order_ts", TIMESTAMP, required=True),
                Column("updated_at", TIMESTAMP, required=True),
                Column("currency", TEXT, length=3),
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
                # Negative on a credit line (a credit note's, or a return line of an export).
                Column("quantity", SIGNED_INT),
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


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueRejected("not an integer: a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().removeprefix("-").isdigit():
        return int(value.strip())
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    raise ValueRejected(f"not an integer: {value!r:.60}")


def _to_int(value: Any) -> int:
    number = _integer(value)
    if number <= 0:
        raise ValueRejected(f"must be a positive integer, got {number}")
    return number


def _to_signed_int(value: Any) -> int:
    number = _integer(value)
    if number == 0:
        raise ValueRejected("must be a non-zero integer (negative on a credit line), got 0")
    return number


def convert_value(kind: str, column: str, value: Any, zone: tzinfo, length: int | None = None) -> Any:
    """``value`` as the project stores a ``kind`` column (statuses: :meth:`SourceMapping.status`).

    ``length`` is the exact length a text column must have (``char(n)`` in the source DDL).
    """
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
    if kind == SIGNED_INT:
        return _to_signed_int(value)
    text = (value if isinstance(value, str) else str(value)).strip()
    if length is not None and len(text) != length:
        raise ValueRejected(f"must be {length} characters, got {text!r:.40}")
    return text


def is_blank(value: Any) -> bool:
    return (
        value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, float) and value != value)
    )


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


@dataclass(frozen=True)
class StatusRule:
    """``[[orders.status_rules]]``: when the source ``column`` meets the condition, the order has ``status``.

    Conditions (exactly one per rule): ``prefix`` (the trimmed text starts with it),
    ``equals`` (the trimmed text is it, or one of a list), ``negative = true`` (a number
    below 0), ``not_blank = true`` (any value). ``status`` is a project status.
    """

    column: str
    condition: str
    value: Any
    status: str

    def matches(self, raw: Any) -> bool:
        if self.condition == "not_blank":
            return not is_blank(raw)
        if is_blank(raw):
            return False
        if self.condition == "negative":
            number = _number(raw)
            return number is not None and number < 0
        text = str(raw).strip()
        if self.condition == "prefix":
            return text.startswith(self.value)
        return text in self.value  # equals: a tuple of texts

    def to_json(self) -> dict[str, Any]:
        value = list(self.value) if self.condition == "equals" else self.value
        return {"column": self.column, self.condition: value, "status": self.status}


RULE_CONDITIONS = ("prefix", "equals", "negative", "not_blank")


# ---------------------------------------------------------------------------- mapping


@dataclass(frozen=True)
class EntityMapping:
    """One entity's table, column names and defaults, validated."""

    entity: Entity
    table: str
    columns: dict[str, str]  # project column -> source column, for every column read from the source
    defaults: dict[str, Any]  # project column -> typed default (text may hold {column} placeholders)
    status_rules: tuple[StatusRule, ...] = ()  # orders only

    @property
    def source_columns(self) -> list[str]:
        """Every source column read: the mapped ones, then those the status rules test, each once."""
        return list(dict.fromkeys([*self.columns.values(), *(r.column for r in self.status_rules)]))

    @property
    def name(self) -> str:
        return self.entity.name

    def source_column(self, column: str) -> str | None:
        return self.columns.get(column)

    def select_list(self) -> str:
        """The quoted source columns the mapping reads, each once (rows keep the source's names)."""
        return ", ".join(quote_identifier(src) for src in self.source_columns)

    def qcol(self, column: str) -> str:
        """The quoted source column of a project column (for where / order by)."""
        if column not in self.columns:
            raise MappingError(f"{self.name}.{column} has no source column; map it under [{self.name}.columns]")
        return quote_identifier(self.columns[column])

    @property
    def qtable(self) -> str:
        return quote_table(self.table)

    def missing_from(self, available: list[str] | tuple[str, ...], derived: tuple[str, ...] = ()) -> list[str]:
        """Source columns this mapping reads that ``available`` lacks, as ``project (source)``."""
        have = set(available)
        missing = [
            f"{col} (as {src!r})" if col != src else col
            for col, src in self.columns.items()
            if src not in have and col not in derived
        ]
        rules = dict.fromkeys(r.column for r in self.status_rules if r.column not in have)
        return missing + [f"status_rules column {src!r}" for src in rules]

    def unused(self, available: list[str] | tuple[str, ...]) -> list[str]:
        """Columns of ``available`` the mapping does not read (replay and import list them in a warning)."""
        used = set(self.source_columns)
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
                name: {
                    "table": m.table,
                    "columns": dict(m.columns),
                    "defaults": dict(m.defaults),
                    **({"status_rules": [r.to_json() for r in m.status_rules]} if m.status_rules else {}),
                }
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

    def rule_status(self, entity: str, source_row: dict[str, Any]) -> str | None:
        """The status of the first ``status_rules`` entry ``source_row`` meets, else None."""
        for rule in self.entities[entity].status_rules:
            if rule.matches(source_row.get(rule.column)):
                return rule.status
        return None

    def values(
        self, entity: str, source_row: dict[str, Any], overrides: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """The source row's non-blank mapped values as project values, before defaults.

        Returns ``(values, errors)``, errors as ``(column, reason)`` pairs. A status rule
        the row meets sets ``status`` before the status column is read; ``overrides`` are
        project values that replace the source's (a line export's product and user).
        """
        mapping = self.entities[entity]
        values: dict[str, Any] = dict(overrides or {})
        ruled = self.rule_status(entity, source_row)
        if ruled is not None:
            values["status"] = ruled
        errors: list[tuple[str, str]] = []
        for col, src in mapping.columns.items():
            if col in values:
                continue
            raw = source_row.get(src)
            if is_blank(raw):
                continue
            try:
                values[col] = self.convert(entity, col, raw)
            except ValueRejected as exc:
                errors.append((col, str(exc)))
        return values, errors

    def row(
        self, entity: str, source_row: dict[str, Any], overrides: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], list[tuple[str, str]], list[str]]:
        """A row with project column names and values from a row with source column names.

        Returns ``(row, errors, defaulted)``: errors as ``(column, reason)`` pairs (the
        row is unusable when there are any), ``defaulted`` the columns a default filled.
        Unmapped nullable columns without a default are ``None``. ``overrides``: see
        :meth:`values`.
        """
        values, errors = self.values(entity, source_row, overrides)
        failed = {col for col, _ in errors}
        out, missing, defaulted = self.complete(entity, values, skip=failed)
        order = self.entities[entity].entity.names
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
                column = mapping.entity.column(col)
                if column.kind != TEXT:  # an id template (guest-{order_id}) must give a valid id
                    try:
                        default = convert_value(column.kind, col, default, self.timezone)
                    except ValueRejected as exc:
                        errors.append((col, f"default {mapping.defaults[col]!r:.60} gives {exc}"))
                        continue
            out[col] = default
        return out, errors, pending

    # ------------------------------------------------------------------ checks
    def check_columns(
        self, entity: str, available: list[str] | tuple[str, ...], where: str, derived: tuple[str, ...] = ()
    ) -> None:
        """Refuse, in one line, every column the mapping reads that ``where`` does not have.

        ``derived`` names project columns that do not come from ``where`` (a line
        export's product and user keys and times).
        """
        mapping = self.entities[entity]
        missing = mapping.missing_from(available, derived)
        if missing:
            raise MappingError(
                f"{self.origin}: {entity}: column(s) {', '.join(missing)} not found in {where} "
                f"(it has: {', '.join(available) or 'no columns'}); map them under [{entity}.columns]"
                f" (or, for optional columns, give [{entity}.defaults])"
            )


def _project_status(where: str, value: Any, statuses: dict[str, str]) -> str:
    """A status written in the mapping itself: a project status, or a source value under [statuses]."""
    if isinstance(value, str) and value.strip() in statuses:
        return statuses[value.strip()]
    if value in ORDER_STATUSES:
        return value
    raise MappingError(
        f"{where} = {value!r:.40} is not a project status ({', '.join(ORDER_STATUSES)}) nor a value under [statuses]"
    )


def _status_rules(origin: str, raw: Any, statuses: dict[str, str]) -> tuple[StatusRule, ...]:
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise MappingError(
            f"{origin}: orders.status_rules must be a list of tables ([[orders.status_rules]] with column, "
            f"one of {', '.join(RULE_CONDITIONS)}, and status)"
        )
    rules = []
    for number, rule in enumerate(raw, start=1):
        where = f"{origin}: orders.status_rules[{number}]"
        unknown = sorted(set(rule) - {"column", "status", *RULE_CONDITIONS})
        if unknown:
            raise MappingError(
                f"{where}: unknown key(s) {', '.join(unknown)}; allowed: column, status, {', '.join(RULE_CONDITIONS)}"
            )
        conditions = [c for c in RULE_CONDITIONS if c in rule]
        if len(conditions) != 1:
            raise MappingError(f"{where} needs exactly one condition of {', '.join(RULE_CONDITIONS)}")
        condition = conditions[0]
        value = rule[condition]
        if condition in ("negative", "not_blank") and value is not True:
            raise MappingError(f"{where}: {condition} must be true")
        if condition == "prefix" and (not isinstance(value, str) or not value):
            raise MappingError(f"{where}: prefix must be non-empty text, got {value!r:.40}")
        if condition == "equals":
            items = value if isinstance(value, list) else [value]
            if not items or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in items):
                raise MappingError(f"{where}: equals must be text or a list of texts, got {value!r:.40}")
            value = tuple(str(v).strip() for v in items)
        column = _identifier(f"{where}.column", rule.get("column"))
        if "status" not in rule:
            raise MappingError(f"{where} needs a status (one of {', '.join(ORDER_STATUSES)})")
        rules.append(StatusRule(column, condition, value, _project_status(f"{where}.status", rule["status"], statuses)))
    return tuple(rules)


def _section(origin: str, name: str, raw: Any, zone: tzinfo, statuses: dict[str, str]) -> EntityMapping:
    entity = ENTITIES[name]
    allowed = (*SECTION_KEYS, "status_rules") if name == "orders" else SECTION_KEYS
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise MappingError(f"{origin}: [{name}] must be a table with keys {', '.join(allowed)}")
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise MappingError(
            f"{origin}: unknown key(s) {', '.join(f'{name}.{k}' for k in unknown)}; allowed: {', '.join(allowed)}"
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
            if names and column.kind in (TEXT, ID):
                defaults[col] = value  # checked per row, once the placeholders are filled
                continue
            if names:
                raise MappingError(f"{where}: placeholders are only allowed in text and id columns")
        if column.kind == STATUS:
            defaults[col] = _project_status(where, value, statuses)
            continue
        # Checked here, once, with the length the source DDL needs (users.country = "ZZZ" is
        # one error at load, not one per row of every file).
        try:
            defaults[col] = convert_value(column.kind, col, value, zone, column.length)
        except ValueRejected as exc:
            raise MappingError(f"{where}: {exc}") from None
    rules = _status_rules(origin, raw["status_rules"], statuses) if "status_rules" in raw else ()
    return EntityMapping(entity, table, columns, defaults, rules)


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
    entities = {name: _section(origin, name, document.get(name), zone, statuses) for name in ENTITIES}
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
