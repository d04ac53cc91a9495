"""A shop's line-level export end to end, with a mapping file alone, against figures computed from the file.

The export is generated here in the shape of the most common shop export (one row per
order line: invoice number, stock code, description, quantity, naive local time, unit
price, customer id, country) with every trait that once needed hand-written SQL views:
customer ids written as floats (``13085.0``), ``C``-prefixed credit notes with
negative quantities (some a day after their invoice), a negative stock line on a
normal invoice, guest lines without a customer, free lines (price 0), products and
customers on many lines with changing descriptions, and no status column. Its times
are local to Europe/Berlin across the change to summer time (2021-03-28), with
invoices just after local midnight, whose UTC date is the day before.

It goes ``python -m publishers.import_files --line-export`` (PostgreSQL) -> the orders
API -> ``extract_orders`` / ``extract_dims`` -> ``hourly`` (BigQuery emulator) ->
``python -m bigquery_schemas.analytics``; no SQL or code outside the project. The
expected figures are computed from the generated rows alone, with the zone's offsets
written out (UTC+1 before 2021-03-28 02:00 local, UTC+2 from 03:00): per day orders,
lines, units, gross, credit notes (lines, units, amount: the usual "cancelled"),
net = the sum of the signed lines.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest

from beam_pipelines import extract_dims, extract_orders, hourly
from beam_pipelines.events import format_ts
from tests.fixtures.jobs import hourly_job_args
from tests.fixtures.stack import own_dataset, own_postgres_database

pytestmark = pytest.mark.integration

ZONE = "Europe/Berlin"
LOCAL_DAYS = [date(2021, 3, 27), date(2021, 3, 28), date(2021, 3, 29)]
SUMMER_FROM_LOCAL = datetime(2021, 3, 28, 3)  # 02:00 CET became 03:00 CEST
# The window of the jobs: local 2021-03-27 00:00 CET .. 2021-03-30 00:00 CEST, in UTC.
START = datetime(2021, 3, 26, 23, tzinfo=UTC)
END = datetime(2021, 3, 29, 22, tzinfo=UTC)

MAPPING = f"""
timezone = "{ZONE}"

[orders]
columns = {{ order_id = "Invoice", user_id = "Customer ID", order_ts = "InvoiceDate", updated_at = "InvoiceDate" }}
defaults = {{ status = "delivered", user_id = "guest-{{order_id}}", currency = "EUR" }}

[[orders.status_rules]]
column = "Invoice"
prefix = "C"
status = "returned"

[order_lines]
columns = {{ order_id = "Invoice", product_id = "StockCode", quantity = "Quantity", unit_price = "Price" }}

[products]
columns = {{ product_name = "Description", price = "Price" }}
defaults = {{ category = "(uncategorised)" }}

