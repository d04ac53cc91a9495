"""The orders API breaking its page contract can never shrink or loop the lake.

Each fault is injected by the real server (``python -m publishers.orders_api serve
--fault-rate-<fault>``, see :data:`publishers.orders_api.PAGE_FAULTS`) and
``extract_orders`` runs against it over HTTP, 300 orders in one hour, 20 per page
(the drill of issue 17):

* on every answer (rate 1): the job fails with the fault's own message, naming the
  API's URL and the page, and the complete lake written before stays byte for byte;
* on some answers: the retries absorb it and the lake holds exactly the source's
  orders, each once.

A re-run that legitimately writes fewer orders (orders updated again, so now in a
later window) replaces the files, and says so in a counter and a log line.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from beam_pipelines import events, extract_orders
from beam_pipelines.io import sql
from publishers.orders_api import HTML, MISSING_TOKEN, REPEAT_TOKEN, TRUNCATED

pytestmark = pytest.mark.integration

WINDOW = (datetime(2025, 7, 1, 8, tzinfo=UTC), datetime(2025, 7, 1, 9, tzinfo=UTC))
N_ORDERS = 300
TOKEN_ENV = "CONTRACT_API_TOKEN"

# What each fault's failure must say (after the URL and the page number).
FAILURES = {
    MISSING_TOKEN: r"body has no 'next_page_token' key",
    REPEAT_TOKEN: r"cursor did not advance \(page \d+ starts at .* the same orders again under a new token\)",
    TRUNCATED: r"ChunkedEncodingError: .*IncompleteRead",
    HTML: r"HTTP 200 \(text/html; charset=utf-8\) but body is not JSON",
}


@pytest.fixture(scope="module")
def source(tmp_path_factory, generated_world) -> tuple[str, list[str]]:
    """A SQLite source with 300 orders in WINDOW, and their ids."""
    url = f"sqlite:///{tmp_path_factory.mktemp('contract') / 'source.db'}"
    world = generated_world(url, 17, 100, 80, N_ORDERS, WINDOW, with_events=False)
    ids = sorted(o.order_id for o in world.orders if WINDOW[0] <= o.updated_at < WINDOW[1])
    assert len(ids) == N_ORDERS
    return url, ids


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jsonl"))}


def _lake_ids(root: Path) -> list[str]:
    return sorted(json.loads(line)["order_id"] for content in _tree(root).values() for line in content.splitlines())


def _extract(api, lake_root: Path, monkeypatch, window=WINDOW) -> dict[str, int]:
    monkeypatch.setenv(TOKEN_ENV, api.token)
    return extract_orders.run(
        [
            "--runner=FnApiRunner",
            f"--api_base_url={api.base_url}",
            f"--api_token_env={TOKEN_ENV}",
            f"--window_start={events.format_ts(window[0])}",
            f"--window_end={events.format_ts(window[1])}",
            f"--lake_root={lake_root}",
            "--page_size=20",
            "--split_minutes=60",
            "--max_attempts=6",
            "--max_backoff_seconds=0.05",
        ]
    )


@pytest.fixture(scope="module")
def complete_lake(source, orders_api_server, tmp_path_factory) -> Path:
    """The lake of a clean extract of WINDOW (every test copies it before touching it)."""
    api = orders_api_server(source[0])
    root = tmp_path_factory.mktemp("complete") / "lake"
    with pytest.MonkeyPatch.context() as mp:
        _extract(api, root, mp)
    assert _lake_ids(root) == source[1]
    return root


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("fault", sorted(FAILURES))
def test_a_fault_on_every_page_fails_loudly_and_keeps_the_complete_lake(
    fault: str, source, orders_api_server: Callable, complete_lake: Path, tmp_path, monkeypatch
):
    api = orders_api_server(source[0], **{f"fault_rate_{fault}": 1.0})
    root = _copy(complete_lake, tmp_path / "lake")
    before = _tree(root)
    with pytest.raises(Exception) as failure:
        _extract(api, root, monkeypatch)
    message = str(failure.value)
    # One line names the API, the page and what was wrong.
    line = next(x for x in message.splitlines() if "orders API" in x)
    assert f"orders API {api.base_url}/v1/orders page " in line
    assert re.search(FAILURES[fault], line), line
    assert _tree(root) == before  # never replaced by what the job did not understand


@pytest.mark.parametrize("fault", sorted(FAILURES))
def test_a_fault_on_some_pages_is_retried_and_the_lake_is_exact(
    fault: str, source, orders_api_server: Callable, tmp_path, monkeypatch
):
    api = orders_api_server(source[0], fault_seed=5, **{f"fault_rate_{fault}": 0.3})
    metrics = _extract(api, tmp_path / "lake", monkeypatch)
    assert _lake_ids(tmp_path / "lake") == source[1]  # every order, none twice
    assert metrics["api_retries"] > 0  # the fault really happened
    assert metrics["api_orders_read"] == N_ORDERS


def test_a_rerun_that_writes_fewer_orders_says_so(
    source, orders_api_server: Callable, complete_lake: Path, tmp_path, monkeypatch, caplog
):
    # A private copy of the source: 25 orders are updated again after the window, the
    # one legitimate way for a window to shrink.
    url = f"sqlite:///{tmp_path / 'source.db'}"
    Path(url.removeprefix("sqlite:///")).write_bytes(Path(source[0].removeprefix("sqlite:///")).read_bytes())
    moved = source[1][:25]
    later = WINDOW[1] + timedelta(minutes=5)
    with sql.connect(url) as db:
        for order_id in moved:
            db.execute("update orders set updated_at = :ts where order_id = :id", {"ts": later, "id": order_id})
    api = orders_api_server(url)
    root = _copy(complete_lake, tmp_path / "lake")
    with caplog.at_level(logging.WARNING):
        metrics = _extract(api, root, monkeypatch)
    assert _lake_ids(root) == sorted(set(source[1]) - set(moved))
    assert metrics["lake_raw_orders_windows_shrunk"] == 1
    assert metrics["lake_raw_orders_shrunk_records"] == 25
    said = [r.getMessage() for r in caplog.records if "shrank on re-run" in r.getMessage()]
    assert len(said) == 1 and f"{N_ORDERS - 25} records now, {N_ORDERS} in the files it replaced" in said[0]
    # Shrinking is counted only when it happens: the same re-run again is silent.
    metrics = _extract(api, root, monkeypatch)
    assert metrics.get("lake_raw_orders_windows_shrunk", 0) == 0
