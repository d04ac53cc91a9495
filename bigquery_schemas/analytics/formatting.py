"""Rendering query rows for the command line and files: aligned text, CSV, JSON.

Exact and machine-friendly (rates as fractions, money without separators); the HTML
report formats for reading instead (percentages, thousands separators) in report.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from beam_pipelines.cli import format_table

FORMATS = ("table", "csv", "json")
_CENTS = Decimal("0.01")

# Rate columns of the query files: FLOAT64 fractions rounded to 4 decimals in SQL. Every
# other FLOAT64 is money that the emulator returns as FLOAT64 where BigQuery returns
# NUMERIC (``AVG(NUMERIC)``, docs/analytics.md), printed with 2 decimals like NUMERIC.
RATE_COLUMNS = frozenset(
    {"view_to_cart", "cart_to_order", "funnel_conversion", "order_conversion", "return_rate", "coverage"}
    | {"rate_d1", "rate_d7", "rate_d30"}
)


def cell_text(value: Any, column: str = "") -> str:
    """One cell as text: money with 2 decimals, rates (:data:`RATE_COLUMNS`) with 4, ISO dates, '' for NULL."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        # Every NUMERIC column of these queries is an amount of money.
        return str(value.quantize(_CENTS))
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if column in RATE_COLUMNS:
            return f"{value:.4f}"
        return str(Decimal(repr(value)).quantize(_CENTS))  # money (see RATE_COLUMNS); no float rounding surprise
    return str(value)


def json_value(value: Any, column: str = "") -> Any:
    """A JSON-safe value; money stays a string (as NUMERIC in BigQuery's REST output), exact."""
    if isinstance(value, Decimal) or (isinstance(value, float) and column not in RATE_COLUMNS):
        return cell_text(value, column)
    if isinstance(value, (dt.date, dt.datetime)):
        return cell_text(value)
    return value


def json_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{k: json_value(v, k) for k, v in r.items()} for r in rows]


def format_rows(rows: Sequence[Mapping[str, Any]], fmt: str) -> str:
    """Rows as an aligned text table, CSV (header first) or a JSON list of objects."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    if fmt == "json":
        return json.dumps(json_rows(rows), indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        if rows:
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow(list(rows[0]))
            writer.writerows([cell_text(v, k) for k, v in r.items()] for r in rows)
        return buf.getvalue()
    return format_table([{k: cell_text(v, k) for k, v in r.items()} for r in rows])