[users.defaults]
user_name = "customer {{user_id}}"
email = "{{user_id}}@unknown.invalid"
signup_date = "2021-01-01"
country = "DE"
"""

FIELDS = ["Invoice", "StockCode", "Description", "Quantity", "InvoiceDate", "Price", "Customer ID", "Country"]


def to_utc(local: datetime) -> datetime:
    """Europe/Berlin in March 2021, written out: CET (UTC+1), then CEST (UTC+2)."""
    return (local - timedelta(hours=2 if local >= SUMMER_FROM_LOCAL else 1)).replace(tzinfo=UTC)


def _local_time(rng: random.Random, day: date) -> datetime:
    # A third of the invoices just after local midnight: their UTC date is the day before.
    seconds = rng.randint(0, 5399) if rng.random() < 0.35 else rng.randint(0, 86399)
    local = datetime(day.year, day.month, day.day) + timedelta(seconds=seconds)
    if datetime(2021, 3, 28, 2) <= local < SUMMER_FROM_LOCAL:  # that hour does not exist in Berlin
        local += timedelta(hours=1)
    return local


def generate_export(seed: int = 24) -> list[dict[str, str]]:
    rng = random.Random(seed)
    products = {f"{85000 + i}{'' if i % 3 else 'P'}": Decimal(rng.randint(35, 1995)) / 100 for i in range(14)}
    customers = [f"{13000 + 17 * i}.0" for i in range(9)]
    rows: list[dict[str, str]] = []
    invoices: list[tuple[str, datetime, str, list[tuple[str, int, Decimal]]]] = []
    for n in range(48):
        day = LOCAL_DAYS[n % 3]
        local = _local_time(rng, day)
        customer = "" if rng.random() < 0.2 else rng.choice(customers)
        lines = []
        for stock in rng.sample(sorted(products), rng.randint(1, 4)):
            price = Decimal("0.00") if rng.random() < 0.05 else products[stock]
            lines.append((stock, rng.randint(1, 24), price))
        if n == 7:  # a stock correction on a normal invoice: a negative line, no customer, no price
            customer = ""
            lines.append((sorted(products)[0], -5, Decimal("0.00")))
        invoices.append((str(489400 + n), local, customer, lines))
    # Credit notes: part of an earlier invoice of a customer, later the same day or the next.
    for n, (_number, local, customer, lines) in enumerate(rng.sample([i for i in invoices if i[2]], 9)):
        later = local + timedelta(minutes=rng.randint(20, 1800))
        if later.date() > LOCAL_DAYS[-1] or datetime(2021, 3, 28, 2) <= later < SUMMER_FROM_LOCAL:
            later = local + timedelta(minutes=5)
        returned = [(s, -rng.randint(1, q), p) for s, q, p in lines[: rng.randint(1, len(lines))] if q > 0]
        invoices.append((f"C{489500 + n}", later, customer, returned))
    for number, local, customer, lines in sorted(invoices, key=lambda i: (i[1], i[0])):
        for stock, quantity, price in lines:
            rows.append(
                {
                    "Invoice": number,
                    "StockCode": stock,
                    # Descriptions drift (a later line renames the product); the latest line wins.
                    "Description": f"ITEM {stock}" + (" (NEW)" if local.date() == LOCAL_DAYS[-1] else ""),
                    "Quantity": str(quantity),
                    "InvoiceDate": local.strftime("%Y-%m-%d %H:%M:%S"),
                    "Price": f"{price:.2f}",
                    "Customer ID": customer,
                    "Country": "Germany",
                }
            )
    return rows


def expected_by_day(rows: list[dict[str, str]], local_days: bool) -> dict[date, dict[str, object]]:
    """Per day (local or UTC): the figures of the usual convention for line-level data."""
    days: dict[date, dict[str, object]] = defaultdict(
        lambda: {"orders": set(), "lines": 0, "units": 0, "gross": Decimal("0.00"), "credit_lines": 0,
                 "credit_units": 0, "credit": Decimal("0.00"), "net": Decimal("0.00")}
    )  # fmt: skip
    for row in rows:
        local = datetime.strptime(row["InvoiceDate"], "%Y-%m-%d %H:%M:%S")
        day = local.date() if local_days else to_utc(local).date()
        quantity, price = int(row["Quantity"]), Decimal(row["Price"])
        figures = days[day]
        figures["net"] += quantity * price  # signed lines
        if quantity > 0:
            figures["orders"].add(row["Invoice"])
            figures["lines"] += 1
            figures["units"] += quantity
            figures["gross"] += quantity * price
        else:
            figures["credit_lines"] += 1
            figures["credit_units"] -= quantity
            figures["credit"] -= quantity * price
    return {d: {**f, "orders": len(f["orders"])} for d, f in days.items()}


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    folder = tmp_path_factory.mktemp("line-export")
    rows = generate_export()
    path = folder / "online_retail.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    (folder / "mapping.toml").write_text(MAPPING)
    return {"rows": rows, "path": path, "mapping": folder / "mapping.toml"}


@pytest.fixture(scope="module")
def stores(postgres_url, bigquery_emulator, beam_bq_emulator):
    """This module's own PostgreSQL source database and BigQuery dataset."""
    with own_postgres_database(postgres_url, "lines") as url, own_dataset(bigquery_emulator, "lines") as made:
        yield url, made


