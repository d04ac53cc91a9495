"""The event contract over columns: a fast path that only accepts what :mod:`events` accepts unchanged.

:mod:`beam_pipelines.events` is the contract; nothing here restates its rules. This
module recognises, with one regular expression over a whole batch of payloads (RE2 in
pyarrow, no Python per line), the payloads whose verdict under
``events.parse_message`` is obvious from their bytes: the compact or default
``json.dumps`` of the wire format, keys in the wire order, every value in its canonical
spelling. For those rows it builds the same event columns ``events.validate_record``
would return. Every other payload is *not accepted* and the caller hands it to the
contract itself; so the result of "fast path, else contract" is the contract's result
by construction, and ``tests/transforms/test_sharded_events.py`` proves it row for row.

What the fast path accepts (a strict subset of the contract), and why it is safe:

* the payload is ``{"event_id":…,"event_name":…,"event_ts":…,"user_id":…,"session_id":…,
  "product_id":…,"price":…,"quantity":…,"order_id":…}`` exactly (``, `` and ``: `` also
  allowed): one JSON object, no duplicate or unknown keys, no nesting; strings are
  printable ASCII without ``"`` or ``\\`` (so no escapes: the bytes are the text, and the
  payload is valid UTF-8 and far below ``MAX_PAYLOAD_BYTES``);
* ids: a string that needs no trimming (first and last character not a space), 1..128
  characters, or an integer without sign games (``0`` or ``-?[1-9]\\d*``, so its text is
  the digits); ``session_id``/``order_id`` may also be ``null`` or ``""`` (none);
  ``order_id`` is required for ``order``/``return``, dropped for other events;
* ``event_name``: one of ``events.EVENT_NAMES``;
* ``event_ts``: the canonical form (``events._CANONICAL_TS``: returned as it is) with
  minutes and seconds 00..59 and its ``YYYY-MM-DDTHH`` one of the caller's accepted
  hours (each a real hour after 2000-01-01, inside the job window and not more than
  ``events.MAX_FUTURE_SKEW`` ahead of the message's receive time), so the date is valid
  and every range rule holds; ``event_time`` is computed in integer microseconds and
  divided once, as ``datetime.timestamp`` does, so the float is identical;
* ``price``: ``events._CANONICAL_PRICE`` text (returned as it is);
* ``quantity``: an integer 1..10000.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from beam_pipelines import events

EVENT_SCHEMA = pa.schema(
    [
        (name, pa.float64() if name == "event_time" else pa.int64() if name == "quantity" else pa.string())
        for name in events.EVENT_FIELDS
    ]
)

_STR = r"[ !#-\[\]-~]"  # printable ASCII except '"' and '\': a JSON string without escapes
_INT = r"0|-?[1-9][0-9]*"


def _id(name: str) -> str:
    # Unambiguous at every character (RE2 then extracts in one pass, ~4x faster than with
    # a bounded repeat or a "no space at the ends" class); the text's length, its ends and
    # "" are checked on the extracted column (_id_column).
    return rf'(?:"(?P<{name}_s>{_STR}*)"|(?P<{name}_i>{_INT}))'


def _optional_id(name: str) -> str:
    return rf"(?:null|{_id(name)})"


_SEP = ", ?"
_COLON = ": ?"
_NAMES = "|".join(re.escape(n) for n in events.EVENT_NAMES)


def _field(key: str, value: str, first: bool = False) -> str:
    return ("" if first else _SEP) + f'"{key}"{_COLON}{value}'


FAST_PAYLOAD = (
    r"^\{"
    + _field("event_id", _id("event_id"), first=True)
    + _field("event_name", rf'"(?P<event_name>{_NAMES})"')
    + _field(
        "event_ts",
        r'"(?P<event_ts>(?P<ts_hour>\d{4}-\d\d-\d\dT\d\d):(?P<ts_min>[0-5]\d):(?P<ts_sec>[0-5]\d)\.(?P<ts_us>\d{6})Z)"',
    )
    + _field("user_id", _id("user_id"))
    + _field("session_id", _optional_id("session_id"))
    + _field("product_id", _id("product_id"))
    + _field("price", r'"(?P<price>(?:0|[1-9]\d{0,8})\.\d\d)"')
    + _field("quantity", r"(?P<quantity>[1-9]\d{0,4})")
    + _field("order_id", _optional_id("order_id"))
    + r"\}$"
)
_US = 1_000_000


def _accept_pattern() -> str:
    """:data:`FAST_PAYLOAD` as a yes/no pattern for RE2's DFA, a little stricter.

    No captures (RE2 then decides with its DFA, ~5x faster than extracting), integers of
    at most 18 digits (Arrow's JSON reader reads longer ones as doubles) and timestamps
    with a month 01-12, a day 01-31 and an hour 00-23.
    """
    pattern = re.sub(r"\(\?P<\w+>", "(?:", FAST_PAYLOAD)
    pattern = pattern.replace(_INT, r"0|-?[1-9][0-9]{0,17}")
    stamp = r"\d{4}-\d\d-\d\dT\d\d"
    assert stamp in pattern
    return pattern.replace(stamp, r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3])")


FAST_ACCEPT = _accept_pattern()


def accepted_hours(start: datetime, end: datetime, now: datetime) -> dict[str, int]:
    """``YYYY-MM-DDTHH`` -> the hour's epoch microseconds, for the whole hours the fast path may accept.

    An hour qualifies when it lies inside ``[start, end)``, is not before
    ``events.MIN_EVENT_TIME`` and ends no later than ``now + events.MAX_FUTURE_SKEW``, so
    no timestamp in it can break a time rule. (Rows with a later receive time than
    ``now`` may accept more hours: :func:`fast_events` takes that per row.)
    """
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if hour < start:
        hour += timedelta(hours=1)
    hours = {}
    while hour + timedelta(hours=1) <= end:
        if hour >= events.MIN_EVENT_TIME:
            hours[hour.strftime("%Y-%m-%dT%H")] = epoch_us(hour)
        hour += timedelta(hours=1)
    return hours


def epoch_us(dt: datetime) -> int:
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * _US + delta.microseconds


def _id_text(text: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(id text or None for "", whether the text is one the contract keeps unchanged)."""
    length = pc.utf8_length(text)
    # Printable ASCII: the only character str.strip() removes is the space. starts_with /
    # ends_with, not the regex "^ | $": ~0.01 against ~0.12 µs an id (5 ids an event).
    trimmed = pc.invert(pc.or_(pc.starts_with(text, " "), pc.ends_with(text, " ")))
    # NULL (JSON null, from the JSON reader) is no id, as "" is.
    as_is = pc.fill_null(pc.and_(pc.less_equal(length, events.MAX_ID_LENGTH), trimmed), True)
    return pc.if_else(pc.equal(length, 0), pa.scalar(None, pa.string()), text), as_is


_ID_FIELDS = ("event_id", "user_id", "session_id", "product_id", "order_id")
# What the JSON reader is told; the ids' type (a string or an integer, per producer) it infers.
_JSON_SCHEMA = pa.schema(
    [("event_name", pa.string()), ("event_ts", pa.string()), ("price", pa.string()), ("quantity", pa.int64())]
)
_HOUR_US = 3600 * _US


def _json_columns(accepted: pa.Array) -> dict[str, pa.Array] | None:
    """The accepted payloads' columns from Arrow's JSON reader, or None where it cannot type them alone.

    :data:`FAST_ACCEPT` has already proven each payload is the wire format with canonical
    values, so the reader only has to type them: each id column comes out as strings, as
    integers (at most 18 digits, so int64, whose decimal text is the JSON text) or as
    NULLs. It reads a whole block or fails: a block mixing string and integer ids of one
    field, or a calendar date that does not exist (``2026-02-30``), returns None and the
    caller extracts the block with :data:`FAST_PAYLOAD` instead.
    """
    joined = pc.binary_join_element_wise(accepted, pa.scalar(b"", pa.binary()), pa.scalar(b"\n", pa.binary()))
    offsets = np.frombuffer(joined.buffers()[1], np.int32, len(joined) + 1, joined.offset * 4)
    data = joined.buffers()[2][int(offsets[0]) : int(offsets[-1])]
    try:
        table = pajson.read_json(
            pa.BufferReader(data),
            read_options=pajson.ReadOptions(use_threads=False, block_size=len(data) + 1),
            parse_options=pajson.ParseOptions(explicit_schema=_JSON_SCHEMA),
        ).combine_chunks()
        if table.num_rows != len(accepted):
            return None
        columns = {
            name: table[name].chunk(0) if table[name].num_chunks else pa.array([], table[name].type)
            for name in table.column_names
        }
        for name in _ID_FIELDS:
            column = columns.get(name)
            if column is None or pa.types.is_null(column.type):
                columns[name] = pa.nulls(len(accepted), pa.string())
            elif pa.types.is_int64(column.type):
                columns[name] = column.cast(pa.string())
            elif not pa.types.is_string(column.type):
                return None
        # A date that does not exist raises (the pattern bounds month, day and hour only).
        columns["event_us"] = pc.cast(columns["event_ts"], pa.timestamp("us", "UTC")).cast(pa.int64())
    except pa.ArrowInvalid:
        return None
    return columns


def _regex_columns(payloads: pa.Array, hours: dict[str, int]) -> tuple[dict[str, pa.Array], np.ndarray]:
    """The columns of the payloads :data:`FAST_PAYLOAD` matches (one RE2 pass with captures), and their rows."""
    everything = pc.extract_regex(payloads, FAST_PAYLOAD)
    matched = np.asarray(everything.is_valid())
    # Columns of rows that did not match are empty: work on the matched rows only.
    g = everything.filter(pa.array(matched))
    columns = {
        name: pc.binary_join_element_wise(g.field(f"{name}_s"), g.field(f"{name}_i"), b"").cast(pa.string())
        for name in _ID_FIELDS
    }
    for name in ("event_name", "event_ts", "price"):
        columns[name] = g.field(name).cast(pa.string())
    columns["quantity"] = g.field("quantity").cast(pa.string()).cast(pa.int64())
    # The hour is looked up among the accepted hours (which holds real dates only).
    hour_index = pc.index_in(g.field("ts_hour").cast(pa.string()), value_set=pa.array(list(hours)))
    hour_us = pc.take(pa.array(list(hours.values()), pa.int64()), hour_index)
    minute = g.field("ts_min").cast(pa.string()).cast(pa.int64())
    second = g.field("ts_sec").cast(pa.string()).cast(pa.int64())
    micro = g.field("ts_us").cast(pa.string()).cast(pa.int64())
    columns["event_us"] = pc.add(hour_us, pc.add(pc.multiply(pc.add(pc.multiply(minute, 60), second), _US), micro))
    return columns, np.flatnonzero(matched)


def fast_events(
    payloads: Sequence[bytes] | pa.Array,
    hours: dict[str, int],
    receive_us: Sequence[int | None] | None = None,
    default_receive_us: int | None = None,
) -> tuple[pa.Table, np.ndarray]:
    """The events of the payloads the fast path accepts, and the acceptance mask.

    Two passes over the bytes, both in C++: the RE2 DFA of :data:`FAST_ACCEPT` (no
    captures: ~0.4 µs a payload) decides, Arrow's JSON reader types the accepted payloads
    (~1 µs); a block the reader cannot type alone goes through one RE2 extraction with
    captures instead (~2 µs, :func:`_regex_columns`).

    Args:
      payloads: raw message data, one per row (bytes, or a binary Arrow array).
      hours: the accepted hours (:func:`accepted_hours`).
      receive_us: per row, the message's receive time in epoch microseconds (its
        publish time) or None for ``default_receive_us``; the future-skew rule is
        checked against it, exactly as ``events.parse_message(now=...)`` does.
      default_receive_us: receive time of rows without their own (None: the hours
        were already limited by :func:`accepted_hours`).

    Returns:
      ``(table, mask)``: ``table`` has :data:`EVENT_SCHEMA` and one row per ``True`` in
      ``mask`` (a numpy bool array, in order); a ``False`` row must be judged by
      ``events.parse_message``.
    """
    n = len(payloads)
    if n == 0 or not hours:
        return EVENT_SCHEMA.empty_table(), np.zeros(n, dtype=bool)
    if not isinstance(payloads, pa.Array):
        payloads = pa.array(payloads, pa.binary())
    accepted = pc.match_substring_regex(payloads, FAST_ACCEPT).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(accepted)
    columns = _json_columns(payloads.filter(pa.array(accepted))) if len(rows) else {}
    if columns is None:
        columns, rows = _regex_columns(payloads, hours)
    if len(rows) == 0:
        return EVENT_SCHEMA.empty_table(), np.zeros(n, dtype=bool)
    ids = {name: _id_text(columns[name]) for name in _ID_FIELDS}
    name = columns["event_name"]
    needs_order = pc.is_in(name, value_set=pa.array(sorted(events.ORDER_EVENTS)))
    event_us = columns["event_us"]
    hour_us = pc.multiply(pc.divide(event_us, _HOUR_US), _HOUR_US)  # events are after 2000: positive
    conditions = [
        pc.is_in(hour_us, value_set=pa.array(list(hours.values()), pa.int64())),
        pc.less_equal(columns["quantity"], events.MAX_QUANTITY),
        *(as_is for _, as_is in ids.values()),
        *(ids[key][0].is_valid() for key in ("event_id", "user_id", "product_id")),
        pc.invert(pc.and_(needs_order, ids["order_id"][0].is_null())),
    ]
    if receive_us is not None or default_receive_us is not None:
        received = pa.array(
            [default_receive_us if receive_us is None or receive_us[i] is None else receive_us[i] for i in rows],
            pa.int64(),
        )
        # The hour must end no later than receive time + skew: then no instant in it is "in the future".
        skew_us = int(events.MAX_FUTURE_SKEW / timedelta(microseconds=1))
        conditions.append(pc.less_equal(pc.add(hour_us, _HOUR_US), pc.add(received, skew_us)))
    keep = conditions[0]
    for condition in conditions[1:]:
        keep = pc.and_kleene(keep, condition)
    keep = pc.fill_null(keep, False)
    table = pa.table(
        {
            "event_id": ids["event_id"][0],
            "event_name": name,
            "event_ts": columns["event_ts"],
            # datetime.timestamp(): integer microseconds divided once, so the same float.
            "event_time": pc.divide(event_us.cast(pa.float64()), float(_US)),
            "user_id": ids["user_id"][0],
            "session_id": ids["session_id"][0],
            "product_id": ids["product_id"][0],
            "price": columns["price"],
            "quantity": columns["quantity"],
            "order_id": pc.if_else(needs_order, ids["order_id"][0], pa.scalar(None, pa.string())),
        },
        schema=EVENT_SCHEMA,
    ).filter(keep)
    mask = np.zeros(n, dtype=bool)
    mask[rows[keep.to_numpy(zero_copy_only=False)]] = True
    return table, mask


def events_table(rows: Sequence[dict]) -> pa.Table:
    """An event table from event dicts (``events.validate_record`` results)."""
    return pa.Table.from_pylist(list(rows), schema=EVENT_SCHEMA)


def dedupe(table: pa.Table, winner_key) -> tuple[pa.Table, int]:
    """One row per ``event_id``: rows of unrepeated ids as they are, a repeated id's ``winner_key`` minimum.

    ``winner_key`` is the per-element dedupe's tie rule
    (``beam_pipelines.transforms.dedupe._winner_key`` on the event dict: the earliest
    ``event_time``, then the event's canonical JSON). Over columns, on the rows whose id
    repeats: copies equal in every column are one candidate, then only the earliest
    ``event_time`` of an id competes; the rule itself decides the rare ids where several
    different events share that instant, so the winner is the same row by construction.

    Returns:
      ``(winners, duplicates removed)``.
    """
    if table.num_rows == 0:
        return table, 0
    counts = table.group_by("event_id").aggregate([("event_id", "count")])
    repeated = counts.filter(pc.greater(counts["event_id_count"], 1))["event_id"]
    if len(repeated) == 0:
        return table, 0
    is_repeat = pc.is_in(table["event_id"], value_set=repeated)
    candidates = table.filter(is_repeat)
    # Byte-identical redeliveries (the usual duplicate) are one candidate.
    distinct = candidates.group_by(list(EVENT_SCHEMA.names), use_threads=False).aggregate([])
    earliest = distinct.group_by("event_id").aggregate([("event_time", "min")])
    tied = distinct.join(earliest, "event_id").filter(pc.equal(pc.field("event_time"), pc.field("event_time_min")))
    tied = tied.select(EVENT_SCHEMA.names)
    per_id = tied.group_by("event_id").aggregate([("event_id", "count")])
    contested = per_id.filter(pc.greater(per_id["event_id_count"], 1))["event_id"]
    is_contested = pc.is_in(tied["event_id"], value_set=contested)
    best: dict[str, dict] = {}
    for event in tied.filter(is_contested).to_pylist():
        current = best.get(event["event_id"])
        if current is None or winner_key(event) < winner_key(current):
            best[event["event_id"]] = event
    winners = pa.concat_tables(
        [
            table.filter(pc.invert(is_repeat)),
            tied.filter(pc.invert(is_contested)).cast(EVENT_SCHEMA),
            events_table(best.values()),
        ]
    )
    return winners, candidates.num_rows - len(repeated)


def _cents_text(cents: pa.Array) -> pa.Array:
    whole = pc.divide(cents, 100)
    frac = pc.subtract(cents, pc.multiply(whole, 100))
    return pc.binary_join_element_wise(whole.cast(pa.string()), pc.utf8_lpad(frac.cast(pa.string()), 2, "0"), ".")


def line_amounts(price: pa.Array, quantity: pa.Array) -> pa.Array:
    """``events.line_amount`` over columns: every event's price is canonical text (``validate_record``)."""
    if isinstance(price, pa.ChunkedArray):
        price, quantity = price.combine_chunks(), quantity.combine_chunks()
    # "12.34" -> 1234: the point three characters from the end, digits around it (a cast
    # refuses anything else); ~5x cheaper than an RE2 extraction with captures.
    not_canonical = ValueError(
        "an event price is not canonical 2-decimal text; events must come from events.validate_record"
    )
    point = pc.find_substring(price, ".")
    canonical = pc.and_(pc.equal(point, pc.subtract(pc.utf8_length(price), 3)), pc.invert(pc.starts_with(price, "-")))
    if not pc.all(canonical).as_py():
        raise not_canonical
    try:
        cents = pc.replace_substring(price, ".", "").cast(pa.int64())
    except pa.ArrowInvalid:
        raise not_canonical from None
    return _cents_text(pc.multiply(cents, quantity))


class Dimension:
    """A dimension side input (``{id: row}``) as columns, for lookups over a batch."""

    def __init__(self, keys: pa.Array, columns: dict[str, pa.Array]):
        self.keys = keys
        self.columns = columns

    @classmethod
    def from_values(cls, rows: dict[str, tuple], columns: Sequence[str]) -> Dimension:
        """From ``{id: (value of each of columns)}`` (a missing row's values are None)."""
        values = list(zip(*rows.values(), strict=True)) if rows else [() for _ in columns]
        return cls(
            pa.array(list(rows), pa.string()),
            {c: pa.array(list(v), pa.string()) for c, v in zip(columns, values, strict=True)},
        )

    def join(self, ids: pa.Array) -> tuple[dict[str, pa.Array], int]:
        """Attribute columns for ``ids`` (NULL for unknown ids) and the number of unknown ids."""
        index = pc.index_in(ids, value_set=self.keys)
        return {c: pc.take(col, index) for c, col in self.columns.items()}, index.null_count


def user_behavior_table(
    table: pa.Table, products: Dimension, users: Dimension, source: str, ingest_ts: str
) -> tuple[pa.Table, int, int]:
    """``events.user_behavior_row`` over an event table: (rows, unknown products, unknown users)."""
    table = table.combine_chunks()
    product, unknown_products = products.join(table["product_id"])
    user, unknown_users = users.join(table["user_id"])
    n = table.num_rows
    rows = pa.table(
        {
            "date": pc.utf8_slice_codeunits(table["event_ts"], 0, 10),
            "event_id": table["event_id"],
            "event_name": table["event_name"],
            "price": line_amounts(table["price"], table["quantity"]),
            "product_id": table["product_id"],
            "product_name": product["product_name"],
            "user_id": table["user_id"],
            "user_name": user["user_name"],
            "order_id": table["order_id"],
            "event_ts": table["event_ts"],
            "session_id": table["session_id"],
            "quantity": table["quantity"],
            "category": product["category"],
            "source": pa.repeat(pa.scalar(source, pa.string()), n),
            "ingest_ts": pa.repeat(pa.scalar(ingest_ts, pa.string()), n),
        }
    )
    return rows, unknown_products, unknown_users
