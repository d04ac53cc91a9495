"""The lake's storage rules, on a folder and on ``gs://``: "could not read" is never "nothing there".

Cloud Storage errors come from :class:`tests.fixtures.faulty_storage.FaultyStorage`, a
proxy in front of the GCS emulator that answers chosen requests with 403, 404 or 500
the way Cloud Storage does; the lake goes through Beam's real ``gs://`` FileSystem.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import pytest

from beam_pipelines import lake
from tests.fixtures.faulty_storage import FaultyStorage

H10 = datetime(2026, 11, 21, 10, tzinfo=UTC)


def _dt(h, m=0):
    return datetime(2026, 11, 21, h, m, tzinfo=UTC)


def _order_file(root: str, name: str, lines: list[str]) -> str:
    path = lake.join(lake.partition_path(root, "orders", H10), name)
    lake.write_jsonl(path, lines)
    return path


# ----------------------------------------------------------------------------- literal paths


@pytest.mark.parametrize("tricky", ["brk[1]", "star*", "what?", "a[!b]c"])
def test_glob_characters_in_a_root_are_data(tmp_path, tricky):
    """A root ``brk[1]`` once read the lake ``brk1``, and ``star*`` merged two lakes."""
    root = str(tmp_path / tricky)
    lookalikes = ["brk1", "star-other", "whatX", "abc", "a!c"]
    for r in (root, *(str(tmp_path / name) for name in lookalikes)):
        _order_file(r, f"orders_{uuid.uuid4().hex[:6]}.jsonl", ['{"o":1}'])
    folder = lake.partition_path(root, "orders", H10)
    found = lake.files_in(folder, "*.jsonl")
    assert len(found) == 1 and found[0].startswith(root + "/")
    assert lake.literal("gs://b/brk[1]/x*?") == "gs://b/brk[[]1]/x[*][?]"


# ----------------------------------------------------------------------------- absence vs failure


def test_a_missing_pointer_in_an_existing_folder_is_absent(tmp_path):
    assert lake.read_text_if_exists(str(tmp_path / "raw" / "products" / "_LATEST")) is None
    assert lake.latest_snapshot_dir(str(tmp_path), "users") is None


def test_extract_gaps_name_what_no_record_covers(tmp_path):
    root = str(tmp_path)
    for start, end in ((_dt(10), _dt(10, 10)), (_dt(10, 10), _dt(10, 30)), (_dt(10, 40), _dt(11))):
        lake.write_extract_record(root, "orders", start, end, raw=1)
    assert lake.extract_gaps(root, "orders", _dt(10), _dt(12)) == [(_dt(10, 30), _dt(10, 40)), (_dt(11), _dt(12))]
    lake.write_extract_record(root, "orders", _dt(10, 30), _dt(10, 40))
    lake.write_extract_record(root, "orders", _dt(11), _dt(12))
    assert lake.extract_gaps(root, "orders", _dt(10), _dt(12)) == []
    assert "10:30:00Z" in lake.describe_gaps([(_dt(10, 30), _dt(10, 40))])


# ----------------------------------------------------------------------------- retries


def test_a_window_swap_gives_the_same_files_when_run_twice_and_overlapping(tmp_path):
    root = str(tmp_path)
    part = lake.partition_path(root, "orders", H10)
    old = [lake.join(part, lake.window_file_name("orders", _dt(10), _dt(10, 10), i)) for i in range(3)]
    for i, path in enumerate(old):
        lake.write_jsonl(path, [f'{{"old":{i}}}'])
    temp = [str(tmp_path / "_tmp" / f"{i}.jsonl") for i in range(2)]
    for i, path in enumerate(temp):
        lake.write_jsonl(path, [f'{{"new":{i}}}'])

    def swap():
        return lake.replace_window_files(part, "orders", _dt(10), _dt(10, 10), temp)

    first = swap()
    again = swap()  # a retried work item: the temp files are still there, the stray shard is gone
    threads = [threading.Thread(target=swap) for _ in range(4)]  # zombie attempts beside a retry
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert first == again == lake.files_in(part, "*.jsonl")
    assert [list(lake.iter_lines(p)) for p in first] == [['{"new":0}'], ['{"new":1}']]
    assert all(lake.files_in(str(tmp_path / "_tmp"), "*.jsonl") == sorted(temp) for _ in [0])
    lake.delete_quietly([*temp, *temp])  # deleting what another attempt deleted is fine


# ----------------------------------------------------------------------------- Cloud Storage


@pytest.fixture
def faulty_gcs(gcs_emulator, beam_bq_emulator, monkeypatch):
    # beam_bq_emulator: anonymous credentials for Beam in this process, as a local job has.
    with FaultyStorage(gcs_emulator.url) as storage:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage.url)
        monkeypatch.setenv("NO_GCE_CHECK", "true")
        yield storage


@pytest.mark.integration
def test_on_gcs_absence_is_an_answer_and_every_error_is_raised(faulty_gcs, gcs_emulator):
    root = f"gs://{gcs_emulator.bucket}/lake-{uuid.uuid4().hex[:8]}"
    written = _order_file(root, "orders_a.jsonl", ['{"o":1}'])
    folder = written.rsplit("/", 1)[0]
    assert lake.files_in(folder, "*.jsonl") == [written]
    assert lake.read_text_if_exists(lake.join(root, "raw/products/_LATEST")) is None
    assert lake.latest_snapshot_dir(root, "products") is None
    assert lake.has_files_under(root) and not lake.has_files_under(root + "-nothing-here")

    faulty_gcs.fail(403, op="list")
    with pytest.raises(lake.LakeReadError, match=r"could not list .*403"):
        lake.files_in(folder, "*.jsonl")
    with pytest.raises(lake.LakeReadError, match="403"):
        lake.has_files_under(root)
    with pytest.raises(lake.LakeReadError):  # "not found" cannot be confirmed without a listing
        lake.latest_snapshot_dir(root, "products")
    faulty_gcs.heal()

    # Without storage.objects.get Cloud Storage answers 403 for a file, there or not.
    faulty_gcs.fail(403, op="stat")
    faulty_gcs.fail(403, op="open")
    for path in (written, lake.join(root, "raw/products/_LATEST")):
        with pytest.raises(lake.LakeReadError, match=r"could not read .*403"):
            lake.read_text_if_exists(path)
    faulty_gcs.heal()

    missing_bucket = f"gs://no-such-bucket-{uuid.uuid4().hex[:8]}/lake"
    with pytest.raises(lake.LakeReadError, match="404"):
        lake.has_files_under(missing_bucket)
    with pytest.raises(lake.LakeReadError):
        lake.latest_snapshot_dir(missing_bucket, "products")
    with pytest.raises(lake.LakeReadError):
        lake.extract_gaps(missing_bucket, "orders", _dt(10), _dt(11))

    faulty_gcs.fail(500, op="list", times=2)  # a bad moment: the client retries, the answer is whole
    assert lake.files_in(folder, "*.jsonl") == [written]
    assert faulty_gcs.rules[-1].hits == 2


@pytest.mark.integration
def test_on_gcs_a_window_swap_survives_a_retry_and_a_failed_copy(faulty_gcs, gcs_emulator):
    root = f"gs://{gcs_emulator.bucket}/lake-{uuid.uuid4().hex[:8]}"
    part = lake.partition_path(root, "orders", H10)
    temp = [lake.join(root, "_tmp", "run", f"{i}.jsonl") for i in range(2)]
    for i, path in enumerate(temp):
        lake.write_jsonl(path, [f'{{"n":{i}}}'])
    faulty_gcs.fail(403, op="copy", times=1)
    with pytest.raises(Exception, match="403"):
        lake.replace_window_files(part, "orders", _dt(10), _dt(10, 10), temp)
    final = lake.replace_window_files(part, "orders", _dt(10), _dt(10, 10), temp)  # the retry completes it
    assert lake.replace_window_files(part, "orders", _dt(10), _dt(10, 10), temp) == final
    assert [list(lake.iter_lines(p)) for p in lake.files_in(part, "*.jsonl")] == [['{"n":0}'], ['{"n":1}']]
