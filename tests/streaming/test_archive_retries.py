"""Archive files under retried and overlapping attempts, on a folder and on ``gs://``.

Dataflow runs a work item again after a lost worker and can run a zombie attempt beside
its retry. Every attempt at the same batch of lines must leave one complete file and
never delete or truncate the file another attempt committed; a storage that refuses or
fails must make the write fail, never report a batch archived that is not.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from beam_pipelines import event_archive, lake
from beam_pipelines.transforms.archive import ArchivedFile, WriteArchiveFileFn, archive_file_name
from tests.fixtures.faulty_storage import FaultyStorage

FOLDER = "dt=2026-11-22/hour=10"
LINES = [
    event_archive.encode(f'{{"event_id": "e{i}"}}'.encode(), {"event_id": f"e{i}"}, None, f"m{i}") for i in range(500)
]


@pytest.fixture(params=["folder", "gcs"])
def lake_root(request, tmp_path):
    if request.param == "folder":
        return str(tmp_path / "lake")
    gcs = request.getfixturevalue("gcs_emulator")
    request.getfixturevalue("monkeypatch").setenv("NO_GCE_CHECK", "true")
    return f"gs://{gcs.bucket}/archive-{uuid.uuid4().hex[:8]}"


def _files(root: str) -> list[str]:
    return lake.files_in(lake.join(root, lake.RAW, lake.EVENTS, FOLDER), "*.jsonl")


def _attempt(root: str, lines: list[str]) -> list[ArchivedFile]:
    fn = WriteArchiveFileFn(root, "run-1")
    return list(fn.process(((FOLDER, 0), lines)))


def test_attempts_in_sequence_and_overlapping_leave_one_complete_file(lake_root):
    first = _attempt(lake_root, LINES)
    [path] = _files(lake_root)
    assert first == [ArchivedFile(path, sorted(LINES))]
    assert path.endswith(archive_file_name("run-1", sorted(LINES)))

    # While a reader watches the file, eight attempts at the same batch run at once, each
    # with the lines in another order (a retried GroupByKey need not keep it).
    seen, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            seen.append(sum(1 for _ in lake.iter_raw_lines(path)))

    watcher = threading.Thread(target=reader)
    watcher.start()
    barrier = threading.Barrier(8)
    errors = []

    def zombie(seed: int):
        shuffled = LINES[seed:] + LINES[:seed]
        barrier.wait()
        try:
            _attempt(lake_root, shuffled)
        except Exception as exc:  # collected: an attempt must never fail because another one ran
            errors.append(exc)

    attempts = [threading.Thread(target=zombie, args=(i * 37,)) for i in range(8)]
    for t in attempts:
        t.start()
    for t in attempts:
        t.join()
    stop.set()
    watcher.join()
    assert errors == []
    assert _files(lake_root) == [path]  # one file, never a second copy
    assert set(seen) == {len(LINES)}  # the reader never found it missing or short
    assert sorted(lake.iter_lines(path)) == sorted(LINES)
    # A different batch of the same folder gets its own file.
    _attempt(lake_root, LINES[:3])
    assert len(_files(lake_root)) == 2


@pytest.mark.integration
@pytest.mark.parametrize(
    ("op", "status", "times"),
    [("stat", 403, None), ("write", 403, None), ("copy", 403, None), ("write", 503, 2), ("copy", 500, 2)],
    ids=["check-denied", "write-denied", "move-denied", "write-fails-twice", "move-fails-twice"],
)
def test_storage_faults_fail_the_write_or_are_retried_never_a_short_archive(
    gcs_emulator, beam_bq_emulator, monkeypatch, op, status, times
):
    # beam_bq_emulator: anonymous credentials for Beam in this process, as a local job has.
    root = f"gs://{gcs_emulator.bucket}/faults-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    with FaultyStorage(gcs_emulator.url) as storage:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage.url)  # Beam makes a client per call: no cache
        storage.fail(status, op=op, times=times)
        started = time.monotonic()
        if times is None:
            with pytest.raises(Exception) as failure:
                _attempt(root, LINES)
            # The cause is named, not hidden behind "nothing there".
            assert str(status) in str(failure.value), storage.requests
            storage.heal()
            assert _files(root) == []  # nothing half-published
            _attempt(root, LINES)  # the retry, once storage answers again, completes the batch
        else:
            _attempt(root, LINES)  # transient errors: retried by the storage client
            assert storage.rules[0].hits == times
        assert time.monotonic() - started < 120
        [path] = _files(root)
        assert sorted(lake.iter_lines(path)) == sorted(LINES)
