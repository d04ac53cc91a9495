"""Security: no secret in the repository, SQL only with parameters, the API checks its token.

* The secret scan reads every file ``git ls-files`` lists (what a clone gets) and fails
  on private keys, cloud keys, tokens, service-account JSON and passwords in URLs or
  assignments; a second test plants each kind of secret to prove the scan finds it.
* Injection strings go through the SQL source's read path (``beam_pipelines.io.sql``
  and the ``extract_dims`` job, SQLite here and PostgreSQL in the integration test)
  and through the orders API's filters: they stay data, nothing is dropped, nothing
  leaks (no traceback, SQL text or token in a response).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import requests

from beam_pipelines import extract_dims, lake
from beam_pipelines.io import sql
from publishers.catalog import load as load_catalog
from tests.reliability.hostile import HOUR

ROOT = Path(__file__).resolve().parents[2]

INJECTIONS = [
    "1; DROP TABLE products; --",
    "' OR '1'='1",
    "'; DELETE FROM users; --",
    "1) UNION SELECT user_id, email, null, null, null FROM users --",
    "Robert'); DROP TABLE users;--",
    "\\'; SELECT pg_sleep(5); --",
]

# Each pattern is assembled from pieces so that this file does not match itself.
_BEGIN = "-----" + "BEGIN"
SECRET_PATTERNS = {
    "private key": re.compile(_BEGIN + r" (?:RSA |EC |DSA |OPENSSH |PGP |ENCRYPTED )?PRIVATE KEY-----"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret access key": re.compile(r"(?i)aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+=]{40}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b"),
    "Google OAuth client secret": re.compile(r"\bGOCSPX-[0-9A-Za-z_\-]{20,}"),
    "Google OAuth token": re.compile(r"\bya29\.[0-9A-Za-z_\-]{20,}"),
    "service-account JSON": re.compile(r"\"type\"\s*:\s*\"service_" + r"account\"[\s\S]{0,2000}\"private_key\""),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[0-9A-Za-z\-]{10,}"),
    "password in a URL": re.compile(
        r"\b[a-z][a-z0-9+.\-]*://[^\s:/@'\"\[\]]+:(?!\{|\$|<|\*)[^\s:/@'\"\[\]]{3,}@[^\s/'\"]+"
    ),
    "password assignment": re.compile(
        r"(?i)\b(?:password|passwd|pwd|secret|api_key|apikey|token)\s*[=:]\s*['\"](?!\{|\$|<)[^'\"\s]{8,}['\"]"
    ),
}
# Values that look like secrets but are documented placeholders.
ALLOWED = re.compile(r"(?i)example|placeholder|changeme|your[-_]|dummy|redacted|xxxx|\*\*\*|<[a-z_-]+>")
# Fakes that tests need, each with the reason it is not a secret: (path, snippet) -> why.
KNOWN_FAKES = {
    ("tests/batch/fake_api.py", 'TOKEN = "test-token"'): "token of an in-process fake API",
    ("tests/publishers/test_orders_api.py", 'token = "pg-token"'): "token of a test API server",
    ("tests/publishers/test_sql_and_catalog.py", "mysql://app:s3cret@db"): "input of the URL-redaction test",
    (
        "tests/fixtures/google_standins.py",
        '"type": "service_account",\n                "project_id": "acme-analytics-prod",\n',
    ): ("the key file the Google stand-ins write at run time, around a key generated for the test session"),
}


def scan_text(text: str) -> list[tuple[str, str]]:
    hits = []
    for kind, pattern in SECRET_PATTERNS.items():
        for match in pattern.finditer(text):
            if not ALLOWED.search(match.group(0)):
                hits.append((kind, match.group(0)[:80]))
    return hits


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in out.decode().split("\0") if name]


def test_no_secret_in_any_tracked_file():
    files = tracked_files()
    assert len(files) > 50  # the scan really ran over the repository
    findings = []
    for path in files:
        if not path.is_file() or path.stat().st_size > 5_000_000:
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:  # binary
            continue
        rel = str(path.relative_to(ROOT))
        if path == Path(__file__).resolve():
            continue  # this file plants fake secrets on purpose (see the next test)
        for kind, snippet in scan_text(data.decode("utf-8", errors="replace")):
            if (rel, snippet) not in KNOWN_FAKES:
                findings.append(f"{rel}: {kind}: {snippet}")
    assert findings == []


def test_the_secret_scan_finds_each_kind_of_planted_secret():
    planted = {
        "private key": _BEGIN + " RSA PRIVATE KEY-----\nMIIEow...",
        "AWS access key id": "key = AKIA" + "Q" * 16,
        "AWS secret access key": "aws_secret_access_key = " + "a1B2" * 10,
        "Google API key": "AIza" + "S" * 35,
        "Google OAuth client secret": "GOCSPX-" + "k" * 28,
        "Google OAuth token": "ya29." + "t" * 40,
        "service-account JSON": '{"type": "service_' + 'account", "project_id": "p", "private_key": "..."}',
        "GitHub token": "ghp_" + "A" * 36,
        "Slack token": "xoxb-" + "1234567890-abc",
        "password in a URL": "postgresql://app:s3cr3tpass@db.internal:5432/shop",
        "password assignment": 'password = "hunter2hunter2"',
    }
    assert set(planted) == set(SECRET_PATTERNS)
    for kind, text in planted.items():
        assert kind in {k for k, _ in scan_text(text)}, kind
    # Placeholders in docs are not findings.
    assert scan_text("postgresql://user:<password>@host:5432/db") == []
    assert scan_text('token = "${ORDERS_API_TOKEN}"') == []


# ----------------------------------------------------------------------------- SQL source


def _seed_source(url: str) -> int:
    """A small catalog plus products whose names are injection strings; returns the product count."""
    with sql.connect(url) as db:
        load_catalog(db, seed=3, n_products=40, n_users=20, start=HOUR, end=HOUR, replace=True)
        for i, text in enumerate(INJECTIONS, start=1):
            db.execute(
                "update products set product_name = :name, category = :cat where product_id = :pid",
                {"name": text, "cat": text, "pid": str(i)},
            )
        return db.scalar("select count(*) from products")


def _check_parameters_keep_injections_as_data(url: str, n_products: int) -> None:
    with sql.connect(url) as db:
        for text in INJECTIONS:
            # As a parameter the string matches only the row that holds it literally.
            rows = db.query("select product_id from products where product_name = :name", {"name": text})
            assert rows == [(str(INJECTIONS.index(text) + 1),)]
            assert db.query("select user_id from users where email = :email", {"email": text}) == []
        assert db.scalar("select count(*) from products") == n_products
        assert db.scalar("select count(*) from users") == 20


def _check_extract_keeps_injections_verbatim(url: str, tmp_path: Path, n_products: int) -> None:
    lake_root = str(tmp_path / "lake")
    extract_dims.run(
        ["--runner=FnApiRunner", f"--database_url={url}", f"--lake_root={lake_root}", "--num_partitions=3"]
    )
    products = {r["product_id"]: r for r in lake.read_latest_snapshot_rows(lake_root, "products")}
    assert len(products) == n_products
    for i, text in enumerate(INJECTIONS, start=1):
        assert (products[str(i)]["product_name"], products[str(i)]["category"]) == (text, text)
    assert len(lake.read_latest_snapshot_rows(lake_root, "users")) == 20
    # Injection in the job's own options is refused before any SQL runs.
    for bad in (
        ["--tables=products; DROP TABLE products; --"],
        ["--tables=products", "--updated_since=2026-01-01' OR '1'='1"],
    ):
        with pytest.raises(ValueError):
            extract_dims.run(["--runner=FnApiRunner", f"--database_url={url}", f"--lake_root={lake_root}", *bad])
    with sql.connect(url) as db:
        assert db.scalar("select count(*) from products") == n_products


def test_sqlite_source_treats_injection_strings_as_data(sqlite_url, tmp_path):
    n = _seed_source(sqlite_url)
    _check_parameters_keep_injections_as_data(sqlite_url, n)
    _check_extract_keeps_injections_verbatim(sqlite_url, tmp_path, n)


@pytest.mark.integration
def test_postgres_source_treats_injection_strings_as_data(postgres_url, tmp_path):
    n = _seed_source(postgres_url)
    _check_parameters_keep_injections_as_data(postgres_url, n)
    _check_extract_keeps_injections_verbatim(postgres_url, tmp_path, n)


# ----------------------------------------------------------------------------- orders API

_LEAK_MARKERS = ("Traceback", "sqlite3", "psycopg", "select ", "SELECT ", 'File "')


def _get(api, params=None, headers=None) -> requests.Response:
    return requests.get(f"{api.base_url}/v1/orders", params=params, headers=headers, timeout=10)


@pytest.mark.integration
def test_api_rejects_missing_and_wrong_tokens_without_leaking(orders_api):
    start, end = orders_api.window
    params = {"updated_since": start.isoformat(), "updated_before": end.isoformat(), "page_size": 5}
    wrong = [
        None,
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {orders_api.token}x"},
        {"Authorization": f"Basic {orders_api.token}"},
        {"Authorization": f"Bearer {orders_api.token[:-1]}"},
        {"Authorization": "Bearer ' OR '1'='1"},
    ]
    for headers in wrong:
        resp = _get(orders_api, params, headers)
        assert resp.status_code == 401, headers
        assert set(resp.json()) == {"error"}
        assert orders_api.token not in resp.text
    ok = _get(orders_api, params, orders_api.headers())
    assert ok.status_code == 200
    assert len(ok.json()["orders"]) == 5
    assert requests.get(f"{orders_api.base_url}/healthz", timeout=10).status_code == 200
    assert orders_api.token not in orders_api.log.read_text(errors="replace")


@pytest.mark.integration
def test_api_filters_treat_injection_strings_as_bad_parameters(orders_api):
    start, end = orders_api.window
    good = {"updated_since": start.isoformat(), "updated_before": end.isoformat(), "page_size": 1000}
    before = []
    page = _get(orders_api, good, orders_api.headers()).json()
    before += page["orders"]
    for text in INJECTIONS:
        for name in ("updated_since", "updated_before", "page_size", "page_token"):
            resp = _get(orders_api, {**good, name: text}, orders_api.headers())
            assert resp.status_code == 400, (name, text, resp.status_code)
            body = resp.json()
            assert set(body) == {"error"}
            # The message may quote the bad value back (as JSON data); nothing else may leak.
            message = body["error"].replace(text, "")
            assert not any(marker in message for marker in _LEAK_MARKERS), body
        # An unknown parameter carrying SQL is refused too, not ignored.
        resp = _get(orders_api, {**good, "status": text}, orders_api.headers())
        assert resp.status_code == 400
    # Nothing changed: the same first page, and the source tables are intact.
    assert _get(orders_api, good, orders_api.headers()).json()["orders"] == before
    with sql.connect(orders_api.database_url) as db:
        assert db.scalar("select count(*) from products") == 300
        assert db.scalar("select count(*) from orders") == len(orders_api.orders)
