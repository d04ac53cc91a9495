import json

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from beam_pipelines.transforms.bigquery_sink import FailedRowToDeadLetterFn, WriteRowsToTable, WriteUserBehavior

ERRORS = [{"reason": "invalid", "message": "no such field: colour"}]
BAD_ROW = {"event_id": "e-1", "event_ts": "2026-11-21T10:00:05Z", "colour": "red"}


def test_failed_rows_become_dead_letters():
    p = test_pipeline.TestPipeline(runner="FnApiRunner")
    failed = p | beam.Create([("p:d.user_behavior", BAD_ROW, ERRORS), ("p:d.user_behavior", {"x": 1}, ERRORS)])
    rows = failed | beam.ParDo(FailedRowToDeadLetterFn("streaming"))
    assert_that(
        rows | beam.Map(lambda r: (r["stage"], r["pipeline"], json.loads(r["payload"]), r["event_ts"], r["error"])),
        equal_to(
            [
                ("bigquery_insert", "streaming", BAD_ROW, "2026-11-21T10:00:05.000000Z", json.dumps(ERRORS)),
                ("bigquery_insert", "streaming", {"x": 1}, None, json.dumps(ERRORS)),
            ]
        ),
    )
    p.run().wait_until_finish()


def test_table_and_schema_names_are_validated():
    with pytest.raises(ValueError, match=r"project:dataset\.table"):
        WriteUserBehavior("dataset.user_behavior")
    with pytest.raises(ValueError, match="unknown table"):
        WriteRowsToTable("p:d.t", "no_such_table")


class _FakeWrapper:
    """Stands in for BigQueryWrapper: refuses rows with 'colour', fails 'flaky' once (transient)."""

    requests: list[list[str]] = []
    tables: list[str] = []
    _flaked: set[str] = set()

    def get_or_create_table(self, project, dataset, table, *args, **kwargs):
        _FakeWrapper.tables.append(f"{project}:{dataset}.{table}")

    def insert_rows(self, project, dataset, table, rows, skip_invalid_rows=False):
        _FakeWrapper.requests.append([r["event_id"] for r in rows])
        errors = []
        for i, row in enumerate(rows):
            if "colour" in row:
                errors.append({"index": i, "errors": [{"reason": "invalid", "message": "no such field: colour"}]})
            elif row["event_id"] == "flaky" and "flaky" not in _FakeWrapper._flaked:
                _FakeWrapper._flaked.add("flaky")
                errors.append({"index": i, "errors": [{"reason": "backendError", "message": "try again"}]})
        return not errors, errors


def test_per_bundle_inserts_batch_rows_retry_transient_errors_and_dead_letter_the_rest(monkeypatch):
    from beam_pipelines.transforms import bigquery_sink

    monkeypatch.setattr(bigquery_sink.bigquery_tools, "BigQueryWrapper", _FakeWrapper)
    monkeypatch.setattr(bigquery_sink.time, "sleep", lambda s: None)
    _FakeWrapper.requests, _FakeWrapper.tables, _FakeWrapper._flaked = [], [], set()
    bigquery_sink._KNOWN_TABLES.discard("proj-1:ds.user_behavior")
    rows = [{"event_id": f"ok-{i}", "event_ts": "2026-11-21T10:00:05Z"} for i in range(5)]
    rows += [{"event_id": "flaky"}, BAD_ROW]
    p = test_pipeline.TestPipeline(runner="FnApiRunner")
    failed = (
        p
        | beam.Create([rows])  # one element so the bundle holds all rows
        | beam.FlatMap(lambda rs: rs)
        | WriteUserBehavior("proj-1:ds.user_behavior", pipeline="streaming", per_bundle_inserts=True, batch_size=3)
    )
    assert_that(
        failed | beam.Map(lambda r: (r["stage"], r["pipeline"], json.loads(r["payload"]), r["error"])),
        equal_to([("bigquery_insert", "streaming", BAD_ROW, json.dumps(ERRORS))]),
    )
    p.run().wait_until_finish()
    # Requests of at most batch_size rows; the transient failure retried alone; the table
    # got-or-created once per process.
    sent = [i for req in _FakeWrapper.requests for i in req]
    assert all(len(req) <= 3 for req in _FakeWrapper.requests)
    assert sorted(sent) == sorted([r["event_id"] for r in rows] + ["flaky"])
    assert ["flaky"] in _FakeWrapper.requests
    assert _FakeWrapper.tables == ["proj-1:ds.user_behavior"]


def test_per_bundle_inserts_need_streaming_inserts():
    with pytest.raises(ValueError, match="per_bundle_inserts"):
        WriteUserBehavior("proj-1:ds.user_behavior", method="FILE_LOADS", per_bundle_inserts=True)
