"""The batch jobs on a ``gs://`` lake, with Cloud Storage failing the way it does: loud, never less data.

The lake lives in the GCS emulator behind :class:`tests.fixtures.faulty_storage.FaultyStorage`,
which answers chosen requests with 403 (a service account without the permission), 404
(a missing bucket) or 500. Every job either succeeds with exactly the data of a clean run
(a transient 500 is retried by the client) or fails with the cause in its error, leaving
BigQuery and the lake as they were: a listing that fails is never an empty hour, a
dimension read that fails or comes back small never deletes or blanks a row.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from beam_pipelines import extract_dims, hourly, lake
from beam_pipelines.io import sql
from tests.fixtures.faulty_storage import FaultyStorage
from tests.fixtures.jobs import extract_lake, hourly_job_args, write_small_lake
from tests.fixtures.stack import own_dataset

pytestmark = pytest.mark.integration

WINDOW = (datetime(2025, 9, 2, 9, tzinfo=UTC), datetime(2025, 9, 2, 10, tzinfo=UTC))


@pytest.fixture(scope="module")
def storage(gcs_emulator, beam_bq_emulator):
    """Cloud Storage for this module's jobs (in this process): the emulator behind the fault proxy."""
    with FaultyStorage(gcs_emulator.url) as proxy, pytest.MonkeyPatch.context() as mp:
        mp.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        yield proxy


@pytest.fixture(autouse=True)
def _healed(storage):
    storage.heal()
    yield
    storage.heal()


@pytest.fixture(scope="module")
def source(tmp_path_factory, generated_world, orders_api_server):
    url = f"sqlite:///{tmp_path_factory.mktemp('faults') / 'source.db'}"
    generated_world(url, 31, 120, 90, 400, WINDOW, with_events=False)
    return url, orders_api_server(url)


@pytest.fixture(scope="module")
def gs_lake(storage, gcs_emulator, source) -> str:
    """The extracts of WINDOW, written to gs:// through Beam's Cloud Storage FileSystem."""
    url, api = source
    root = f"gs://{gcs_emulator.bucket}/lake-{uuid.uuid4().hex[:8]}"
    extract_lake(root, api.base_url, api.token, url, *WINDOW)
    return root


@pytest.fixture(scope="module")
def clean(bigquery_emulator, gs_lake):
    """One clean hourly run from the gs:// lake: the tables every faulty run must leave alone."""
    with own_dataset(bigquery_emulator, "faults") as (client, project, ds):
        counters = hourly.run(hourly_job_args(project, ds, gs_lake, *WINDOW))
        yield client, project, ds, counters


def tables(client, project: str, ds: str) -> dict[str, list[tuple]]:
    """The rows of the tables a run may change (``ingest_ts`` aside: it is the time of the write)."""
    out = {}
    for name, key, skip in (
        ("user_behavior", "event_id, source", "except(ingest_ts)"),
        ("products", "product_id", ""),
        ("users", "user_id", ""),
    ):
        rows = client.query(f"select * {skip} from `{project}.{ds}.{name}` order by {key}").result()
        out[name] = [tuple(r.values()) for r in rows]
    return out


def test_the_gcs_lake_loads_exactly_what_a_folder_lake_loads(clean, source, bigquery_emulator, tmp_path):
    client, project, ds, counters = clean
    url, api = source
    folder = str(tmp_path / "lake")
    extract_lake(folder, api.base_url, api.token, url, *WINDOW)
    with own_dataset(bigquery_emulator, "folder") as (_c, _p, folder_ds):
        assert hourly.run(hourly_job_args(project, folder_ds, folder, *WINDOW))["records_in"] == counters["records_in"]
        assert tables(client, project, folder_ds) == tables(client, project, ds)
    assert counters["bq_merged_user_behavior"] > 0 and counters["bq_merged_products"] == 120


@pytest.mark.parametrize(
    "fault, expect",
    [
        ({"status": 403, "op": "list"}, "403"),  # no storage.objects.list: was a green run with 0 rows
        ({"status": 403, "op": "open", "name": r"orders_.*\.jsonl$"}, "403"),
        ({"status": 403, "op": "stat", "name": r"/_LATEST$"}, "403"),  # was "no snapshot": NULL names
    ],
    ids=["list", "open-orders", "stat-pointer"],
)
def test_hourly_fails_loudly_and_changes_nothing_when_the_lake_cannot_be_read(clean, storage, gs_lake, fault, expect):
    client, project, ds, _ = clean
    before = tables(client, project, ds)
    storage.fail(**fault)
    with pytest.raises(Exception, match=expect):
        hourly.run(hourly_job_args(project, ds, gs_lake, *WINDOW))
    storage.heal()
    assert tables(client, project, ds) == before


def test_a_missing_bucket_or_lake_is_not_an_empty_hour(clean, gcs_emulator):
    client, project, ds, _ = clean
    before = tables(client, project, ds)
    for root in (f"gs://no-such-bucket-{uuid.uuid4().hex[:6]}/lake", f"gs://{gcs_emulator.bucket}/never-written"):
        with pytest.raises(Exception, match=r"404|nothing is under --lake_root"):
            hourly.run(hourly_job_args(project, ds, root, *WINDOW))
    assert tables(client, project, ds) == before


