"""The DuckDB peer of the hourly chain: the same work as one SQL script, for the benchmark.

Reads the benchmark's JSONL events and dimensions, validates the contract's rules
(:mod:`beam_pipelines.events`: payload size and JSON object; ids as text, trimmed,
1..128 characters, no control characters, integral numbers as their digits;
``event_name``; ``event_ts`` ISO-8601 with an offset, from 2000-01-01, at most
``MAX_FUTURE_SKEW`` ahead; ``price`` decimal text or number, >= 0, rounded half-even to
cents, < 1e9; ``quantity`` 1..10000 defaulting to 1; ``order_id`` required for
orders/returns and dropped otherwise) plus the job window, keeps one event per
``event_id`` (earliest ``event_ts``; a tie by the line's text), joins products and
users, and writes ``user_behavior`` rows and dead letters (stage, payload) as Parquet.

It is a yardstick, not a second implementation of the contract: reasons are not
spelled, and Unicode whitespace, lone surrogates and non-UTF-8 lines are outside what
it models. The benchmark checks its rows against the chain's (``EXCEPT ALL`` both
ways) and its dead letters by (stage, payload), on the benchmark's input.
"""

from __future__ import annotations

from datetime import UTC, datetime

from beam_pipelines import events

_ID_TYPES = "('VARCHAR', 'UBIGINT', 'BIGINT', 'DOUBLE')"

SQL = r"""
set TimeZone = 'UTC';
create macro id_txt(j, k) as case json_type(j, k)
    when 'VARCHAR' then trim(json_extract_string(j, k), E' \t\n\r\x0b\x0c')
    when 'UBIGINT' then json_extract_string(j, k)
    when 'BIGINT' then json_extract_string(j, k)
    when 'DOUBLE' then case when json_extract(j, k)::double = floor(json_extract(j, k)::double)
        and abs(json_extract(j, k)::double) < 9007199254740992 then (json_extract(j, k)::double)::hugeint::varchar end
    end;
create macro id_ok(v) as v is not null and length(v) between 1 and 128
    and not regexp_matches(v, '[\x00-\x1f\x7f-\x9f]');
create macro opt_id_ok(j, k) as json_type(j, k) is null or json_type(j, k) = 'NULL'
    or (json_type(j, k) in ID_TYPES and (coalesce(id_txt(j, k), 'x') = '' or id_ok(id_txt(j, k))));
create temp table src as
    select row_number() over () as n, line
    from read_csv(EVENTS_PATH, columns = {'line': 'VARCHAR'}, delim = E'\x01', quote = '', escape = '',
                  header = false, auto_detect = false, strict_mode = false);
create temp table p as
    select n, line, strlen(line) <= MAX_BYTES and json_valid(line) as parsed,
        case when strlen(line) <= MAX_BYTES and json_valid(line) then line::json end as j
    from src;
create temp table f as select n, line, parsed, j,
    json_type(j) = 'OBJECT' as is_obj,
    id_txt(j, '$.event_id') as event_id,
    json_extract_string(j, '$.event_name') as event_name,
    case when json_type(j, '$.event_ts') = 'VARCHAR'
        and regexp_full_match(trim(json_extract_string(j, '$.event_ts')),
            '\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d{1,6})?)?(Z|[+-]\d\d:\d\d| UTC)')
        then try_cast(replace(trim(json_extract_string(j, '$.event_ts')), ' UTC', '+00:00') as timestamptz) end as ts,
    id_txt(j, '$.user_id') as user_id, id_txt(j, '$.product_id') as product_id,
    nullif(id_txt(j, '$.session_id'), '') as session_id, nullif(id_txt(j, '$.order_id'), '') as order_id,
    opt_id_ok(j, '$.session_id') and opt_id_ok(j, '$.order_id') as opt_ok,
    case when json_type(j, '$.price') in ('VARCHAR', 'UBIGINT', 'BIGINT', 'DOUBLE')
        and regexp_full_match(trim(json_extract_string(j, '$.price')), '[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,4})?')
        then try_cast(trim(json_extract_string(j, '$.price')) as double) end as price_num,
    json_extract_string(j, '$.price') as price_text,
    case when json_type(j, '$.quantity') is null or json_type(j, '$.quantity') = 'NULL' then 1
        when json_type(j, '$.quantity') in ('UBIGINT', 'BIGINT')
            then try_cast(json_extract_string(j, '$.quantity') as bigint)
        when json_type(j, '$.quantity') = 'VARCHAR'
            and regexp_full_match(trim(json_extract_string(j, '$.quantity')), '\d{1,19}')
            then try_cast(trim(json_extract_string(j, '$.quantity')) as bigint)
        when json_type(j, '$.quantity') = 'DOUBLE' and json_extract(j, '$.quantity')::double
            = floor(json_extract(j, '$.quantity')::double) then json_extract(j, '$.quantity')::double::bigint
        end as quantity
    from p;
create temp table checked as select *,
    round_even(try_cast(trim(price_text) as decimal(38, 10)), 2) as price,
    parsed and is_obj and id_ok(event_id) and event_name in EVENT_NAMES and ts is not null
        and ts >= timestamptz '2000-01-01 00:00:00+00' and ts <= NOW_TS::timestamptz + interval 1 hour
        and id_ok(user_id) and id_ok(product_id) and opt_ok
        and (event_name not in ('order', 'return') or order_id is not null)
        and price_num is not null and price_num >= 0 and price_num < 1e9
        and round_even(try_cast(trim(price_text) as decimal(38, 10)), 2) < 1e9
        and quantity between 1 and 10000 as valid
    from f;
create temp table dead as
    select case when not parsed then 'parse' when not valid then 'validate' else 'window' end as stage, line as payload
    from checked where not valid or ts < WINDOW_START::timestamptz or ts >= WINDOW_END::timestamptz;
create temp table winners as
    select * from checked
    where valid and ts >= WINDOW_START::timestamptz and ts < WINDOW_END::timestamptz
    qualify row_number() over (partition by event_id order by epoch_us(ts), line) = 1;
copy (
    select strftime(ts, '%Y-%m-%d') as date, w.event_id, w.event_name,
        (w.price * w.quantity)::decimal(18, 2)::varchar as price, w.product_id, pr.product_name, w.user_id,
        u.user_name, case when w.event_name in ('order', 'return') then w.order_id end as order_id,
        strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ') as event_ts, w.session_id, w.quantity, pr.category,
        'stream' as source, INGEST_TS as ingest_ts
    from winners w
    left join (select product_id::varchar as product_id, product_name, category
               from read_json(PRODUCTS_PATH, format = 'newline_delimited')) pr on pr.product_id = w.product_id
    left join (select user_id::varchar as user_id, user_name
               from read_json(USERS_PATH, format = 'newline_delimited')) u on u.user_id = w.user_id
) to ROWS_OUT (format parquet);
copy dead to DEAD_OUT (format parquet);
"""


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def script(dataset, window_start: datetime, window_end: datetime, rows_out: str, dead_out: str) -> str:
    """The peer's SQL for one dataset (paths and instants inlined as quoted literals)."""
    now = datetime.now(UTC)
    values = {
        "ID_TYPES": _ID_TYPES,
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
    sql = SQL
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