@pytest.fixture(scope="module")
def loaded(export, stores, orders_api_server, bigquery_emulator, tmp_path_factory):
    source_url, (_client, project, ds) = stores
    imported = subprocess.run(
        [sys.executable, "-m", "publishers.import_files", "--database-url", source_url, "--mapping",
         str(export["mapping"]), "--line-export", str(export["path"])],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    # The tables now hold the project's columns and statuses: the API serves them as they are.
    api = orders_api_server(source_url)
    root = str(tmp_path_factory.mktemp("lake"))
    mp = pytest.MonkeyPatch()
    mp.setenv("LINES_TOKEN", api.token)
    extract_orders.run(
        ["--runner=FnApiRunner", f"--api_base_url={api.base_url}", "--api_token_env=LINES_TOKEN", f"--lake_root={root}",
         f"--window_start={format_ts(START)}", f"--window_end={format_ts(END)}", "--page_size=50"]
    )  # fmt: skip
    mp.undo()
    extract_dims.run(["--runner=FnApiRunner", f"--database_url={source_url}", f"--lake_root={root}"])
    hourly.run(hourly_job_args(project, ds, root, START, END, "--run_id=lines1"))
    base_env = {**os.environ, "BIGQUERY_EMULATOR_HOST": bigquery_emulator.rest}
    base_env.pop("ANALYTICS_TIME_ZONE", None)
    analytics = [sys.executable, "-m", "bigquery_schemas.analytics"]
    target = ["--project", project, "--dataset", ds]
    views = subprocess.run([*analytics, "create-views", *target], capture_output=True, text=True, env=base_env)
    assert views.returncode == 0, views.stderr

    def cli(command: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*analytics, command, *target, *args], capture_output=True, text=True, env={**base_env, **(env or {})},
            timeout=300,
        )  # fmt: skip

    def run(query: str, first: date, last: date, *extra: str, env: dict | None = None) -> list[dict]:
        proc = cli("run", query, "--start", first.isoformat(), "--end", last.isoformat(), "--format", "json", *extra,
                   env=env)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    return {"summary": json.loads(imported.stdout), "run": run, "cli": cli}


def test_the_import_derives_every_order_line_product_and_guest_from_the_lines(export, loaded):
    rows = export["rows"]
    summary = loaded["summary"]
    invoices = {r["Invoice"] for r in rows}
    guests = {r["Invoice"] for r in rows if not r["Customer ID"]}
    assert summary["loaded"] == {
        "products": len({r["StockCode"] for r in rows}),
        "users": len({r["Customer ID"] for r in rows if r["Customer ID"]}) + len(guests),
        "orders": len(invoices),
        "order_lines": len(rows),
    }
    (stats,) = summary["line_exports"].values()
    assert stats["guest_orders"] == len(guests) and stats["guest_lines"] == sum(1 for r in rows if not r["Customer ID"])
    assert stats["credit_lines"] == sum(1 for r in rows if int(r["Quantity"]) < 0)


def _figures(row: dict) -> dict[str, object]:
    return {
        "orders": row["orders"],
        "lines": row["order_lines"],
        "units": row["units_sold"],
        "gross": Decimal(row["gross_revenue"]),
        "credit_lines": row["return_lines"],
        "credit_units": row["units_returned"],
        "credit": Decimal(row["refunds"]),
        "net": Decimal(row["net_revenue"]),
    }


def test_every_utc_day_equals_the_figures_computed_from_the_file(export, loaded):
    expected = expected_by_day(export["rows"], local_days=False)
    first, last = min(expected), max(expected)
    assert first == LOCAL_DAYS[0] - timedelta(days=1), "invoices after local midnight fall on the UTC day before"
    rows = loaded["run"]("orders_revenue_by_date", first, last)
    assert [date.fromisoformat(r["date"]) for r in rows] == [first + timedelta(days=i) for i in range(len(rows))]
    assert {date.fromisoformat(r["date"]): _figures(r) for r in rows} == expected
    # Credit notes are returns, never cancelled orders: nothing here was cancelled.
    assert all((r["cancelled_orders"], Decimal(r["cancelled_revenue"])) == (0, 0) for r in rows)
    assert sum(f["credit_lines"] for f in expected.values()) >= 9


