"""Every side effect of the hourly job gives the same data when its work item runs twice, or overlapping.

Dataflow runs a batch work item again after a lost worker (up to 4 attempts) and can run
a zombie attempt beside the retry. Here an hourly run keeps its staging tables and files
(``--keep_staging_tables``), and then the steps that write are run again on the same
input by hand: each twice in a row and three at once. The tables must end exactly as
one run left them (``ingest_ts`` aside: a row's write time), and no attempt may fail.
The lake's own side effects (window swap, snapshot pointer, completion record) are run
the same way.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from beam_pipelines import hourly, lake
from beam_pipelines.transforms.lake_io import _PointLatestFn, _RecordExtractFn, window_key
from beam_pipelines.transforms.staging.load import DeleteStagingFilesFn, LoadStagingTableFn
from beam_pipelines.transforms.staging.merge import DropStagingTablesFn, MergeStagingTablesFn
from beam_pipelines.transforms.staging.targets import MergeTarget, TableRef
from tests.fixtures.jobs import extract_lake, hourly_job_args
from tests.fixtures.stack import own_dataset

pytestmark = pytest.mark.integration

WINDOW = (datetime(2025, 9, 3, 14, tzinfo=UTC), datetime(2025, 9, 3, 15, tzinfo=UTC))
RUN_ID = "retried-run"
KINDS = ("orders", "products", "users", "user_behavior", "dead_letter")
BAD_LINES = ['{"order_id": ', '"a string, not an order"']  # two dead letters of the run


def attempts(fn, twice: bool = True, overlapping: int = 3) -> None:
    """Run ``fn()`` twice in a row, then ``overlapping`` times at once; every attempt must succeed."""
    for _ in range(2 if twice else 1):
        fn()
    errors: list[BaseException] = []

    def attempt():
        try:
            fn()
        except BaseException as exc:  # collected: the test fails on any of them below
            errors.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(overlapping)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory, generated_world, orders_api_server, bigquery_emulator, beam_bq_emulator):
    url = f"sqlite:///{tmp_path_factory.mktemp('retries') / 'source.db'}"
    generated_world(url, 41, 60, 50, 200, WINDOW, with_events=False)
    api = orders_api_server(url)
    root = str(tmp_path_factory.mktemp("retries-lake"))
    extract_lake(root, api.base_url, api.token, url, *WINDOW)
    bad = lake.join(lake.partition_path(root, lake.ORDERS, WINDOW[0]), "orders_bad.jsonl")
    lake.write_jsonl(bad, BAD_LINES)
    with own_dataset(bigquery_emulator, "retries") as (client, project, ds):
        args = hourly_job_args(project, ds, root, *WINDOW, f"--run_id={RUN_ID}", "--keep_staging_tables")
        counters = hourly.run(args)
        targets = {
            kind: MergeTarget(kind, ref, ref.staging(RUN_ID))
            for kind, ref in ((k, TableRef.parse(f"{project}:{ds}.{k}")) for k in KINDS)
        }
        yield root, client, project, targets, counters


def final_tables(client, targets) -> dict[str, list[tuple]]:
    out = {}
    for kind, target in targets.items():
        skip = {"user_behavior": "except(ingest_ts)", "dead_letter": "except(insert_ts)"}.get(kind, "")
        rows = client.query(f"select * {skip} from {target.final.sql}").result()
        out[kind] = sorted((tuple(r.values()) for r in rows), key=repr)
    return out


def test_the_run_wrote_what_the_retries_must_keep(kept_run):
    _root, client, _project, targets, counters = kept_run
    tables = final_tables(client, targets)
    assert counters["bq_merged_user_behavior"] == len(tables["user_behavior"]) > 0
    assert len([r for r in tables["dead_letter"] if RUN_ID in r]) == len(BAD_LINES)


def test_loads_merges_inserts_and_drops_run_again_change_nothing(kept_run):
    _root, client, project, targets, _ = kept_run
    before = final_tables(client, targets)
    staged = {k: client.get_table(t.staging.table_id).num_rows for k, t in targets.items()}
    files_root = f"{hourly.staging_files_location(hourly.HourlyOptions(['--runner=FnApiRunner']))}/{RUN_ID}"

    # The staging load of user_behavior (WRITE_TRUNCATE): same rows, however often it runs.
    prefix = f"{files_root}/{targets['user_behavior'].staging.table}/part"
    files = lake.list_files(lake.literal(prefix) + "*.parquet")
    load = LoadStagingTableFn(targets["user_behavior"].staging, "user_behavior", None, prefix)
    attempts(lambda: list(load.process(files, staged["user_behavior"])))
    assert client.get_table(targets["user_behavior"].staging.table_id).num_rows == staged["user_behavior"]

    # Every MERGE and the dead-letter INSERT: keyed, so the final tables stay as they are.
    merge = MergeStagingTablesFn(list(targets.values()), project, RUN_ID)
    attempts(lambda: list(merge.process(None, [])))
    assert final_tables(client, targets) == before

    # Dropping the staging tables and deleting their files: what is gone is fine.
    drop = DropStagingTablesFn(list(targets.values()), project)
    attempts(lambda: list(drop.process(None, [])))
    assert not [t.table_id for t in client.list_tables(targets["orders"].final.dataset) if "_stg_" in t.table_id]
    delete = DeleteStagingFilesFn()
    attempts(lambda: delete.process(files_root, []))
    assert lake.list_files(lake.literal(files_root) + "/**") == []
    assert final_tables(client, targets) == before


def test_lake_pointer_and_completion_record_run_again_are_the_same(kept_run, tmp_path):
    root = kept_run[0]
    latest = lake.read_text(lake.join(root, "raw/products/_LATEST"))
    folder = lake.latest_snapshot_dir(root, "products")
    parts = lake.files_in(folder, "part-*.jsonl")
    stray = lake.join(folder, "part-00009-of-00010.jsonl")  # a shard of an earlier attempt
    lake.write_jsonl(stray, ['{"product_id": "stray"}'])
    point = _PointLatestFn(root, "products", folder, allow_shrink=False)
    attempts(lambda: list(point.process(None, parts)))
    assert lake.read_text(lake.join(root, "raw/products/_LATEST")) == latest
    assert lake.files_in(folder, "part-*.jsonl") == parts

    record = _RecordExtractFn(root, lake.ORDERS)
    piece = window_key(WINDOW[0], WINDOW[0] + timedelta(minutes=10))
    attempts(lambda: list(record.process(piece, [(lake.RAW, piece, ["a"])])))
    assert lake.extract_gaps(root, lake.ORDERS, *WINDOW) == []
