"""The stream's lake archive on ``gs://`` (the GCS emulator): written and read back exactly.

The same transforms as the local-folder tests, pointed at a bucket through Beam's
FileSystems: the archive files land in their hour folders and the hourly job's reader
gives each message the stream's verdict, bytes that are not UTF-8 included.
"""

from __future__ import annotations

from datetime import timedelta

import apache_beam as beam
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from beam_pipelines import event_archive, lake
from beam_pipelines.transforms.archive import WriteMessageArchive
from beam_pipelines.transforms.job_window import ParseEventsInWindow
from beam_pipelines.transforms.lake_io import ReadLakeFiles
from beam_pipelines.transforms.parse import ARCHIVE, DEAD_LETTERS, EVENTS, ParseEvents
from tests.reliability import hostile

pytestmark = pytest.mark.integration


def test_archive_on_gcs_round_trips_every_message(gcs_emulator, beam_bq_emulator, monkeypatch):
    # beam_bq_emulator: anonymous credentials in this process, as a local job has (no 20 s of retries for ADC).
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    lake_root = f"gs://{gcs_emulator.bucket}/lake-{id(monkeypatch)}"
    valid = hostile._event("gcs-valid")
    messages = [
        PubsubMessage(valid, {"event_id": "gcs-valid"}),
        PubsubMessage(b'{"event_id": "\xff"}', None),  # not UTF-8: kept as bytes, refused again
        PubsubMessage(hostile._event("gcs-mismatch"), {"event_id": "other"}),
    ]
    p = beam.Pipeline(runner="BundleBasedDirectRunner", options=PipelineOptions(streaming=True, project="p-local"))
    parsed = p | beam.Create(messages) | ParseEvents("p", archive=True)
    _ = parsed[ARCHIVE] | WriteMessageArchive(lake_root, "gcs-run", flush_seconds=1)
    p.run().wait_until_finish()

    files = lake.list_files(lake.join(lake_root, "raw/events/*/*/*" + event_archive.SUFFIX))
    assert lake.join(lake_root, "raw/events", lake.partition_folder(hostile.HOUR)) in {
        f.rsplit("/", 1)[0] for f in files
    }
    lines = [line for f in files for line in lake.iter_raw_lines(f)]
    assert sorted(event_archive.decode(line)[0] for line in lines) == sorted(m.data for m in messages)

    start, end = hostile.HOUR, hostile.HOUR + timedelta(hours=1)
    q = beam.Pipeline(runner="FnApiRunner", options=PipelineOptions(project="p-local"))
    folders = sorted({f.rsplit("/", 1)[0] for f in files})
    out = (
        q
        | ReadLakeFiles([lake.join(d, "*.jsonl") for d in folders], binary=True)
        | ParseEventsInWindow(start, end, "p")
    )
    assert_that(out[EVENTS] | beam.Map(lambda e: e["event_id"]), equal_to(["gcs-valid"]), label="Events")
    assert_that(
        out[DEAD_LETTERS] | beam.Map(lambda r: (r["stage"], r["error"][:40])),
        equal_to(
            [
                ("parse", "payload is not valid UTF-8"),
                ("validate", "event_id attribute 'other' disagrees wit"),
            ]
        ),
        label="DeadLetters",
    )
    q.run().wait_until_finish()
