-- The DuckDB peer of the hourly chain (benchmarks/duckdb_peer.py fills in the upper-case names).
-- Each line is parsed once: from_json into a struct of texts (STRUCT_SPEC: the JSON text of
-- ids and quantity, which yyjson re-writes with escapes normalised, numbers in shortest
-- form and integers beyond 64 bits as their digits; the value of the other fields), and
-- every rule reads those short texts.
set TimeZone = 'UTC';

-- The value of a JSON string text; NULL for any other JSON type. Only a text holding an
-- escape is parsed again (the value is short); the benchmark's strings have none.
create macro jstr(t) as case when t[1] = '"' then
    case when contains(t, '\') then json_extract_string(t, '$') else t[2:-2] end end;
-- str.strip(): trim only a value whose ends are not printable ASCII (trim with a set of
-- 29 characters costs ~2 µs a value; the benchmark's values never need it).
create macro py_strip(v) as case when v[1] between '!' and '~' and v[-1] between '!' and '~' then v
    else trim(v, PY_WHITESPACE) end;
create macro jnum(t) as t[1] in ('-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9') or t in ('NaN', 'Infinity');
-- events.id_text (t the JSON text, v its string value): a string trimmed of Python's whitespace, an integer as its digits, an
-- integral double below 2**53 as its integer; chr(0) (never a valid id) for every other
-- value, so a wrong type fails id_ok like a control character does. NULL: absent or null.
create macro id_txt(t, v) as case
    when t is null then null
    when v is not null then py_strip(v)
    when regexp_full_match(t, '-?\d+') then t
    when jnum(t) and try_cast(t as double) = floor(try_cast(t as double))
        and abs(try_cast(t as double)) < 9007199254740992 then try_cast(t as double)::hugeint::varchar
    else chr(0) end;
-- The control-character rule is checked once over all five ids (see checked).
create macro id_ok(v) as v is not null and length(v) between 1 and 128;
create macro opt_id_ok(v) as v is null or v = '' or length(v) <= 128;

-- lake.iter_raw_lines: a line without its \r\n, blank lines (NULL here) and lines of
-- ASCII whitespace skipped.
create temp table src as
    select line
    from read_csv(EVENTS_PATH, columns = {'line': 'VARCHAR'}, delim = E'\x01', quote = '', escape = '',
                  header = false, auto_detect = false, strict_mode = false)
    where line[1] > ' ' or trim(line, E' \t\n\r\x0b\x0c') <> '';

-- The one parse (json_valid, a read without building values, decides parse or not first:
-- 0.2 µs a line; try() around from_json makes DuckDB redo every chunk with a bad line row
-- by row, ~8 µs a line). A line that is not JSON is a parse dead letter; a JSON value
-- that is not an object gives a struct of NULLs (or NULL), which fails the required
-- fields (stage validate). The texts are read as VARCHAR: compared as JSON, '"' would be parsed as a document.
create temp table parsed as
    select line, is_json,
        r.event_id::varchar as t_event_id, r.event_name::varchar as t_event_name,
        r.event_ts::varchar as t_event_ts, r.user_id::varchar as t_user_id,
        r.session_id::varchar as t_session_id, r.product_id::varchar as t_product_id,
        r.price::varchar as t_price, r.quantity::varchar as t_quantity, r.order_id::varchar as t_order_id
    from (select line, is_json, case when is_json then from_json(line, STRUCT_SPEC) end as r
          from (select line, strlen(line) <= MAX_BYTES and json_valid(line) as is_json from src));

create temp table checked as
with strings as (
    -- Each string value once (a macro's argument is expanded, not computed, at every use).
    select *, jstr(t_event_id) as s_event_id, t_event_name as event_name, t_event_ts as s_event_ts,
        jstr(t_user_id) as s_user_id, jstr(t_session_id) as s_session_id, jstr(t_product_id) as s_product_id,
        jstr(t_quantity) as s_quantity, jstr(t_order_id) as s_order_id
    from parsed
),
fields as (
    select line, is_json, event_name, s_event_ts,
        id_txt(t_event_id, s_event_id) as event_id,
        id_txt(t_user_id, s_user_id) as user_id,
        id_txt(t_product_id, s_product_id) as product_id,
        id_txt(t_session_id, s_session_id) as session_id,
        id_txt(t_order_id, s_order_id) as order_id,
        -- events._CANONICAL_TS is returned as it is, any other spelling as format_ts.
        py_strip(s_event_ts) as ts_text,
        regexp_full_match(s_event_ts, '\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z') as ts_canonical,
        -- events._price: a string trimmed, a number as Python's str() of it (yyjson's
        -- shortest form has the same value); true, false, objects and arrays never match its rules.
        py_strip(t_price) as price_text,
        -- events._positive_int: absent or null is 1; digits text, an integer, or an integral double.
        case when t_quantity is null then 1
            when s_quantity is not null then case when regexp_full_match(py_strip(s_quantity), '\d{1,19}')
                then try_cast(py_strip(s_quantity) as bigint) end
            when regexp_full_match(t_quantity, '-?\d+') then try_cast(t_quantity as bigint)
            when jnum(t_quantity) and try_cast(t_quantity as double) = floor(try_cast(t_quantity as double))
                then try_cast(try_cast(t_quantity as double) as bigint)
            end as quantity
    from strings
),
typed as (
    select *,
        -- The spellings of events.parse_ts (datetime.fromisoformat) that this models: a '.' or
        -- ',' fraction of any length, truncated to microseconds as Python does.
        case when regexp_full_match(ts_text,
                '\d{4}-\d\d-\d\d[T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d([.,]\d+)?)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d| UTC)')
            then try_cast(replace(
                case when regexp_matches(ts_text, '[.,]\d{7}|,') then regexp_replace(ts_text, '[.,](\d{1,6})\d*', '.\1')
                    else ts_text end, ' UTC', '+00:00') as timestamptz) end as ts,
        -- events._CANONICAL_PRICE is its own value in cents (decimal(38, 29) costs ~7 µs a value).
        case when regexp_full_match(price_text, '(0|[1-9]\d{0,8})\.\d\d')
            then price_text::decimal(11, 2) end as cents,
        -- Any other spelling; 9 integer digits: a price of 1e9 or more does not cast, and is invalid.
        case when not regexp_full_match(price_text, '(0|[1-9]\d{0,8})\.\d\d')
            and regexp_full_match(price_text, '[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,4})?')
            then try_cast(price_text as decimal(38, 29)) end as amount
    from fields
)
select line, is_json, event_id, event_name, ts,
    case when ts_canonical then s_event_ts else strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ') end as event_ts, user_id, product_id, quantity,
    nullif(session_id, '') as session_id,
    case when event_name in ('order', 'return') then order_id end as order_id,
    coalesce(cents, round_even(amount, 2)::decimal(12, 2)) as price,
    -- coalesce: a rule on a NULL (an absent value) must fail, not vanish from both outputs.
    coalesce(is_json and id_ok(event_id) and event_name in EVENT_NAMES and ts is not null
        and ts >= timestamptz '2000-01-01 00:00:00+00' and ts <= NOW_TS::timestamptz + interval 1 hour
        and (if(event_name in ('order', 'return'), id_ok(order_id), opt_id_ok(order_id)))
        and id_ok(user_id) and opt_id_ok(session_id) and id_ok(product_id)
        and not regexp_matches(concat(event_id, user_id, product_id, session_id, order_id), '[\x00-\x1f\x7f-\x9f]')
        and (cents is not null or (amount >= 0 and round_even(amount, 2) < 1e9))
        and quantity between 1 and 10000, false) as valid
from typed;

create temp table dead as
    select case when not is_json then 'parse' when not valid then 'validate' else 'window' end as stage,
        line as payload
    from checked
    where not valid or ts < WINDOW_START::timestamptz or ts >= WINDOW_END::timestamptz;

-- dedupe._winner_key: the earliest event_ts, then json.dumps(event, sort_keys=True). For
-- one id and one instant that text compares as the tuple below (keys in sorted order, a
-- string's closing '"' sorting before any other character it may hold, null after every
-- string, quantity as its digits); ids holding ' ', '!', '"', '\' or non-ASCII characters
-- are outside what it models. A string key built per row costs 2.5 µs an event more.
create temp table winners as
    -- Only the row's columns: the window materialises what it carries (the line is ~250 bytes).
    select event_id, event_name, event_ts, price, quantity, product_id, user_id, order_id, session_id
    from checked
    where valid and ts >= WINDOW_START::timestamptz and ts < WINDOW_END::timestamptz
    qualify row_number() over (
        partition by event_id
        order by epoch_us(ts), event_name, order_id nulls last, price::varchar, product_id, quantity::varchar,
            session_id nulls last, user_id
    ) = 1;

copy (
    select w.event_ts[1:10] as date, w.event_id, w.event_name,
        (w.price * w.quantity)::decimal(18, 2)::varchar as price, w.product_id, pr.product_name, w.user_id,
        u.user_name, w.order_id, w.event_ts, w.session_id, w.quantity,
        pr.category, 'stream' as source, INGEST_TS as ingest_ts
    from winners w
    left join (select product_id::varchar as product_id, product_name, category
               from read_json(PRODUCTS_PATH, format = 'newline_delimited')) pr on pr.product_id = w.product_id
    left join (select user_id::varchar as user_id, user_name
               from read_json(USERS_PATH, format = 'newline_delimited')) u on u.user_id = w.user_id
) to ROWS_OUT (format parquet);
copy dead to DEAD_OUT (format parquet);
