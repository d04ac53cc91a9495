"""The hourly job never updates or deletes a row the streaming job may have written minutes ago.

BigQuery refuses UPDATE, DELETE and MERGE that modify rows written by
``tabledata.insertAll`` in the last 30 minutes (up to 90): "would affect rows in the
streaming buffer". bqemulator has no streaming buffer and would accept anything, so
this test checks the rule itself: stream rows are inserted the way the streaming job
inserts them (insertAll), the hourly job runs at once over a lake that holds the same
events (with other product names) and one event the stream missed, and then

* every stream row is exactly as the stream wrote it, ``ingest_ts`` included;
* the missed event is inserted (a backfill from the lake);
* no statement the job issued updates or deletes a ``stream`` row: the only DML on
  ``user_behavior`` is the MERGE, whose update clause is limited to ``source = 'api'``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from google.cloud import bigquery

from beam_pipelines import events, hourly
from tests.fixtures.jobs import hourly_job_args, small_event, write_small_lake
from tests.fixtures.stack import own_dataset

pytestmark = pytest.mark.integration

HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
STREAMED_AT = events.format_ts(datetime.now(UTC) - timedelta(minutes=3))


def test_hourly_leaves_streamed_rows_alone_and_only_updates_api_rows(
    bigquery_emulator, beam_bq_emulator, tmp_path, monkeypatch
):
    root = str(tmp_path / "lake")
    write_small_lake(root, HOUR, [f"buffer-{n}" for n in range(5)])  # events 0..3 are also streamed
    issued: list[str] = []
    query = bigquery.Client.query

    def recording(self, sql, *args, **kwargs):
        issued.append(sql)
        return query(self, sql, *args, **kwargs)

    monkeypatch.setattr(bigquery.Client, "query", recording)
    with own_dataset(bigquery_emulator, "buffer") as (client, project, ds):
        table = f"{project}.{ds}.user_behavior"
        streamed = [
            events.user_behavior_row(
                events.validate_record(small_event(f"buffer-{n}", HOUR + timedelta(minutes=n))),
                {"product_name": "stream name", "category": "c"},
                {"user_name": "stream user"},
                events.SOURCE_STREAM,
                STREAMED_AT,
            )
            for n in range(4)
        ]
        assert client.insert_rows_json(table, streamed) == []  # tabledata.insertAll, as the stream writes

        def stream_rows():
            rows = client.query(f"select * from `{table}` where source = 'stream' order by event_id").result()
            return {r["event_id"]: dict(r) for r in rows}

        before = stream_rows()
        hourly.run(hourly_job_args(project, ds, root, HOUR, HOUR + timedelta(hours=1)))
        after = stream_rows()

    assert {k: after[k] for k in before} == before  # untouched, ingest_ts and names included
    assert after["buffer-4"]["product_name"] == "lake name"  # the event the stream missed
    dml = [
        re.sub(r"\s+", " ", s.lower()) for s in issued if re.match(r"\s*(merge|update|delete|insert|truncate)", s, re.I)
    ]
    on_user_behavior = [s for s in dml if f"{ds}.user_behavior`" in s.split(" using ")[0]]
    assert on_user_behavior and all(s.startswith("merge ") for s in on_user_behavior)
    for statement in on_user_behavior:
        assert "when matched and t.source = 'api' then update" in statement
        assert "when matched then" not in statement and " delete" not in statement
    assert not [s for s in dml if re.match(rf"(update|delete from|truncate table) `[^`]*{ds}\.user_behavior`", s)]
