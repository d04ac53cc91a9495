"""The DuckDB peer of the hourly chain: the same work as one SQL script, for the benchmark.

Reads the benchmark's JSONL events and dimensions, validates the contract's rules
(:mod:`beam_pipelines.events`: payload size and JSON object; ids as text, trimmed of
Python's whitespace, 1..128 characters, no control characters, integers and integral
floats below 2**53 as their digits; ``event_name``; ``event_ts`` ISO-8601 with an
offset, from 2000-01-01, at most ``MAX_FUTURE_SKEW`` ahead; ``price`` decimal text or
number, >= 0, rounded half-even to cents, < 1e9; ``quantity`` 1..10000 defaulting to 1;
``order_id`` required for orders/returns, checked and dropped otherwise) plus the job
window, keeps one event per ``event_id`` (``dedupe._winner_key``: earliest ``event_ts``,
then the event's fields), joins products and users, and writes ``user_behavior`` rows
and dead letters (stage, payload) as Parquet. The SQL is ``duckdb_peer.sql``.

Each line is parsed once into a struct of short texts (``json_valid`` first, a
validating read at ~0.2 µs a line, because a failing ``from_json`` inside ``try()``
makes DuckDB redo the chunk row by row); every rule then reads those texts. The
previous peer called ``json_extract`` once per field and rule, re-parsing the line
each time (24 µs an event against ~10 now).

It is a yardstick, not a second implementation of the contract: reasons are not
spelled, and these are outside what it models (on the hostile corpus of
``tests/reliability/hostile.py``, 261 of its 266 one-line, non-blank UTF-8 payloads get
the verdict of ``events.parse_payload``; ``tests/reliability/test_peers.py`` pins
the list): lone surrogates and
non-UTF-8 bytes, trailing commas (DuckDB's JSON reader accepts them), nesting deeper
than Python's recursion limit and integer literals above Python's 4300 digits,
duplicate keys (the first wins, in Python the last), ``event_ts`` spellings beyond
``YYYY-MM-DD[T ]HH:MM[:SS[.f]]`` with ``Z``, ``±HH:MM`` or `` UTC``, and ties between
different events of one id and instant whose ids hold ``' '``, ``'!'``, ``'"'``,
``'\\'`` or non-ASCII characters. The benchmark checks its rows against the chain's
(``EXCEPT ALL`` both ways) and its dead letters by (stage, payload), on its own input.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from beam_pipelines import events

SQL_PATH = Path(__file__).with_name("duckdb_peer.sql")
# str.strip()'s whitespace (str.isspace), so ids, prices and quantities are trimmed as in Python.
_PY_WHITESPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
# from_json's target: the JSON text of each value whose rule depends on its JSON type (ids:
# 42.0 is "42", "42.0" is itself; quantity: 2.0 is 2, "2.0" is no quantity), the value as
# text for the rest (a name, a timestamp or a price is valid only as text that no other
# JSON type spells). NULL when absent or null.
_TYPE_FREE = ("event_name", "event_ts", "price")
_STRUCT_SPEC = json.dumps(
    {name: "VARCHAR" if name in _TYPE_FREE else "JSON" for name in events.EVENT_FIELDS if name != "event_time"}
)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def script(dataset, window_start: datetime, window_end: datetime, rows_out: str, dead_out: str) -> str:
    """The peer's SQL for one dataset (paths and instants inlined as quoted literals)."""
    now = datetime.now(UTC)
    values = {
        "STRUCT_SPEC": _literal(_STRUCT_SPEC),
        "PY_WHITESPACE": _literal(_PY_WHITESPACE),
        "EVENTS_PATH": _literal(dataset.events_path),
        "PRODUCTS_PATH": _literal(dataset.products_path),
        "USERS_PATH": _literal(dataset.users_path),
        "MAX_BYTES": str(events.MAX_PAYLOAD_BYTES),
        "EVENT_NAMES": "(" + ", ".join(_literal(n) for n in events.EVENT_NAMES) + ")",
        "NOW_TS": _literal(now.isoformat()),
        "WINDOW_START": _literal(window_start.isoformat()),
        "WINDOW_END": _literal(window_end.isoformat()),
        "INGEST_TS": _literal(events.format_ts(now)),
        "ROWS_OUT": _literal(rows_out),
        "DEAD_OUT": _literal(dead_out),
    }
    sql = SQL_PATH.read_text()
    for key, value in values.items():
        sql = sql.replace(key, value)
    return sql


def run(dataset, window_start: datetime, window_end: datetime, rows_out: str, dead_out: str) -> None:
    """Run the peer on one thread (the chain's cases run on one worker too)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("set threads = 1")
        con.execute(script(dataset, window_start, window_end, rows_out, dead_out))
    finally:
        con.close()
