"""Table references and the MERGE statements of the hourly job (pure functions)."""

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from beam_pipelines.transforms.staging.merge import dimension_merge_sql, orders_merge_sql, user_behavior_merge_sql
from beam_pipelines.transforms.staging.sweep import is_stale_staging
from beam_pipelines.transforms.staging.targets import MergeTarget, TableRef


def test_table_ref_parses_and_names_its_staging_table():
    ref = TableRef.parse("my-project:ecommerce.user_behavior")
    assert (ref.project, ref.dataset, ref.table) == ("my-project", "ecommerce", "user_behavior")
    assert ref.staging("20261121T100000-ab12CD").table_id == (
        "my-project.ecommerce.user_behavior_stg_20261121t100000_ab12cd"
    )
    with pytest.raises(ValueError, match=r"project:dataset\.table"):
        TableRef.parse("ecommerce.user_behavior", "output_table")


def _target(kind):
    ref = TableRef.parse(f"p-1:ds.{kind}")
    return MergeTarget(kind, ref, ref.staging("r1"))


def test_user_behavior_merge_is_keyed_on_event_id_and_source_within_the_staged_dates():
    sql = user_behavior_merge_sql(_target("user_behavior"))
    assert sql.startswith("merge `p-1.ds.user_behavior` t\nusing (\n  select * from `p-1.ds.user_behavior_stg_r1`")
    assert "on t.event_id = s.event_id and t.source = s.source and t.date between @min_date and @max_date" in sql
    assert "partition by event_id, source" in sql
    assert "event_id = s.event_id," not in sql.split("update set", 1)[1]  # keys are not updated
    assert sql.endswith(
        "when not matched then insert (date, event_id, event_name, price, product_id, product_name, user_id, "
        "user_name, order_id, event_ts, session_id, quantity, category, source, ingest_ts) values (s.date, "
        "s.event_id, s.event_name, s.price, s.product_id, s.product_name, s.user_id, s.user_name, s.order_id, "
        "s.event_ts, s.session_id, s.quantity, s.category, s.source, s.ingest_ts)"
    )


def test_orders_merge_only_moves_forward_and_dims_merge_deletes_missing_rows():
    assert "when matched and s.updated_at >= t.updated_at then update" in orders_merge_sql(_target("orders"))
    dims = dimension_merge_sql(_target("products"), "product_id")
    assert "on t.product_id = s.product_id" in dims
    assert dims.endswith("when not matched by source then delete")


def test_a_staging_table_is_stale_once_expired_or_older_than_the_ttl():
    now = datetime(2026, 11, 21, 12, tzinfo=UTC)
    ttl = timedelta(hours=6)
    table = lambda created, expires=None: SimpleNamespace(created=created, expires=expires)  # noqa: E731
    assert not is_stale_staging(table(now - timedelta(hours=5, minutes=59)), now, ttl)  # may still be running
    assert is_stale_staging(table(now - ttl), now, ttl)  # older than any run lives (the emulator's case)
    assert is_stale_staging(table(now - timedelta(minutes=1), now - timedelta(seconds=1)), now, ttl)  # expired
    assert not is_stale_staging(table(None, now + timedelta(hours=1)), now, ttl)


class _Conflicting:
    """A BigQuery client whose first ``conflicts`` statements lose a concurrent-update race."""

    def __init__(self, conflicts: int, error: str = "Could not serialize access to table t due to concurrent update"):
        self.conflicts, self.error, self.statements = conflicts, error, []

    def query(self, sql, job_config=None):
        self.statements.append(sql)
        client = self

        class Job:
            num_dml_affected_rows = 3

            def result(self):
                if len(client.statements) <= client.conflicts:
                    raise RuntimeError(client.error)
                return []

        return Job()


def test_a_dml_statement_that_loses_a_concurrent_update_race_runs_again():
    """BigQuery aborts one of two mutating statements on the same partitions; ours are idempotent."""
    from beam_pipelines.transforms.staging.merge import CONFLICT_RETRIES, run_dml

    slept: list[float] = []
    client = _Conflicting(conflicts=2)
    assert run_dml(client, "merge x", [], sleep=slept.append).num_dml_affected_rows == 3
    assert len(client.statements) == 3 and slept == [2.0, 4.0]
    with pytest.raises(RuntimeError, match="concurrent update"):
        run_dml(_Conflicting(conflicts=CONFLICT_RETRIES + 1), "merge x", [], sleep=slept.append)
    with pytest.raises(RuntimeError, match="Syntax error"):  # anything else is not retried
        run_dml(_Conflicting(conflicts=1, error="Syntax error at [1:1]"), "merge x", [], sleep=slept.append)
