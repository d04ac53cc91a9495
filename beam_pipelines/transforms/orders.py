"""Order transforms: read the orders API, parse lake order lines, explode orders into events.

* :class:`ReadOrdersFromApi`: a few parallel time ranges, each keyset-paged through the
  API -> raw orders (``(piece_key, group, json)``, placed in the hour partition of their
  ``updated_at``) and dead letters for records that are not JSON objects.
  :func:`plan_read_ranges` cuts the window.
* :class:`ParseOrders`: ``(path, line)`` from the lake -> order dicts; malformed lines
  and non-objects are dead letters.
* :class:`ExplodeOrderLines`: order -> one ``order`` record per line, plus a ``return``
  record per line when the order's status is ``returned``; a credit line (negative
  quantity) is one ``return`` record instead; records are in the event wire format, so
  :class:`~beam_pipelines.transforms.parse.ValidateRecords` checks them.
* :class:`LatestOrderVersions` and :class:`ToOrderRows`: the ``orders`` table rows.

Semantics (the cross-team contract): an order line's event has the id
``events.order_line_event_id(order_id, line_number, "order")``, ``event_ts = order_ts``,
``price = unit_price`` (the row's price becomes unit price x quantity in
``events.user_behavior_row``); its return has ``event_ts = updated_at``. A credit line
(``quantity < 0``: a credit note's line, a return line of a line-level export) is a
``return`` of ``-quantity`` units with ``event_ts = order_ts`` (the credit document's own
time) and the return's id ``<order_id>:<line>:return``, and no ``order`` event: it nets
against revenue on its own day, as signed lines do in the source's books.
"""

from __future__ import annotations

import bisect
import itertools
import json
import logging
import math
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from beam_pipelines import events, lake
from beam_pipelines.io.orders_api import OrdersApiClient, RetryPolicy, resolve_token
from beam_pipelines.transforms import METRICS_NAMESPACE
from beam_pipelines.transforms.lake_io import window_key
from beam_pipelines.transforms.parse import DEAD_LETTERS

ORDERS = "orders"
ORDER_RECORDS = "order_records"
STAGE_EXTRACT = "extract"
STAGE_PARSE = events.STAGE_PARSE
STAGE_EXPLODE = "explode"
RETURNED = "returned"

