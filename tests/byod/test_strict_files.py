"""Strict files through the real command lines: every structural fault is named by file, row and column.

``publishers.import_files`` and ``publishers.simulator replay`` read files through
``publishers.source_files``; each fault here is written into a file byte by byte and
the expected message (row, column, byte offset) is worked out from those bytes.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from publishers.source_files import MAX_CELL_BYTES

HEADER = b"product_id,product_name,category,price,updated_at\n"
GOOD = b"p1,Lamp,home,9.90,2021-03-01T10:00:00Z\n"
JSON_GOOD = (
    json.dumps(dict(zip(HEADER.decode().strip().split(","), GOOD.decode().strip().split(","), strict=True))) + "\n"
)


def _import(*args):
    return subprocess.run(
        [sys.executable, "-m", "publishers.import_files", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def _replay(*args):
    return subprocess.run(
        [sys.executable, "-m", "publishers.simulator", "replay", "--speed", "0", "--quiet", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _errors(proc):
    return [line for line in proc.stderr.splitlines() if line.startswith("error: ")]


def test_rows_with_too_few_or_too_many_fields_are_errors_naming_row_and_column(tmp_path, sqlite_url):
    path = tmp_path / "products.csv"
    # Row 2 has an unquoted comma in its name; row 3 is a truncated last line.
    path.write_bytes(HEADER + GOOD + b"p2,Lamp, large,home,9.90,2021-03-01T10:00:00Z\n" + b"p3,Desk,off")
    proc = _import("--database-url", sqlite_url, "--products", path)
    assert proc.returncode == 1
    assert _errors(proc) == [
        f"error: {path}, row 2, field 6: row has 6 fields but the header 5 (an unquoted delimiter inside a value?)",
        f"error: {path}, row 3, price: row has 3 of the header's 5 fields: 'price', 'updated_at' missing "
        "(a truncated line?)",
    ]
    assert proc.stderr.splitlines()[-1] == "import failed: 2 error(s); nothing was loaded"


def test_a_header_that_repeats_a_column_stops_the_file_in_one_line(tmp_path, sqlite_url):
    path = tmp_path / "products.csv"
    path.write_bytes(b"product_id,product_name,category,price,updated_at,price\n" + GOOD[:-1] + b",1.00\n")
    proc = _import("--database-url", sqlite_url, "--products", path)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"error: {path}, header, price: the column appears twice (fields 4 and 6); rename one: a repeated column "
        "would keep only one of its values\n"
    )
    jsonl = tmp_path / "products.jsonl"
    jsonl.write_text(JSON_GOOD + '{"product_id": "p2", "price": "1.00", "price": "2.00"}\n')
    proc = _import("--database-url", sqlite_url, "--products", jsonl)
    assert _errors(proc) == [f"error: {jsonl}, row 2, price: the object repeats the key 'price'"]


def test_bytes_that_are_not_utf8_name_row_column_and_byte_offset(tmp_path, sqlite_url):
    path = tmp_path / "products.csv"
    data = (
        HEADER
        + GOOD
        + b"p2,Caf\xe9 table,home,9.90,2021-03-01T10:00:00Z\n"
        + b"p3,Chair,home,1.00,2021-03-01T00:00:00Z\n"
    )
    path.write_bytes(data)
    proc = _import("--database-url", sqlite_url, "--products", path)
    assert proc.returncode == 1
    offset = data.index(b"\xe9")
    assert _errors(proc) == [
        f"error: {path}, row 2, product_name: not valid UTF-8 at byte offset {offset:,} (0xe9); save the file as UTF-8"
    ]
    jsonl = tmp_path / "products.jsonl"
    jdata = JSON_GOOD.encode() + b'{"product_id": "p2", "product_name": "Caf\xe9"}\n'
    jsonl.write_bytes(jdata)
    proc = _import("--database-url", sqlite_url, "--products", jsonl)
    offset = jdata.index(b"\xe9")
    assert _errors(proc)[0] == (
        f"error: {jsonl}, row 2, product_name: not valid UTF-8 at byte offset {offset:,} (0xe9); save the file as UTF-8"
    )


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_one_cell_size_limit_for_every_format(tmp_path, sqlite_url, fmt):
    big = "x" * (MAX_CELL_BYTES + 1)
    fits = "é" * (MAX_CELL_BYTES // 2)  # 2 bytes each: exactly the limit
    rows = [
        {
            "product_id": "p1",
            "product_name": fits,
            "category": "home",
            "price": "1.00",
            "updated_at": "2021-03-01T00:00:00Z",
        },
        {
            "product_id": "p2",
            "product_name": big,
            "category": "home",
            "price": "1.00",
            "updated_at": "2021-03-01T00:00:00Z",
        },
    ]
    path = tmp_path / f"products.{fmt}"
    if fmt == "csv":
        path.write_text(
            "product_id,product_name,category,price,updated_at\n" + "".join(",".join(r.values()) + "\n" for r in rows)
        )
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    proc = _import("--database-url", sqlite_url, "--products", path)
    hint = " (an unclosed quote?)" if fmt == "csv" else ""
    assert _errors(proc) == [
        f"error: {path}, row 2, product_name: cell of {MAX_CELL_BYTES + 1:,} bytes is larger than the limit of "
        f"{MAX_CELL_BYTES:,} bytes{hint}"
    ]


def test_jsonl_lines_that_are_not_objects_are_row_errors_with_their_line(tmp_path, sqlite_url):
    path = tmp_path / "products.jsonl"
    path.write_text(JSON_GOOD + '\n[1, 2]\n{"product_id": \n')
    proc = _import("--database-url", sqlite_url, "--products", path)
    errors = _errors(proc)
    assert errors[-2:] == [
        f"error: {path}, row 2, (line): line is not a JSON object but list (line 3)",
        f"error: {path}, row 3, (line): line is not JSON (line 4): Expecting value: line 1 column 16 (char 15)",
    ]


def test_a_bad_mapping_default_is_one_error_at_load_not_one_per_row(tmp_path, sqlite_url):
    mapping = tmp_path / "m.toml"
    mapping.write_text('[users]\ndefaults = { country = "ZZZ" }\n')
    users = tmp_path / "users.csv"
    users.write_text("user_id,user_name,email,signup_date,updated_at\n" + "".join(
        f"u{i},U {i},u{i}@x.invalid,2020-01-01,2021-01-01Z\n" for i in range(500)
    ))  # fmt: skip
    proc = _import("--database-url", sqlite_url, "--mapping", mapping, "--users", users)
    assert proc.returncode == 2
    assert proc.stderr == f"error: {mapping}: users.defaults.country: must be 2 characters, got 'ZZZ'\n"


def test_replay_counts_unreadable_rows_and_refuses_a_header_that_repeats_a_column(tmp_path):
    path = tmp_path / "clicks.csv"
    header = b"event_time,event_type,product_id,price,user_id,user_session\n"
    good = b"2021-03-01 10:00:00 UTC,view,p1,9.90,u1,s1\n"
    path.write_bytes(header + good * 9 + b"2021-03-01 10:00:01 UTC,view,p1\n")
    out = tmp_path / "out.jsonl"
    proc = _replay("--file", path, "--output-jsonl", out, "--max-invalid-share", "0.05")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: 1 of 10 rows are invalid (10.0%): 1 unreadable (e.g. row 10, price: row has 3 of the header's 6 "
        "fields: 'price', 'user_id', 'user_session' missing (a truncated line?))",
        "error: more than --max-invalid-share 0.05 of the rows are invalid; nothing was sent (fix the file or the "
        "--mapping / --timezone, or raise --max-invalid-share)",
    ]
    assert not out.exists() or out.read_text() == ""
    proc = _replay("--file", path, "--output-jsonl", out)  # within the default share: sent, with a warning
    assert proc.returncode == 0
    assert proc.stderr.startswith("warning: 1 of 10 rows are invalid (10.0%): 1 unreadable (e.g. row 10, price:")
    assert len(out.read_text().splitlines()) == 9
    path.write_bytes(b"event_time,event_type,event_type\n")
    proc = _replay("--file", path, "--output-jsonl", out)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {path}, header, event_type: the column appears twice (fields 2 and 3)")


def test_a_bad_byte_deep_in_a_big_file_is_found_without_losing_or_repeating_a_row(tmp_path):
    """Text mode reads fast until a bad byte; reading then starts again byte by byte where it stopped."""
    path = tmp_path / "clicks.csv"
    header = b"event_time,event_type,product_id,price,user_id,user_session\n"
    row = lambda i, name=b"p": b"2021-03-01 10:00:00 UTC,view,%s%d,9.90,u%d,s1\n" % (name, i, i)  # noqa: E731
    data = (
        header
        + b"".join(row(i) for i in range(3000))
        + row(3000, b"caf\xe9")
        + b"".join(row(i) for i in range(3001, 3100))
    )
    path.write_bytes(data)
    out = tmp_path / "out.jsonl"
    proc = _replay("--file", path, "--output-jsonl", out)
    assert proc.returncode == 0, proc.stderr
    offset = data.index(b"\xe9")
    assert proc.stderr.startswith(
        f"warning: 1 of 3,100 rows are invalid (0.0%): 1 unreadable (e.g. row 3001, product_id: not valid UTF-8 at "
        f"byte offset {offset:,} (0xe9)"
    )
    sent = [json.loads(line)["product_id"] for line in out.read_text().splitlines()]
    assert sent == [f"p{i}" for i in range(3100) if i != 3000]