def test_every_local_business_day_equals_the_figures_computed_from_the_file(export, loaded):
    """--time-zone Europe/Berlin: days run from local midnight, 23 hours long on 2021-03-28."""
    expected = expected_by_day(export["rows"], local_days=True)
    assert sorted(expected) == LOCAL_DAYS
    rows = loaded["run"]("orders_revenue_by_date", LOCAL_DAYS[0], LOCAL_DAYS[-1], "--time-zone", ZONE)
    assert {date.fromisoformat(r["date"]): _figures(r) for r in rows} == expected
    assert expected != {d: f for d, f in expected_by_day(export["rows"], local_days=False).items() if d in expected}
    # The setting gives the same answer as the flag; UTC stays the default without either.
    by_setting = loaded["run"](
        "orders_revenue_by_date", LOCAL_DAYS[0], LOCAL_DAYS[-1], env={"ANALYTICS_TIME_ZONE": ZONE}
    )
    assert by_setting == rows
    assert loaded["run"]("orders_revenue_by_date", LOCAL_DAYS[0], LOCAL_DAYS[-1]) != rows
    bad = loaded["cli"]("run", "orders_revenue_by_date", "--start", "2021-03-27", "--end", "2021-03-29",
                        "--time-zone", "Berlin")  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "time zone 'Berlin' is not an IANA time zone name (e.g. Europe/Berlin" in bad.stderr


def test_spend_per_customer_and_per_order_without_sessions(export, loaded):
    """The export has no sessions: per-session spend is empty, per-customer spend is not."""
    first, last = LOCAL_DAYS[0], LOCAL_DAYS[-1]
    (sessions,) = loaded["run"]("avg_spend_per_session", first, last, "--time-zone", ZONE)
    assert sessions["sessions"] == 0 and sessions["avg_spend_per_session"] is None
    (spend,) = loaded["run"]("avg_spend_per_customer", first, last, "--time-zone", ZONE)
    rows = export["rows"]
    customer = {r["Invoice"]: r["Customer ID"] or f"guest-{r['Invoice']}" for r in rows}
    gross = sum(int(r["Quantity"]) * Decimal(r["Price"]) for r in rows if int(r["Quantity"]) > 0)
    credit = -sum(int(r["Quantity"]) * Decimal(r["Price"]) for r in rows if int(r["Quantity"]) < 0)
    customers = {customer[r["Invoice"]] for r in rows}
    buyers = {customer[r["Invoice"]] for r in rows if int(r["Quantity"]) > 0}
    orders = {r["Invoice"] for r in rows if int(r["Quantity"]) > 0}
    cents = Decimal("0.01")
    assert {k: (Decimal(v) if isinstance(v, str) else v) for k, v in spend.items()} == {
        "gross_revenue": gross,
        "refunds": credit,
        "net_revenue": gross - credit,
        "customers": len(customers),
        "buying_customers": len(buyers),
        "orders": len(orders),
        "avg_spend_per_customer": ((gross - credit) / len(customers)).quantize(cents, ROUND_HALF_UP),
        "avg_purchase_per_buyer": (gross / len(buyers)).quantize(cents, ROUND_HALF_UP),
        "avg_order_value": (gross / len(orders)).quantize(cents, ROUND_HALF_UP),
        "avg_net_revenue_per_order": ((gross - credit) / len(orders)).quantize(cents, ROUND_HALF_UP),
    }


def test_the_report_in_the_business_time_zone_shows_local_days_and_spend_per_customer(export, loaded, tmp_path):
    out = tmp_path / "report.html"
    proc = loaded["cli"](
        "report", "--start", LOCAL_DAYS[0].isoformat(), "--end", LOCAL_DAYS[-1].isoformat(), "--time-zone", ZONE,
        "--output", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    page = out.read_text()
    assert f"Dates are local to {ZONE}" in page
    # The revenue chart's columns are the local days' gross revenue computed from the file.
    revenue = page[page.index('data-chart="revenue_by_date"') :]
    revenue = revenue[: revenue.index("</svg>")]
    expected = expected_by_day(export["rows"], local_days=True)
    for day, figures in expected.items():
        assert f'data-key="{day.isoformat()}" data-value="{figures["gross"]}"' in revenue
    # Order data only: spend per customer and per order, no per-session tiles.
    assert "data-spend='avg_spend_per_customer'" in page and "data-spend='avg_spend_per_session'" not in page
    assert "No sessions in this range (order data only)" in page
