"""The local stack comes up on free ports, reports itself, and explains failures."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest

from beam_pipelines.local.processes import StackError, free_port, http_ok, pid_alive
from beam_pipelines.local.services import pubsub_launcher
from beam_pipelines.local.stack import DEFAULT_ROOT, LocalStack, StackConfig


@pytest.mark.integration
def test_up_status_down_cycle(tmp_path, monkeypatch):
    # Keep the DuckDB extensions where `make venv` put them; everything else is private to the test.
    monkeypatch.setattr("beam_pipelines.local.services.duckdb_home", lambda root: DEFAULT_ROOT / "duckdb-home")
    stack = LocalStack(StackConfig(root=tmp_path, project="stack-test-project", dataset="stack_test"))
    assert stack.config.source_url == f"sqlite:///{tmp_path / 'source.db'}"
    lines: list[str] = []
    try:
        services = stack.up(progress=lines.append)
        assert set(services) == {"pubsub", "bigquery", "storage", "orders_api"}
        assert http_ok(services["orders_api"].endpoints["http"] + "/healthz")
        status = {row["service"]: row for row in stack.status()}
        assert {row["state"] for row in status.values()} == {"running"}
        assert http_ok(services["bigquery"].endpoints["rest"] + "/bigquery/v2/projects/stack-test-project/datasets")
        assert any("user_behavior created" in line for line in lines)
        # Idempotent: a second `up` reuses the running services and changes no table.
        lines.clear()
        again = stack.up(progress=lines.append)
        assert {n: s.pid for n, s in again.items()} == {n: s.pid for n, s in services.items()}
        assert any("already running" in line for line in lines)
        assert any("user_behavior unchanged" in line for line in lines)
        # up() reports the endpoints but leaves this process's environment alone.
        assert os.environ.get("BIGQUERY_EMULATOR_HOST") != services["bigquery"].env["BIGQUERY_EMULATOR_HOST"]
        env = stack.env()
        assert env["PUBSUB_EMULATOR_HOST"] == services["pubsub"].env["PUBSUB_EMULATOR_HOST"]
        assert env["BIGQUERY_EMULATOR_HOST"].startswith("http://127.0.0.1:")
    finally:
        stack.down(progress=lines.append)
    assert {row["state"] for row in stack.status()} == {"stopped"}
    assert not stack.state_file.exists()


@pytest.mark.integration
def test_a_dead_service_comes_back_on_its_recorded_port(tmp_path):
    import signal
    import socket
    import time

    def kill(pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:  # the signal is delivered asynchronously
            time.sleep(0.05)

    stack = LocalStack(StackConfig(root=tmp_path, project="stack-test-project", dataset="stack_test"))
    lines: list[str] = []
    try:
        first = stack.up(["storage", "orders_api"], progress=lines.append)
        for info in first.values():
            kill(info.pid)
        lines.clear()
        again = stack.up(["storage", "orders_api"], progress=lines.append)
        for name, info in again.items():
            assert info.pid != first[name].pid
            assert info.endpoints == first[name].endpoints  # where clients still send their requests
        assert http_ok(again["orders_api"].endpoints["http"] + "/healthz")
        assert http_ok(again["storage"].endpoints["http"] + "/storage/v1/b")
        assert sum("died" in line and "restarting on" in line for line in lines) == 2
        assert stack.load()["storage"].endpoints == first["storage"].endpoints  # and recorded again
        # Someone else on the recorded port: refused with the reason, never moved silently.
        kill(again["storage"].pid)
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            deadline = time.monotonic() + 10
            while True:  # the dead server's socket may take a moment to go
                try:
                    squatter.bind(("127.0.0.1", again["storage"].ports()["http"]))
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            squatter.listen()
            with pytest.raises(StackError, match=r"port \d+, where it ran before .* is taken"):
                stack.up(["storage"], progress=lines.append)
    finally:
        stack.down(progress=lines.append)


@pytest.mark.integration
def test_up_restores_every_subscription_the_stack_knows(tmp_path):
    """The emulator keeps subscriptions in memory: after it restarts, `up` brings back every one
    it recorded (a user's own included), not only user-events-sub."""
    import signal
    import time

    from beam_pipelines.local.pubsub_admin import ensure_subscription, list_subscriptions
    from beam_pipelines.local.stack import remember_subscriptions

    stack = LocalStack(StackConfig(root=tmp_path, project="stack-test-project", dataset="stack_test"))
    lines: list[str] = []
    try:
        first = stack.up(["pubsub"], progress=lines.append)
        host = first["pubsub"].env["PUBSUB_EMULATOR_HOST"]
        ensure_subscription("stack-test-project", "clicks", "my-analysis-sub", host, ack_deadline_seconds=30)
        # A streaming job starting against the stack records what the emulator holds
        # (beam_pipelines.streaming calls this with the variables `local env` exports).
        recorded = remember_subscriptions(stack.env())
        assert {r["subscription"].rsplit("/", 1)[-1] for r in recorded} == {"user-events-sub", "my-analysis-sub"}
        assert (
            remember_subscriptions({**stack.env(), "PUBSUB_EMULATOR_HOST": "127.0.0.1:1"}) is None
        )  # not its emulator
        os.killpg(first["pubsub"].pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pid_alive(first["pubsub"].pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        lines.clear()
        stack.up(["pubsub"], progress=lines.append)
        restored = {r["subscription"]: r for r in list_subscriptions("stack-test-project", host)}
        mine = restored["projects/stack-test-project/subscriptions/my-analysis-sub"]
        assert (mine["topic"], mine["ack_deadline_seconds"]) == ("projects/stack-test-project/topics/clicks", 30)
        assert "projects/stack-test-project/subscriptions/user-events-sub" in restored
        assert any("recreated: my-analysis-sub" in line for line in lines), lines
    finally:
        stack.down(progress=lines.append)
    assert stack.known_subscriptions()  # kept across `down`: a fresh stack gets them back too


def test_missing_java_is_explained(monkeypatch, tmp_path):
    # A PATH with gcloud but no java.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gcloud = subprocess.run(["which", "gcloud"], capture_output=True, text=True).stdout.strip()
    if not gcloud:
        pytest.fail("the Google Cloud CLI is required for the local stack (see README, Prerequisites)")
    (bin_dir / "gcloud").symlink_to(gcloud)
    (bin_dir / "python3").symlink_to(sys.executable)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(StackError, match="needs Java 17"):
        pubsub_launcher()


def test_missing_gcloud_is_explained(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StackError, match="gcloud components install pubsub-emulator"):
        pubsub_launcher()


def test_free_port_is_bindable():
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_cli_help_and_status_without_a_stack(tmp_path):
    env = {**os.environ, "NO_GCE_CHECK": "true"}
    cli = [sys.executable, "-m", "beam_pipelines.local"]
    out = subprocess.run([*cli, "--help"], capture_output=True, text=True, env=env, check=True).stdout
    for command in ("up", "down", "status", "env", "install-extensions"):
        assert command in out
    # An empty root: every service is reported stopped, and nothing under .local is touched.
    status = subprocess.run(
        [*cli, "--root", str(tmp_path), "status"], capture_output=True, text=True, env=env, check=True
    ).stdout
    lines = {line.split()[0]: line.split()[1] for line in status.splitlines()[2:]}
    assert lines == {"pubsub": "stopped", "bigquery": "stopped", "storage": "stopped", "orders_api": "stopped"}


def test_a_storage_emulator_not_sharing_the_gcs_folder_is_restarted_where_it_was(tmp_path):
    """A stack started by an older version (in-memory GCS, no folder shared with the BigQuery
    emulator's load jobs) is brought in line by the next ``up`` instead of failing later loads."""
    import json

    stack = LocalStack(StackConfig(root=tmp_path, project="stack-test-project", dataset="stack_test"))
    lines: list[str] = []
    try:
        first = stack.up(["storage"], progress=lines.append)["storage"]
        state = json.loads(stack.state_file.read_text())
        state["services"]["storage"]["extra"].pop("data_dir")  # what an older version recorded
        stack.state_file.write_text(json.dumps(state))
        lines.clear()
        again = stack.up(["storage"], progress=lines.append)["storage"]
        assert again.pid != first.pid and not pid_alive(first.pid)
        assert again.endpoints == first.endpoints
        assert again.extra["data_dir"] == str(stack.config.gcs_dir)
        assert any("without the shared GCS folder" in line for line in lines)
        lines.clear()
        assert stack.up(["storage"], progress=lines.append)["storage"].pid == again.pid  # in line now: kept
    finally:
        stack.down(progress=lambda _: None)


def _local(root, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m beam_pipelines.local --root root ...`` as a user runs it."""
    env = {**os.environ, "NO_GCE_CHECK": "true"}
    proc = subprocess.run(
        [sys.executable, "-m", "beam_pipelines.local", "--root", str(root), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert not check or proc.returncode == 0, proc.stderr
    return proc


def _demo_rows(now):
    """Two sessions of the demo's last hour: views, a cart, an order of two lines (one product twice)."""
    from beam_pipelines.events import format_ts, order_line_event_id, user_behavior_row

    t = now.replace(minute=0, second=0, microsecond=0) - timedelta(minutes=50)
    products = {"p-1": {"product_name": "Kettle", "category": "Kitchen"}, "p-2": {"product_name": "Rug"}}
    rows = []
    for i, (name, pid, order_id, line) in enumerate(
        [("view", "p-1", None, 0), ("view", "p-2", None, 0), ("add_to_cart", "p-1", None, 0),
         ("order", "p-1", "o-1", 1), ("order", "p-2", "o-1", 2), ("view", "p-1", None, 0)]
    ):  # fmt: skip
        ts = format_ts(t + timedelta(minutes=i))
        event = {
            "event_id": order_line_event_id(order_id, line) if order_id else f"e-{i}",
            "event_name": name,
            "event_ts": ts,
            "user_id": "u-1" if i < 5 else "u-2",
            "session_id": "s-1" if i < 5 else "s-2",
            "product_id": pid,
            "price": "12.50",
            "quantity": 2 if line == 1 else 1,
            "order_id": order_id,
        }
        rows.append(user_behavior_row(event, products[pid], None, "stream", ts))
    return rows


@pytest.mark.integration
def test_bigquery_keeps_its_data_across_down_and_up_and_the_demo_commands_run(tmp_path):
    """``make stack-down`` then ``stack-up`` lost every table; the demo's printed commands then failed.

    Data is written as the jobs and the demo write it (streaming inserts, then create-views
    and refresh-profile through the command), the stack goes down and up, and the commands
    ``make demo`` prints at its end run, as printed, against what was written before.
    """
    import argparse
    import shlex
    from datetime import UTC, datetime

    from beam_pipelines.demo import DemoContext, explore_commands
    from bigquery_schemas.client import make_client

    root, config = tmp_path / "local", StackConfig(root=tmp_path / "local")
    _local(root, "up", "--service", "bigquery")
    env = dict(line.removeprefix("export ").split("=", 1) for line in _local(root, "env").stdout.splitlines())
    client = make_client(config.project, env["BIGQUERY_EMULATOR_HOST"])
    table = f"{config.project}.{config.dataset}.user_behavior"
    rows = _demo_rows(datetime.now(UTC))
    try:
        assert client.insert_rows_json(table, rows) == []
        where = ["--project", config.project, "--dataset", config.dataset, "--endpoint", env["BIGQUERY_EMULATOR_HOST"]]
        for command in ("create-views", "refresh-profile"):
            proc = subprocess.run([sys.executable, "-m", "bigquery_schemas.analytics", command, *where],
                                  capture_output=True, text=True, timeout=120)  # fmt: skip
            assert proc.returncode == 0, proc.stderr
        assert (config.bigquery_dir / "bqemulator.duckdb").exists()

        _local(root, "down")
        assert _local(root, "env", check=False).returncode == 3  # nothing to point a shell at
        up = _local(root, "up", "--service", "bigquery").stdout
        assert "user_behavior unchanged" in up  # the tables were there: nothing recreated

        env = dict(line.removeprefix("export ").split("=", 1) for line in _local(root, "env").stdout.splitlines())
        client = make_client(config.project, env["BIGQUERY_EMULATOR_HOST"])
        assert sorted(t.table_id for t in client.list_tables(config.dataset)) == sorted(
            ["dead_letter", "engagement_minutely", "orders", "products", "user_behavior", "user_behavior_dedup",
             "user_profile", "users"]
        )  # fmt: skip
        assert sorted(r["event_id"] for r in client.query(f"select event_id from `{table}`").result()) == sorted(
            r["event_id"] for r in rows
        )
        # The demo's printed commands, as printed (only this test's root and interpreter put in).
        ctx = DemoContext(LocalStack(config), argparse.Namespace(hours=2))
        script = "\n".join(["set -e", *explore_commands(ctx)])
        script = script.replace("beam_pipelines.local env", f"beam_pipelines.local --root {shlex.quote(str(root))} env")
        script = script.replace(".venv/bin/python", shlex.quote(sys.executable))
        env_vars = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}
        proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              env={**env_vars, "NO_GCE_CHECK": "true"})  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert "Kettle" in proc.stdout and "Rug" in proc.stdout  # top_products_by_units
        start, end = ctx.date_range()
        report = tmp_path / "reports" / f"report-{start}-{end}.html"
        assert f"wrote reports/report-{start}-{end}.html" in proc.stdout and report.exists()
        assert "data-kpi='orders' data-current='1'" in report.read_text()  # o-1, written before the restart
    finally:
        _local(root, "down", check=False)


def test_the_stacks_emulator_skips_only_bqemulators_automatic_time_travel_copies():
    """Pins the private bqemulator code that beam_pipelines.local.bqemulator_main replaces.

    bqemulator 1.4 copies the whole table after every write (record_change -> capture with
    kind="AUTO"); on disk a 100-row insert into a 200k-row table took 1.5 s with the copy.
    If an upgrade moves or renames this, the stack's emulator would quietly copy again (or
    fail to start): this test says so first.
    """
    import inspect

    from bqemulator.versioning.snapshots import SnapshotManager

    from beam_pipelines.local.bqemulator_main import skip_automatic_snapshots

    original = SnapshotManager.capture
    assert list(inspect.signature(original).parameters) == ["self", "project_id", "dataset_id", "table_id", "kind"]
    assert 'self.capture(project_id, dataset_id, table_id, kind="AUTO")' in inspect.getsource(
        SnapshotManager.record_change
    )
    assert "self._events.publish(TableDataChanged(" in inspect.getsource(SnapshotManager.record_change)
    try:
        skip_automatic_snapshots()
        skip_automatic_snapshots()  # idempotent: wraps once
        calls = []
        manager = SnapshotManager.__new__(SnapshotManager)  # no engine: an AUTO copy must not touch one
        assert manager.capture("p", "d", "t", kind="AUTO") is None
        # a user snapshot (CREATE SNAPSHOT TABLE) still goes to the original
        manager._catalog = type("Catalog", (), {"get_table": lambda self, *a: calls.append(a)})()
        assert manager.capture("p", "d", "t", kind="USER") is None and calls == [("p", "d", "t")]
    finally:
        SnapshotManager.capture = original
