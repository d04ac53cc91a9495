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