def test_a_transient_server_error_is_retried_and_the_data_is_whole(clean, storage, gs_lake):
    client, project, ds, counters = clean
    before = tables(client, project, ds)
    retried = [storage.fail(500, op=op, times=2) for op in ("list", "open")]
    again = hourly.run(hourly_job_args(project, ds, gs_lake, *WINDOW))
    assert all(rule.hits == 2 for rule in retried)
    assert again["records_in"] == counters["records_in"] and tables(client, project, ds) == before


def test_the_orders_extract_fails_without_a_completion_record_and_a_retry_completes_it(storage, source, gcs_emulator):
    url, api = source
    root = f"gs://{gcs_emulator.bucket}/lake-{uuid.uuid4().hex[:8]}"
    storage.fail(403, op="copy")  # the swap into the partition is denied
    with pytest.raises(Exception, match="403"):
        extract_lake(root, api.base_url, api.token, url, *WINDOW)
    assert lake.extract_gaps(root, lake.ORDERS, *WINDOW) == [WINDOW]  # nothing claims the window
    storage.heal()
    storage.fail(500, op="copy", times=1)  # a bad moment during the retry: retried by the client
    extract_lake(root, api.base_url, api.token, url, *WINDOW)
    assert lake.extract_gaps(root, lake.ORDERS, *WINDOW) == []


def test_a_missing_snapshot_on_gcs_fails_the_hour_instead_of_blanking_names(clean, gcs_emulator):
    """``_LATEST`` absent (NotFound on Cloud Storage, not OSError): the same answer as on a folder."""
    client, project, ds, _ = clean
    before = tables(client, project, ds)
    root = f"gs://{gcs_emulator.bucket}/lake-{uuid.uuid4().hex[:8]}"
    write_small_lake(root, WINDOW[0], ["no-dims-1"])
    lake.delete_quietly([lake.join(root, "raw/users/_LATEST")])
    with pytest.raises(Exception, match=r"no users snapshot in the lake .*_LATEST does not exist"):
        hourly.run(hourly_job_args(project, ds, root, *WINDOW))
    assert tables(client, project, ds) == before


def test_extract_dims_fails_loudly_and_keeps_the_previous_snapshot(storage, source, gs_lake, gcs_emulator):
    url, _api = source
    pointer = lake.read_text(lake.join(gs_lake, "raw/users/_LATEST"))
    argv = ["--runner=FnApiRunner", f"--database_url={url}", f"--lake_root={gs_lake}", "--tables=users"]
    storage.fail(403, op="write")  # the snapshot's parts cannot be written
    with pytest.raises(Exception, match="403"):
        extract_dims.run(argv)
    storage.heal()
    assert lake.read_text(lake.join(gs_lake, "raw/users/_LATEST")) == pointer
    # An incremental read on a lake with no snapshot would publish the changed rows as the table.
    new = f"gs://{gcs_emulator.bucket}/lake-{uuid.uuid4().hex[:8]}"
    since = "--updated_since=2025-09-02T09:00:00Z"
    with pytest.raises(Exception, match=r"no users snapshot .* run a full extract first"):
        extract_dims.run([*argv[:2], f"--lake_root={new}", "--tables=users", since])
    assert lake.latest_snapshot_dir(new, "users") is None


def test_a_dimension_read_that_shrinks_never_deletes_or_blanks_rows(clean, source, gs_lake, tmp_path):
    """A source that comes back small (a wrong database, a mapping onto the wrong view):
    extract_dims keeps _LATEST; a small snapshot that got there anyway makes the hourly
    run fail before any statement; --allow_dims_shrink takes it."""
    client, project, ds, _ = clean
    url, _api = source
    before = tables(client, project, ds)
    pointer = lake.read_text(lake.join(gs_lake, "raw/products/_LATEST"))
    with sql.connect(url) as db:
        kept = db.query_dicts("select * from products order by product_id limit 30")
    wrong = f"sqlite:///{tmp_path / 'wrong.db'}"
    with sql.connect(wrong) as db:
        sql.create_schema(db)
        db.executemany(
            "insert into products (product_id, product_name, category, price, updated_at) "
            "values (:product_id, :product_name, :category, :price, :updated_at)",
            kept,
        )
    with pytest.raises(Exception, match="products would shrink from 120 to 30 rows"):
        extract_dims.run(
            ["--runner=FnApiRunner", f"--database_url={wrong}", f"--lake_root={gs_lake}", "--tables=products"]
        )
    assert lake.read_text(lake.join(gs_lake, "raw/products/_LATEST")) == pointer

    # A small snapshot published anyway (e.g. by hand): the hourly MERGE refuses it.
    small = lake.snapshot_dir(gs_lake, "products", datetime(2025, 9, 2, 10, 30, tzinfo=UTC))
    lake.write_jsonl(lake.join(small, "part-00000-of-00001.jsonl"), [sql.jsonable(r) for r in kept])
    lake.write_latest_pointer(gs_lake, "products", small.rsplit("/", 1)[-1])
    try:
        with pytest.raises(Exception, match="products would shrink from 120 to 30 rows"):
            hourly.run(hourly_job_args(project, ds, gs_lake, *WINDOW))
        assert tables(client, project, ds) == before
        hourly.run(hourly_job_args(project, ds, gs_lake, *WINDOW, "--allow_dims_shrink"))
        after = tables(client, project, ds)
        assert len(after["products"]) == 30
        # Rows of products gone from the snapshot keep their names: attributes never go back to NULL.
        assert [r for r in after["user_behavior"] if r[5] is None] == [
            r for r in before["user_behavior"] if r[5] is None
        ]
    finally:
        lake.write_text(lake.join(gs_lake, "raw/products/_LATEST"), pointer)
