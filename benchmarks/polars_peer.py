"""The Polars peer of the hourly chain: the same work as one Polars program, for the benchmark.

The second yardstick beside :mod:`benchmarks.duckdb_peer`, on the same input and with the
same outputs (``user_behavior`` rows and dead letters ``(stage, payload)`` as Parquet),
so ``benchmarks.batch_hourly_chain`` checks its output against the chain's in the run.
It runs on one thread (``POLARS_MAX_THREADS=1``, set by the benchmark before Polars is
imported), as the chain's cases run on one worker.

What it does, in Polars expressions (no Python per line):

1. read the lines (``read_csv`` with a separator and quote that never occur, lossy
   UTF-8), ``\\r`` stripped, blank lines skipped (``lake.iter_raw_lines``);
2. decide "JSON or not" with ``str.json_path_match("$.event_id")`` (the whole line is
   parsed; NULL for invalid JSON *and* for JSON without an ``event_id``, so only those
   few lines are asked ``json_path_match("$")`` to tell stage ``parse`` from ``validate``);
3. one ``str.json_decode`` of the lines with an ``event_id`` into a struct of texts
   (Polars writes a JSON number or boolean into a String field as its text). A field
   holding an array or object, or a number beyond a double, makes ``json_decode`` fail
   for the whole batch: such a batch is split in halves until the failing line is alone,
   and that line is a ``validate`` dead letter (an array or object is no valid value of
   any field; a ``1e400`` is no valid price or quantity, and no valid id);
4. the contract's rules on those texts (:mod:`beam_pipelines.events`: ids trimmed,
   1..128 characters, no control characters; ``event_name``; ``event_ts`` with an offset,
   from 2000-01-01, at most ``MAX_FUTURE_SKEW`` ahead; ``price`` >= 0, half-even to cents,
   < 1e9; ``quantity`` 1..10000, default 1; ``order_id`` required for orders/returns and
   dropped otherwise) and the job window; canonical timestamps and prices (what producers
   send) take a cheaper parse than other spellings, as in the DuckDB peer;
5. one event per ``event_id`` (``dedupe._winner_key``'s order, sorted over the repeated
   ids only), left joins with products and users, the row's line amount in cents.

Where it is not the contract (Polars cannot express it, or it is not worth it for a
yardstick; ``tests/reliability/test_peers.py`` pins the list on the hostile corpus):
reasons are not spelled (dead letters compare by stage and payload); ``json_decode``
loses a value's JSON type, so ``true``/``1.5`` ids or ``"true"`` names are judged as
their text (the contract refuses a boolean or a non-integral number as an id, and
accepts ``42.0`` as ``"42"``, which Polars also writes); non-UTF-8 lines are read lossily
(the payload is the contract's dead-letter text, but a line holding U+FFFD is judged as
text); Polars' JSON reader (serde_json) keeps the first of repeated keys (Python the last),
refuses what Python reads (``NaN``/``Infinity`` literals, numbers beyond a double, nesting
deeper than 128) and lone surrogates; ``str.strip_chars`` trims Unicode white space, not
``str.isspace``'s (``\\x1c``-``\\x1f``); prices with more than 9 decimals are rounded from 9;
``event_ts`` spellings beyond ``YYYY-MM-DD[T ]HH:MM[:SS[.,f]]`` with ``Z``, ``±HH:MM`` or
`` UTC``; and the dedupe's tie between different events of one id and instant whose ids hold ``' '``,
``'!'``, ``'"'``, ``'\\'`` or non-ASCII characters (as in the DuckDB peer).
"""

from __future__ import annotations

from datetime import UTC, datetime

from beam_pipelines import events

# Every field as text: json_decode writes numbers and booleans into a String as their text.
_FIELDS = [name for name in events.EVENT_FIELDS if name != "event_time"]
_ID_FIELDS = ("event_id", "user_id", "session_id", "product_id", "order_id")
_CANONICAL_TS = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"
_CANONICAL_PRICE = r"^(?:0|[1-9]\d{0,8})\.\d\d$"
_DECIMAL_TEXT = r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?$"
# events.parse_ts's spellings modelled here (datetime.fromisoformat with an offset).
_ANY_TS = (
    r"^(?P<date>\d{4}-\d\d-\d\d)[T ](?P<hm>(?:[01]\d|2[0-3]):[0-5]\d)(?P<s>:[0-5]\d)?"
    r"(?:[.,](?P<f>\d+))?(?P<zone>Z| UTC|[+-](?:[01]\d|2[0-3]):[0-5]\d)$"
)
_CONTROL = r"[\x00-\x1f\x7f-\x9f]"
# The columns an event keeps after the rules (cents: the unit price in cents).
_KEPT = (
    "event_id",
    "event_name",
    "event_ts",
    "ts",
    "user_id",
    "session_id",
    "product_id",
    "cents",
    "quantity",
    "order_id",
)
_BATCH = 1 << 16  # lines per json_decode call: a failing batch is split (step 3)