_LOG = logging.getLogger(__name__)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def plan_read_ranges(
    start: datetime, end: datetime, max_pieces: int, min_length: timedelta
) -> list[tuple[datetime, datetime]]:
    """Cut ``[start, end)`` into contiguous ranges of equal length, read in parallel.

    As many ranges as ``min_length`` fits in the window, at most ``max_pieces`` (and at
    least one); bounds are whole seconds, like the window's. Each range is keyset-paged
    through the API, so the requests of a window are at most
    ``floor(orders / page_size) + len(ranges)``: they grow with the orders, not with the
    window's length (a two-year window cut into 15-minute ranges once took one request
    per empty range, 70,080 for 8,135 orders).

    Raises:
      ValueError: a reversed or empty window, ``max_pieces < 1`` or ``min_length <= 0``.
    """
    if end <= start:
        raise ValueError(f"window end {end.isoformat()} must be after its start {start.isoformat()}")
    if max_pieces < 1:
        raise ValueError(f"the number of parallel read pieces must be at least 1, got {max_pieces}")
    if min_length <= timedelta(0):
        raise ValueError(f"the shortest read piece must be a positive length, got {min_length}")
    seconds = math.floor((end - start).total_seconds())
    count = max(1, min(max_pieces, math.ceil((end - start) / min_length), seconds))
    bounds = [start + timedelta(seconds=seconds * i // count) for i in range(count)] + [end]
    return list(itertools.pairwise(bounds))


class ReadOrdersInRangeFn(beam.DoFn):
    """``(start_iso, end_iso)`` read range -> every order the API returns for it.

    Main output: ``(piece_key, range_key, json_line)``: ``piece_key`` is the window's hour
    piece holding the order's ``updated_at`` (its lake partition); an order whose
    ``updated_at`` is missing, unreadable or outside the range it was asked for (the API
    broke its filter) goes to the piece of the range's start, as before ranges spanned
    hours, and is counted (``api_orders_outside_range``) and logged. DEAD_LETTERS output:
    the same triples with a dead-letter row, for records that are not JSON objects.
    The token is resolved in ``setup`` on the worker, so it never travels in options.
    """

    def __init__(
        self,
        base_url: str,
        token_env: str | None,
        token_secret: str | None,
        page_size: int,
        retry: RetryPolicy | None = None,
        pipeline: str = "extract_orders",
        pieces: list[tuple[datetime, datetime]] | None = None,
    ):
        if not pieces:
            raise ValueError("ReadOrdersInRangeFn needs the window's hour pieces (lake.hour_pieces)")
        self._pieces = [window_key(s, e) for s, e in pieces]
        self._piece_starts = [s for s, _ in pieces]
        self._window = (pieces[0][0], pieces[-1][1])
        self._base_url = base_url
        self._token_env = token_env
        self._token_secret = token_secret
        self._page_size = page_size
        self._retry = retry or RetryPolicy()
        self._pipeline = pipeline
        self._client: OrdersApiClient | None = None
        self._pages = Metrics.counter(METRICS_NAMESPACE, "api_pages_read")
        self._orders = Metrics.counter(METRICS_NAMESPACE, "api_orders_read")
        self._retries = Metrics.counter(METRICS_NAMESPACE, "api_retries")
        self._dead = Metrics.counter(METRICS_NAMESPACE, "dead_letters_extract")
        self._outside = Metrics.counter(METRICS_NAMESPACE, "api_orders_outside_range")

    def setup(self):
        token = resolve_token(self._token_env, self._token_secret)
        self._client = OrdersApiClient(
            self._base_url,
            token,
            page_size=self._page_size,
            retry=self._retry,
            on_retry=lambda _status, _wait: self._retries.inc(),
        )

    def teardown(self):
        if self._client is not None:
            self._client.close()

    def _piece(self, ts: datetime) -> str:
        if not self._window[0] <= ts < self._window[1]:
            raise ValueError(f"{ts.isoformat()} outside the window")  # cannot happen: ranges come from the window
        return self._pieces[bisect.bisect_right(self._piece_starts, ts) - 1]

    def _place(self, record: dict, start: datetime, end: datetime, group: str) -> str:
        try:
            updated = events.parse_ts(record.get("updated_at"))
        except (ValueError, TypeError):
            updated = None
        if updated is not None and start <= updated < end:
            return self._piece(updated)
        self._outside.inc()
        _LOG.warning(
            "orders API range %s returned order %r with updated_at %r outside it: kept in the range's first hour",
            group,
            record.get("order_id"),
            record.get("updated_at"),
        )
        return self._piece(start)

    def process(self, read_range):
        start, end = lake.parse_window(*read_range)
        group = window_key(start, end)
        for page_number, page in enumerate(self._client.iter_pages(start, end)):
            self._pages.inc()
            for index, record in enumerate(page.orders):
                if isinstance(record, dict):
                    self._orders.inc()
                    yield self._place(record, start, end, group), group, _dumps(record)
                    continue
                self._dead.inc()
                row = events.dead_letter_row(
                    pipeline=self._pipeline,
                    stage=STAGE_EXTRACT,
                    error=f"orders API record is not a JSON object but {type(record).__name__}",
                    payload=_dumps(record),
                    attributes={"window": group, "page": page_number, "index": index},
                )
                yield beam.pvalue.TaggedOutput(DEAD_LETTERS, (self._piece(start), group, _dumps(row)))


class ReadOrdersFromApi(beam.PTransform):
    """Read all orders updated in ``[window_start, window_end)`` through a few parallel ranges.

    The window is cut into at most ``read_pieces`` ranges of at least ``split_minutes``
    (:func:`plan_read_ranges`); a Reshuffle spreads them over workers, each keyset-pages
    through its range with the API's cursor, and every order goes to the hour partition
    of its ``updated_at`` (the window's hour pieces). Requests: at most
    ``floor(orders / page_size) + ranges``, whatever the window's length.

    Args:
      window_start, window_end: the half-open extract window (aware datetimes).
      base_url, token_env, token_secret, page_size: see :class:`ReadOrdersInRangeFn`.
      split_minutes: shortest read range, in minutes (> 0): a short window is not cut
        into ranges of a few orders each.
      read_pieces: most ranges read in parallel (>= 1).

    Returns:
      ``DoOutputsTuple`` with ``[ORDERS]`` and ``[DEAD_LETTERS]``, both of
      ``(piece_key, range_key, json_line)`` triples (see :attr:`piece_keys`), ready for
      :class:`~beam_pipelines.transforms.lake_io.WriteWindowPartitions`.
    """

    def __init__(
        self,
        window_start,
        window_end,
        *,
        base_url: str,
        token_env: str | None,
        token_secret: str | None,
        page_size: int = 500,
        split_minutes: int = 15,
        read_pieces: int = 8,
        retry: RetryPolicy | None = None,
    ):
        super().__init__()
        self._pieces = lake.hour_pieces(window_start, window_end)
        self._ranges = plan_read_ranges(window_start, window_end, read_pieces, timedelta(minutes=split_minutes))
        self._fn = ReadOrdersInRangeFn(base_url, token_env, token_secret, page_size, retry, pieces=self._pieces)

    @property
    def piece_keys(self) -> list[str]:
        """Keys of the hour pieces of the window (one lake partition each)."""
        return [window_key(s, e) for s, e in self._pieces]

    @property
    def read_ranges(self) -> list[tuple[datetime, datetime]]:
        """The ranges read in parallel (:func:`plan_read_ranges`)."""
        return list(self._ranges)

    def expand(self, pbegin):
        read = (
            pbegin
            | "CreateRanges" >> beam.Create([(events.format_ts(s), events.format_ts(e)) for s, e in self._ranges])
            | "SpreadRanges" >> beam.Reshuffle()
            | "ReadOrderPages" >> beam.ParDo(self._fn).with_outputs(DEAD_LETTERS, main=ORDERS)
        )
        return {ORDERS: read[ORDERS], DEAD_LETTERS: read[DEAD_LETTERS]}


# ----------------------------------------------------------------------------- hourly side


class ParseOrderLineFn(beam.DoFn):
    """``(path, line)`` -> order dict, or a dead letter for a line that is not a JSON object."""

    def __init__(self, pipeline: str):
        self._pipeline = pipeline
        self._read = Metrics.counter(METRICS_NAMESPACE, "lake_order_records_read")
        self._dead = Metrics.counter(METRICS_NAMESPACE, "dead_letters_order_parse")

    def process(self, element):
        path, line = element
        self._read.inc()
        try:
            record = json.loads(line)
        except ValueError as exc:
            reason = f"lake order line is not JSON: {exc}"
        else:
            if isinstance(record, dict):
                yield record
                return
            reason = f"lake order line is not a JSON object but {type(record).__name__}"
        self._dead.inc()
        yield beam.pvalue.TaggedOutput(
            DEAD_LETTERS,
            events.dead_letter_row(
                pipeline=self._pipeline, stage=STAGE_PARSE, error=reason, payload=line, attributes={"file": path}
            ),
        )


class ParseOrders(beam.PTransform):
    """Lake order lines -> order dicts (``[ORDERS]``) and dead letters (``[DEAD_LETTERS]``).

    Args:
      pipeline: job name for ``dead_letter.pipeline``.
    """

    def __init__(self, pipeline: str):
        super().__init__()
        self._pipeline = pipeline

    def expand(self, lines):
        return lines | "ParseOrderLine" >> beam.ParDo(ParseOrderLineFn(self._pipeline)).with_outputs(
            DEAD_LETTERS, main=ORDERS
        )


def explode_order(order: dict[str, Any]) -> list[dict[str, Any]]:
    """The event records of one API order (wire format; validation happens later).

    Raises:
      events.InvalidEvent: stage ``explode`` when the order has no usable id or lines,
        since no event id can be built or nothing would be written.
    """
    order_id = order.get("order_id")
    if isinstance(order_id, int) and not isinstance(order_id, bool):
        order_id = str(order_id)
    if not isinstance(order_id, str) or not order_id.strip():
        raise events.InvalidEvent(STAGE_EXPLODE, "order has no order_id")
    lines = order.get("lines")
    if not isinstance(lines, list) or not lines:
        raise events.InvalidEvent(STAGE_EXPLODE, f"order {order_id} has no lines")
    records = []
    for position, line in enumerate(lines, start=1):
        if not isinstance(line, dict):
            raise events.InvalidEvent(STAGE_EXPLODE, f"order {order_id} line {position} is not an object")
        number = line.get("line_number", position)
        base = {
            "user_id": order.get("user_id"),
            "session_id": order.get("session_id"),
            "product_id": line.get("product_id"),
            "price": line.get("unit_price"),
            "quantity": line.get("quantity"),
            "order_id": order_id,
        }
        credit = _credit_quantity(line.get("quantity"))
        if credit is not None:
            # A credit line (a credit note's, a return line of a line-level export): a return
            # of its units on the document's own date, never a sale (signed-lines netting).
            records.append(
                {
                    "event_id": events.order_line_event_id(order_id, number, "return"),
                    "event_name": "return",
                    "event_ts": order.get("order_ts"),
                    **base,
                    "quantity": credit,
                }
            )
            continue
        records.append(
            {
                "event_id": events.order_line_event_id(order_id, number, "order"),
                "event_name": "order",
                "event_ts": order.get("order_ts"),
                **base,
            }
        )
        if order.get("status") == RETURNED:
            records.append(
                {
                    "event_id": events.order_line_event_id(order_id, number, "return"),
                    "event_name": "return",
                    "event_ts": order.get("updated_at"),
                    **base,
                }
            )
    return records


def _credit_quantity(quantity: Any) -> int | None:
    """The units of a credit line (a negative integer quantity, as int or text), else None."""
    if isinstance(quantity, bool):
        return None
    if isinstance(quantity, str) and quantity.strip().startswith("-") and quantity.strip()[1:].isdigit():
        quantity = int(quantity.strip())
    if isinstance(quantity, float) and quantity.is_integer():
        quantity = int(quantity)
    return -quantity if isinstance(quantity, int) and quantity < 0 else None


class ExplodeOrderLinesFn(beam.DoFn):
    def __init__(self, pipeline: str):
        self._pipeline = pipeline
        self._orders = Metrics.counter(METRICS_NAMESPACE, "orders_exploded")
        self._records = Metrics.counter(METRICS_NAMESPACE, "order_line_records")
        self._dead = Metrics.counter(METRICS_NAMESPACE, "dead_letters_explode")

    def process(self, order):
        try:
            records = explode_order(order)
        except events.InvalidEvent as exc:
            self._dead.inc()
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS,
                events.dead_letter_row(
                    pipeline=self._pipeline,
                    stage=exc.stage,
                    error=exc.reason,
                    payload=json.dumps(order, sort_keys=True, default=str),
                ),
            )
            return
        self._orders.inc()
        self._records.inc(len(records))
        yield from records


class ExplodeOrderLines(beam.PTransform):
    """Order dicts -> event records (``[ORDER_RECORDS]``) and dead letters (``[DEAD_LETTERS]``).

    One ``order`` record per line; for ``status == "returned"`` also one ``return``
    record per line; a credit line (negative quantity) is one ``return`` record at the
    order's ``order_ts`` instead. Orders without an id or without lines are dead letters (stage
    ``explode``); everything else (bad quantity, unknown event time...) is left to
    ``ValidateRecords`` so the rules stay in :mod:`beam_pipelines.events`.

    Args:
      pipeline: job name for ``dead_letter.pipeline``.
    """

    def __init__(self, pipeline: str):
        super().__init__()
        self._pipeline = pipeline

    def expand(self, orders):
        return orders | "ExplodeOrder" >> beam.ParDo(ExplodeOrderLinesFn(self._pipeline)).with_outputs(
            DEAD_LETTERS, main=ORDER_RECORDS
        )


def _updated_key(order: dict[str, Any]) -> tuple[float, str]:
    try:
        ts = events.parse_ts(order.get("updated_at")).timestamp()
    except (ValueError, TypeError):
        ts = float("-inf")
    return ts, json.dumps(order, sort_keys=True, default=str)


class LatestOrderVersions(beam.PTransform):
    """One order per ``order_id``: the version with the latest ``updated_at``.

    An order changed in several hours of a backfill appears once per hour in the lake;
    the ``orders`` table wants its newest state. Orders without an id are skipped here
    (ExplodeOrderLines dead-letters them).
    """

    def expand(self, orders):
        return (
            orders
            | "KeepIdentifiedOrders" >> beam.Filter(lambda o: isinstance(o.get("order_id"), (str, int)))
            | "KeyByOrderId" >> beam.Map(lambda o: (str(o["order_id"]), o))
            | "PickLatestVersion" >> beam.CombinePerKey(lambda versions: max(versions, key=_updated_key))
            | "DropOrderKey" >> beam.Values()
        )


def order_row(order: dict[str, Any]) -> dict[str, Any]:
    """An API order as an ``orders`` table row (schema ``bigquery_schemas/orders.json``).

    Raises:
      ValueError/TypeError/KeyError on an order that breaks the contract; the caller
      dead-letters it.
    """
    lines = []
    for position, line in enumerate(order["lines"], start=1):
        qty = int(line["quantity"])
        unit = Decimal(str(line["unit_price"])).quantize(events.CENTS)
        lines.append(
            {
                "line_number": int(line.get("line_number", position)),
                "product_id": events.id_text(line.get("product_id"), "product_id"),
                "quantity": qty,
                "unit_price": str(unit),
                # Cents, like unit_price: an API's float amount (19.989999999999998) is 19.99.
                "amount": str(Decimal(str(line["amount"])).quantize(events.CENTS))
                if line.get("amount")
                else events.line_amount(str(unit), qty),
            }
        )
    return {
        "order_id": events.id_text(order.get("order_id"), "order_id"),
        "user_id": events.id_text(order.get("user_id"), "user_id"),
        "session_id": events.id_text(order.get("session_id"), "session_id", required=False),
        "status": str(order["status"]),
        "order_ts": events.format_ts(events.parse_ts(order["order_ts"])),
        "updated_at": events.format_ts(events.parse_ts(order["updated_at"])),
        "currency": order.get("currency"),
        "total_amount": None if order.get("total_amount") is None else str(order["total_amount"]),
        "lines": lines,
    }


class ToOrderRowFn(beam.DoFn):
    def __init__(self, pipeline: str):
        self._pipeline = pipeline
        self._dead = Metrics.counter(METRICS_NAMESPACE, "dead_letters_order_row")

    def process(self, order):
        try:
            yield order_row(order)
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            # Its lines are dead-lettered or written by the event path; this only keeps
            # the orders table from failing on a broken header.
            self._dead.inc()
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS,
                events.dead_letter_row(
                    pipeline=self._pipeline,
                    stage="order_row",
                    error=f"{type(exc).__name__}: {exc}",
                    payload=json.dumps(order, sort_keys=True, default=str),
                ),
            )


class ToOrderRows(beam.PTransform):
    """Order dicts -> ``orders`` rows (``[ORDERS]``) and dead letters (``[DEAD_LETTERS]``)."""

    def __init__(self, pipeline: str):
        super().__init__()
        self._pipeline = pipeline

    def expand(self, orders):
        return orders | "ToOrderRow" >> beam.ParDo(ToOrderRowFn(self._pipeline)).with_outputs(DEAD_LETTERS, main=ORDERS)