def _decode(pl, lines):
    """``json_decode`` of a String Series; (struct frame, indexes of lines it could not type)."""
    dtype = pl.Struct({name: pl.String for name in _FIELDS})
    try:
        return lines.str.json_decode(dtype).struct.unnest(), []
    except pl.exceptions.ComputeError:
        if len(lines) == 1:
            return pl.DataFrame({name: [None] for name in _FIELDS}, schema=dict.fromkeys(_FIELDS, pl.String)), [0]
    half = len(lines) // 2
    left, bad_left = _decode(pl, lines.slice(0, half))
    right, bad_right = _decode(pl, lines.slice(half))
    return pl.concat([left, right]), bad_left + [half + i for i in bad_right]


def _decoded(pl, lines):
    frames, bad = [], []
    for lo in range(0, len(lines), _BATCH):
        frame, failed = _decode(pl, lines.slice(lo, _BATCH))
        frames.append(frame)
        bad.extend(lo + i for i in failed)
    frame = pl.concat(frames) if frames else pl.DataFrame(schema=dict.fromkeys(_FIELDS, pl.String))
    return frame, bad


def _id(pl, name: str):
    # events.id_text: trimmed; "" is none (NULL here).
    text = pl.col(name).str.strip_chars()
    return pl.when(text.str.len_bytes() > 0).then(text).alias(name)


def _id_ok(pl, name: str, required):
    col = pl.col(name)
    ok = col.is_null() | (col.str.len_chars() <= events.MAX_ID_LENGTH)
    return ok & ~(required & col.is_null())


def _ts(pl, text):
    """Any modelled spelling -> an aware instant (NULL if not one)."""
    parts = text.str.extract_groups(_ANY_TS)
    zone = parts.struct.field("zone")
    normal = pl.concat_str(
        [
            parts.struct.field("date"),
            pl.lit("T"),
            parts.struct.field("hm"),
            parts.struct.field("s").fill_null(":00"),
            pl.lit("."),
            # Python truncates a fraction to microseconds.
            parts.struct.field("f").fill_null("0").str.slice(0, 6).str.pad_end(6, "0"),
            pl.when(zone.is_in(["Z", " UTC"])).then(pl.lit("+00:00")).otherwise(zone),
        ]
    )
    return normal.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", strict=False, time_unit="us").dt.convert_time_zone("UTC")


def _cents_text(pl, cents):
    return pl.format("{}.{}", cents // 100, (cents % 100).cast(pl.String).str.pad_start(2, "0"))


def _events(pl, frame, now: datetime):
    """Decoded texts -> the contract's event columns and a ``valid`` flag."""
    ids = [_id(pl, name) for name in _ID_FIELDS]
    frame = frame.with_columns(
        *ids,
        pl.col("event_ts").str.strip_chars().alias("ts_text"),
        pl.col("price").str.strip_chars().alias("price_text"),
        pl.col("quantity").str.strip_chars().alias("quantity_text"),
    )
    canonical_ts = pl.col("event_ts").str.contains(_CANONICAL_TS)
    canonical_price = pl.col("price_text").str.contains(_CANONICAL_PRICE)
    fast = frame.filter(canonical_ts & canonical_price).with_columns(
        pl.col("event_ts")
        .str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", time_zone="UTC", time_unit="us", strict=False)
        .alias("ts"),
        # "12.34" -> 1234 cents without a decimal type.
        pl.col("price_text").str.replace(".", "", literal=True).cast(pl.Int64).alias("cents"),
    )
    other = frame.filter((~(canonical_ts & canonical_price)).fill_null(True))
    if other.height:
        amount = pl.when(pl.col("price_text").str.contains(_DECIMAL_TEXT)).then(
            pl.col("price_text").cast(pl.Decimal(38, 9), strict=False)
        )
        # events._price: the range on the value as given, then on the value rounded to cents.
        rounded = amount.round(2, mode="half_to_even")
        other = other.with_columns(
            _ts(pl, pl.col("ts_text")).alias("ts"),
            pl.when((amount >= 0) & (rounded < 10**9)).then((rounded * 100).cast(pl.Int64)).alias("cents"),
        )
        frame = pl.concat([fast, other.select(fast.columns)])
    else:
        frame = fast
    order = pl.col("event_name").is_in(sorted(events.ORDER_EVENTS))
    quantity = (
        pl.when(pl.col("quantity").is_null())
        .then(1)
        .when(pl.col("quantity_text").str.contains(r"^\d{1,19}$"))
        .then(pl.col("quantity_text").cast(pl.Int64, strict=False))
    )
    frame = frame.with_columns(quantity.alias("quantity"))
    valid = (
        _id_ok(pl, "event_id", True)
        & pl.col("event_name").is_in(list(events.EVENT_NAMES))
        & pl.col("ts").is_not_null()
        & (pl.col("ts") >= events.MIN_EVENT_TIME)
        & (pl.col("ts") <= now + events.MAX_FUTURE_SKEW)
        & _id_ok(pl, "user_id", True)
        & _id_ok(pl, "product_id", True)
        & _id_ok(pl, "session_id", False)
        & _id_ok(pl, "order_id", order)
        & ~pl.concat_str([pl.col(n) for n in _ID_FIELDS], ignore_nulls=True).str.contains(_CONTROL)
        & pl.col("cents").is_not_null()
        & pl.col("quantity").is_between(1, events.MAX_QUANTITY)
    )
    return frame.with_columns(
        valid.fill_null(False).alias("valid"),
        pl.when(canonical_ts)
        .then(pl.col("event_ts"))
        .otherwise(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"))
        .alias("event_ts"),
        pl.when(order).then(pl.col("order_id")).alias("order_id"),
    )


def _winners(pl, ok):
    """One event per event_id: ``dedupe._winner_key``'s order, sorted over repeated ids only."""
    repeated = pl.col("event_id").is_duplicated()
    keys = ["event_id", "epoch_us", "event_name", "order_id", "price_key", "product_id", "quantity_key"]
    keys += ["session_id", "user_id"]
    nulls_last = [k in ("order_id", "session_id") for k in keys]
    contested = (
        ok.filter(repeated)
        .with_columns(
            pl.col("ts").dt.epoch("us").alias("epoch_us"),
            _cents_text(pl, pl.col("cents")).alias("price_key"),
            pl.col("quantity").cast(pl.String).alias("quantity_key"),
        )
        .sort(keys, nulls_last=nulls_last)
        .unique("event_id", keep="first", maintain_order=True)
        .drop("epoch_us", "price_key", "quantity_key")
    )
    return pl.concat([ok.filter(~repeated), contested])


def run(dataset, window_start: datetime, window_end: datetime, rows_out: str, dead_out: str) -> None:
    """Read the dataset's events and dimensions, write rows and dead letters as Parquet."""
    import polars as pl

    now = datetime.now(UTC)
    raw = pl.read_csv(
        dataset.events_path,
        has_header=False,
        new_columns=["line"],
        separator="\x01",
        quote_char=None,
        encoding="utf8-lossy",
        schema_overrides={"line": pl.String},
    )
    lines = raw.select(pl.col("line").str.strip_suffix("\r")).filter(
        pl.col("line").str.strip_chars(" \t\n\r\x0b\x0c").str.len_bytes() > 0
    )
    lines = lines.with_columns(
        (
            (pl.col("line").str.len_bytes() <= events.MAX_PAYLOAD_BYTES)
            & pl.col("line").str.json_path_match("$.event_id").is_not_null()
        ).alias("has_id")
    )
    candidates = lines.filter("has_id")["line"]
    rest = lines.filter(~pl.col("has_id")).with_columns(
        pl.when(
            (pl.col("line").str.len_bytes() <= events.MAX_PAYLOAD_BYTES)
            # json_path_match("$") is NULL for the JSON null too.
            & (pl.col("line").str.json_path_match("$").is_not_null() | (pl.col("line").str.strip_chars() == "null"))
        )
        .then(pl.lit(events.STAGE_VALIDATE))
        .otherwise(pl.lit(events.STAGE_PARSE))
        .alias("stage")
    )
    decoded, untyped = _decoded(pl, candidates)
    typed = _events(pl, decoded.with_columns(candidates.alias("line")).with_row_index("row"), now)
    in_window = (pl.col("ts") >= window_start) & (pl.col("ts") < window_end)
    dead = pl.concat(
        [
            rest.select(pl.col("stage"), pl.col("line").alias("payload")),
            pl.DataFrame({"stage": events.STAGE_VALIDATE, "payload": candidates.gather(untyped)}),
            typed.filter(~pl.col("row").is_in(untyped) & (~pl.col("valid") | ~in_window)).select(
                pl.when(pl.col("valid")).then(pl.lit("window")).otherwise(pl.lit(events.STAGE_VALIDATE)).alias("stage"),
                pl.col("line").alias("payload"),
            ),
        ]
    )
    ok = typed.filter(pl.col("valid") & in_window & ~pl.col("row").is_in(untyped))
    winners = _winners(pl, ok.select(_KEPT))
    products = pl.read_ndjson(dataset.products_path).select(
        pl.col("product_id").cast(pl.String), "product_name", "category"
    )
    users = pl.read_ndjson(dataset.users_path).select(pl.col("user_id").cast(pl.String), "user_name")
    rows = (
        winners.join(products, on="product_id", how="left")
        .join(users, on="user_id", how="left")
        .select(
            pl.col("event_ts").str.slice(0, 10).alias("date"),
            "event_id",
            "event_name",
            _cents_text(pl, pl.col("cents") * pl.col("quantity")).alias("price"),
            "product_id",
            "product_name",
            "user_id",
            "user_name",
            "order_id",
            "event_ts",
            "session_id",
            "quantity",
            "category",
            pl.lit(events.SOURCE_STREAM).alias("source"),
            pl.lit(events.format_ts(now)).alias("ingest_ts"),
        )
    )
    rows.write_parquet(rows_out)
    dead.write_parquet(dead_out)
