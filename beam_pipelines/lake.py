"""The data lake layout, in one place: where each extract lives and how it is replaced.

Every path goes through :class:`apache_beam.io.filesystems.FileSystems`, so the same
code works on a local folder (``.local/lake``) and on ``gs://bucket/prefix``.

Layout under ``<lake_root>``::

    raw/orders/dt=YYYY-MM-DD/hour=HH/orders_<start>_<end>-SSSSS.jsonl
        one JSON order per line, exactly as the orders API returned it; <start>/<end>
        (YYYYMMDDTHHMMSSZ) is the piece of the extract window inside that hour.
    raw/events/dt=YYYY-MM-DD/hour=HH/*.jsonl
        stream events in the Pub/Sub wire format, dropped here for backfills.
    dead_letter/orders/dt=YYYY-MM-DD/hour=HH/orders_<start>_<end>-SSSSS.jsonl
        ``dead_letter`` rows (events.dead_letter_row) of records the API returned
        that were not JSON objects; the hourly job forwards them to BigQuery.
    raw/<table>/snapshot=YYYYMMDDTHHMMSSZ/part-SSSSS-of-NNNNN.jsonl
        full snapshots of a dimension table (products, users), one row per line.
    raw/<table>/_LATEST
        the folder name of the newest complete snapshot, written after the snapshot.
    _extracts/orders/dt=YYYY-MM-DD/hour=HH/<start>_<end>.json
        the completion record of an orders extract of the window piece <start>..<end>,
        written by ``extract_orders`` after its files are in place (its file counts).
        It is the proof that the piece was extracted, also when it had no orders: the
        hourly job and the Composer sensor require every hour to be covered by them.

Re-running an extract replaces its own files and nothing else: the order extract of
``[10:00, 10:10)`` deletes the files of that window piece and moves the new ones in,
while the files of ``[10:10, 10:20)`` in the same hour stay. A piece that only partly
overlaps an existing file is refused (the files would no longer say which orders
they cover); re-extract with the same boundaries or a window that covers them.
Readers only match ``*.jsonl``, and new files are written under ``_tmp/`` first, so a
reader never sees a half-written file (on GCS the swap of several files is not
atomic: run the hourly job after the extract, as the Composer DAG does, which waits
for the completion records).
"""

from __future__ import annotations

import contextlib
import errno
import json
import re
import uuid
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems

from beam_pipelines.events import parse_ts

HOUR = timedelta(hours=1)
RAW = "raw"
DEAD_LETTER = "dead_letter"
ORDERS = "orders"
EVENTS = "events"
LATEST_POINTER = "_LATEST"
TMP = "_tmp"
EXTRACTS = "_extracts"
SNAPSHOT_PREFIX = "snapshot="
_COMPACT = "%Y%m%dT%H%M%SZ"
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_WINDOW_FILE = re.compile(r"^(?P<prefix>[a-z_]+)_(?P<start>\d{8}T\d{6}Z)_(?P<end>\d{8}T\d{6}Z)-\d+\.jsonl$")


# ----------------------------------------------------------------------------- time


def _window_bound(name: str, value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    text = (value or "").strip() if isinstance(value, str) else value
    # A date alone is what people type for a day's backfill: its midnight UTC.
    if isinstance(text, str) and _DATE_ONLY.match(text):
        text += "T00:00:00Z"
    try:
        return parse_ts(text)
    except (ValueError, TypeError):
        raise ValueError(
            f"--{name} {value!r} is not a UTC time: use ISO-8601 with an offset, e.g. 2026-11-22T10:00:00Z, "
            "or a date (midnight UTC), e.g. 2026-11-22"
        ) from None


def parse_window(start: str | datetime, end: str | datetime, *, whole_hours: bool = False) -> tuple[datetime, datetime]:
    """Parse and check a half-open window ``[start, end)`` of UTC instants.

    Args:
      start: ISO-8601 with an offset, e.g. ``2026-11-22T10:00:00Z``; a date alone
        (``2026-11-22``) means its midnight UTC.
      end: same format, strictly after ``start``.
      whole_hours: require both ends on an hour boundary (the hourly job).

    Bounds must be whole seconds: lake file names carry a window's bounds to the second
    (``orders_<start>_<end>``), so ``23:07:00.000001`` would name the window of
    ``23:07:00`` and a later step could no longer place its records (it once failed
    deep in the job with "range ... outside the window").

    Raises:
      ValueError: naming the expected format.
    """
    s, e = _window_bound("window_start", start), _window_bound("window_end", end)
    if s.tzinfo is None or e.tzinfo is None:
        raise ValueError("window bounds need a UTC offset, e.g. 2026-11-22T10:00:00Z")
    s, e = s.astimezone(UTC), e.astimezone(UTC)
    if e <= s:
        raise ValueError(f"window_end {e.isoformat()} must be after window_start {s.isoformat()}")
    if s.microsecond or e.microsecond:
        raise ValueError(
            f"window bounds must be whole seconds, e.g. 2026-11-22T23:07:00Z; got {s.isoformat()} .. {e.isoformat()}"
        )
    if whole_hours and (s != floor_hour(s) or e != floor_hour(e)):
        raise ValueError(
            f"window must be whole hours, e.g. 2026-11-22T10:00:00Z .. 2026-11-22T12:00:00Z; "
            f"got {s.isoformat()} .. {e.isoformat()}"
        )
    return s, e


def floor_hour(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def compact_ts(dt: datetime) -> str:
    """``2026-11-22T10:00:00Z`` -> ``20261122T100000Z`` (safe in file and folder names)."""
    return dt.astimezone(UTC).strftime(_COMPACT)


def parse_compact_ts(text: str) -> datetime:
    return datetime.strptime(text, _COMPACT).replace(tzinfo=UTC)


def hour_pieces(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """Split ``[start, end)`` at hour boundaries: one piece per hour partition it touches."""
    pieces = []
    cursor = start
    while cursor < end:
        nxt = min(floor_hour(cursor) + HOUR, end)
        pieces.append((cursor, nxt))
        cursor = nxt
    return pieces


def split_range(start: datetime, end: datetime, step: timedelta) -> list[tuple[datetime, datetime]]:
    """Split ``[start, end)`` into sub-ranges of at most ``step`` that never cross an hour."""
    if step <= timedelta(0):
        raise ValueError("step must be positive")
    out = []
    for piece_start, piece_end in hour_pieces(start, end):
        cursor = piece_start
        while cursor < piece_end:
            nxt = min(cursor + step, piece_end)
            out.append((cursor, nxt))
            cursor = nxt
    return out


# ----------------------------------------------------------------------------- paths


def join(*parts: str) -> str:
    """Join path parts with ``/`` for both local paths and ``gs://`` URLs."""
    head, *rest = parts
    return "/".join([head.rstrip("/"), *(p.strip("/") for p in rest if p)])


def partition_folder(hour: datetime) -> str:
    """``dt=YYYY-MM-DD/hour=HH`` for the hour containing ``hour``."""
    h = floor_hour(hour)
    return f"dt={h:%Y-%m-%d}/hour={h:%H}"


def partition_path(lake_root: str, table: str, hour: datetime, *, zone: str = RAW) -> str:
    """``<lake_root>/<zone>/<table>/dt=YYYY-MM-DD/hour=HH`` for the hour containing ``hour``."""
    return join(lake_root, zone, table, partition_folder(hour))


def window_file_name(prefix: str, start: datetime, end: datetime, shard: int) -> str:
    return f"{prefix}_{compact_ts(start)}_{compact_ts(end)}-{shard:05d}.jsonl"


def snapshot_dir(lake_root: str, table: str, snapshot_ts: datetime) -> str:
    return join(lake_root, RAW, table, f"{SNAPSHOT_PREFIX}{compact_ts(snapshot_ts)}")


def tmp_dir(lake_root: str, run_id: str) -> str:
    return join(lake_root, TMP, run_id)


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------------------- files
#
# "Could not read" is never "nothing there". Beam's FileSystems.match wraps every error
# of a listing (403, a missing bucket, a 5xx after the client's retries) in BeamIOError,
# and a pattern that matches nothing returns an empty result: only the second is an
# answer. GCSFileSystem.open of a missing object raises google's NotFound, a local open
# FileNotFoundError; a missing bucket is a 404 too, so absence is confirmed by listing
# the parent (which fails on a missing bucket). Every path is literal: glob characters
# in a lake root ("brk[1]", "star*") are data, escaped by :func:`literal`.


class LakeReadError(OSError):
    """A lake path could not be listed or read (permission, missing bucket, server error)."""


_GLOB = re.compile(r"([\[*?])")


def literal(path: str) -> str:
    """``path`` as a pattern that matches only itself: ``[``, ``*`` and ``?`` become ``[[]``, ``[*]``, ``[?]``.

    Beam's patterns (``FileSystem.translate_pattern``) have no escape character, but a
    one-character class matches that character literally.
    """
    return _GLOB.sub(r"[\1]", path)


def error_cause(exc: BaseException) -> str:
    """The innermost errors behind Beam's wrappers, e.g. ``403 ...does not have storage.objects.list access``."""
    details = getattr(exc, "exception_details", None)
    if details:
        text = "; ".join(dict.fromkeys(error_cause(e) for e in details.values()))
    elif isinstance(getattr(exc, "code", None), int) and getattr(exc, "message", None):
        text = f"{exc.code} {exc.message}"  # google.api_core errors: status and Cloud Storage's message
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = (text.strip().splitlines() or [""])[0]
    return text if len(text) <= 300 else text[:297] + "..."


def _unreadable(what: str, path: str, exc: BaseException) -> LakeReadError:
    return LakeReadError(
        f"could not {what} {path}: {error_cause(exc)} (check that the bucket exists and that the job's service "
        "account may use it: roles/storage.objectViewer to read, objectAdmin to write; nothing was assumed empty)"
    )


def list_files(pattern: str) -> list[str]:
    """Paths matching ``pattern`` (``*`` stops at ``/``, ``**`` does not), sorted; ``[]`` when nothing matches.

    Build patterns as ``join(literal(folder), "name_*.jsonl")`` so that only the last part globs.

    Raises:
      LakeReadError: the listing failed (never reported as "no files").
    """
    return sorted(m.path for m in _match(pattern).metadata_list)


def sized_files(pattern: str) -> list[tuple[str, int]]:
    """``(path, bytes)`` of the files matching ``pattern``, as :func:`list_files` lists them (LakeReadError too)."""
    return sorted((m.path, m.size_in_bytes) for m in _match(pattern).metadata_list)


def _match(pattern: str, limit: int | None = None):
    try:
        with warnings.catch_warnings():
            # An escaped "[" ("[[]") compiles to the regex class [[], which Python flags as a
            # possible nested set (FutureWarning); it means "[" and nothing else.
            if "[[]" in pattern:
                warnings.simplefilter("ignore", FutureWarning)
            return FileSystems.match([pattern], limits=[limit])[0]
    except BeamIOError as exc:
        raise _unreadable("list", pattern, exc) from exc


def files_in(folder: str, glob: str) -> list[str]:
    """Files directly in ``folder`` (taken literally) whose name matches ``glob``."""
    return list_files(join(literal(folder), glob))


def has_files_under(folder: str) -> bool:
    """Whether anything exists under ``folder``; LakeReadError when it cannot be listed."""
    return bool(_match(join(literal(folder), "**"), limit=1).metadata_list)


def _is_not_found(exc: BaseException) -> bool:
    from google.api_core.exceptions import NotFound

    # Beam's local FileSystem wraps the OSError of a missing file in another OSError.
    if isinstance(exc, OSError) and exc.errno is None and exc.args and isinstance(exc.args[0], BaseException):
        return _is_not_found(exc.args[0])
    return isinstance(exc, NotFound) or (isinstance(exc, OSError) and exc.errno == errno.ENOENT)


def write_text(path: str, text: str) -> None:
    """Write a small file (a pointer, a record) whole: readers see the old text or the new, never a part.

    A Cloud Storage object appears only when its upload finishes; a local file is written
    beside its name and renamed over it (an overlapping attempt that read a half-written
    ``_LATEST`` once failed with "holds ''").
    """
    if "://" in path:
        with FileSystems.create(path) as f:
            f.write(text.encode("utf-8"))
        return
    ensure_dir(path.rsplit("/", 1)[0])
    partial = f"{path}.{uuid.uuid4().hex}.partial"
    with FileSystems.create(partial) as f:
        f.write(text.encode("utf-8"))
    FileSystems.rename([partial], [path])


def read_text(path: str) -> str:
    with FileSystems.open(path) as f:
        return f.read().decode("utf-8")


def read_text_if_exists(path: str) -> str | None:
    """The text of ``path``, or None when it is proven absent.

    Absent means: opening it said "not found" *and* its folder can be listed (a missing
    bucket also answers 404). Any other failure raises.

    Raises:
      LakeReadError: the file or its folder could not be read.
    """
    try:
        return read_text(path)
    except Exception as exc:  # narrowed below: only a confirmed absence is an answer
        if not _is_not_found(exc) and not (isinstance(exc, BeamIOError) and _all_not_found(exc)):
            raise _unreadable("read", path, exc) from exc
    folder = path.rsplit("/", 1)[0]
    files_in(folder, "*")  # raises on a missing bucket or a denied listing
    return None


def _all_not_found(exc: BeamIOError) -> bool:
    details = getattr(exc, "exception_details", None) or {}
    return bool(details) and all(_is_not_found(e) for e in details.values())


def write_jsonl(path: str, records: Iterable[Any]) -> int:
    """Write one JSON value per line; strings are written as they are (already JSON)."""
    n = 0
    with FileSystems.create(path) as f:
        for rec in records:
            line = rec if isinstance(rec, str) else json.dumps(rec, separators=(",", ":"), default=str)
            f.write(line.encode("utf-8") + b"\n")
            n += 1
    return n


def iter_lines(path: str) -> Iterator[str]:
    """Non-blank lines of a text file this project wrote, newline stripped."""
    for raw in iter_raw_lines(path):
        yield raw.decode("utf-8", errors="replace")


def iter_raw_lines(path: str) -> Iterator[bytes]:
    """Non-blank lines of a file as bytes, newline stripped: for files strangers wrote,
    whose bytes are judged by the event contract (strict UTF-8), not repaired here."""
    with FileSystems.open(path) as f:
        for raw in f:
            line = raw.rstrip(b"\r\n")
            if line.strip():
                yield line


def count_lines(path: str) -> int:
    """Number of non-blank lines of a text file (records of a JSONL file)."""
    return sum(1 for _ in iter_raw_lines(path))


def ensure_dir(path: str) -> None:
    # Object stores have no directories; a local rename needs its target folder.
    if "://" in path:
        return
    with contextlib.suppress(OSError, BeamIOError):  # already exists
        FileSystems.mkdirs(path)


def delete_quietly(paths: list[str]) -> None:
    """Delete ``paths``; one already gone is fine (a retried or overlapping attempt deleted it).

    Raises:
      LakeReadError: a delete failed for another reason.
    """
    if not paths:
        return
    try:
        FileSystems.delete(list(paths))
    except BeamIOError as exc:
        failed = {p: e for p, e in (exc.exception_details or {}).items() if not _is_not_found(e)}
        if failed:
            raise _unreadable("delete", ", ".join(failed), exc) from exc


def copy_into_place(sources: list[str], destinations: list[str]) -> None:
    """Give each destination its source's bytes, replacing an existing file whole; sources stay.

    Retry-safe: a second or overlapping attempt copies the same bytes again (the sources
    are kept until the caller's run deletes its temp folder). Readers never see half a
    file: a Cloud Storage object is replaced atomically by the copy; a local file is
    copied beside its destination under a name readers do not match and renamed over it.
    """
    if len(sources) != len(destinations):
        raise ValueError("copy_into_place needs one destination per source")
    for source, destination in zip(sources, destinations, strict=True):
        try:
            if "://" in destination:
                FileSystems.copy([source], [destination])
                continue
            ensure_dir(destination.rsplit("/", 1)[0])
            partial = f"{destination}.{uuid.uuid4().hex}.partial"
            FileSystems.copy([source], [partial])
            FileSystems.rename([partial], [destination])
        except BeamIOError as exc:
            raise _unreadable("copy", f"{source} to {destination}", exc) from exc


@dataclass(frozen=True)
class WindowFile:
    path: str
    prefix: str
    start: datetime
    end: datetime


def window_files(partition: str, prefix: str) -> list[WindowFile]:
    """The window files of ``prefix`` in a partition, with the window each covers."""
    out = []
    for path in files_in(partition, f"{prefix}_*.jsonl"):
        m = _WINDOW_FILE.match(path.rsplit("/", 1)[-1])
        if m and m["prefix"] == prefix:
            out.append(WindowFile(path, prefix, parse_compact_ts(m["start"]), parse_compact_ts(m["end"])))
    return out


def files_inside(files: list[WindowFile], start: datetime, end: datetime) -> list[WindowFile]:
    """The window files whose window lies inside ``[start, end)``: what a re-run of it replaces."""
    return [wf for wf in files if start <= wf.start and wf.end <= end]


def replace_window_files(
    partition: str, prefix: str, start: datetime, end: datetime, new_files: list[str]
) -> list[str]:
    """Make ``new_files`` the partition's only files for ``[start, end)``; return the final paths.

    Existing files of ``prefix`` whose window lies inside ``[start, end)`` are replaced
    (a re-run replaces its own output); files of other windows stay. Retry-safe: the new
    files are copied into place and stay where they are (the run deletes its temp folder
    last), and the old files the window no longer needs are deleted after, so a second
    or overlapping attempt of the same swap gives the same files and succeeds.

    Raises:
      ValueError: an existing file's window partly overlaps ``[start, end)``.
    """
    existing = window_files(partition, prefix)
    for wf in existing:
        overlaps = wf.start < end and start < wf.end
        inside = start <= wf.start and wf.end <= end
        if overlaps and not inside:
            raise ValueError(
                f"{wf.path} covers [{wf.start.isoformat()}, {wf.end.isoformat()}), which partly overlaps "
                f"[{start.isoformat()}, {end.isoformat()}): re-extract with the same window boundaries "
                "or a window that covers the whole file"
            )
    final = [join(partition, window_file_name(prefix, start, end, i)) for i in range(len(new_files))]
    copy_into_place(list(new_files), final)
    delete_quietly([wf.path for wf in files_inside(existing, start, end) if wf.path not in final])
    return final


def delete_tree(path: str) -> None:
    """Delete every file under ``path`` (the run's ``_tmp`` folder); files already gone are fine."""
    delete_quietly(list_files(join(literal(path), "**")))
    if "://" not in path:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------- completion records


def extract_record_path(lake_root: str, table: str, start: datetime, end: datetime) -> str:
    """Where the completion record of the extract of ``[start, end)`` (inside one hour) lives."""
    return join(lake_root, EXTRACTS, table, partition_folder(start), f"{compact_ts(start)}_{compact_ts(end)}.json")


def write_extract_record(lake_root: str, table: str, start: datetime, end: datetime, **counts: int) -> str:
    """Record that ``[start, end)`` of ``table`` was extracted (with its file counts).

    Same path and bytes on a retry or a re-run of the window, so a re-run leaves the lake
    byte for byte as it was (tests/reliability/test_idempotency.py).
    """
    path = extract_record_path(lake_root, table, start, end)
    record = {"window_start": compact_ts(start), "window_end": compact_ts(end), **counts}
    write_text(path, json.dumps(record, sort_keys=True) + "\n")
    return path


_RECORD_FILE = re.compile(r"^(?P<start>\d{8}T\d{6}Z)_(?P<end>\d{8}T\d{6}Z)\.json$")


def extract_gaps(lake_root: str, table: str, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The parts of ``[start, end)`` no completion record of ``table`` covers (``[]``: all extracted).

    Raises:
      LakeReadError: a record folder could not be listed.
    """
    gaps = []
    for hour_start, hour_end in hour_pieces(start, end):
        folder = join(lake_root, EXTRACTS, table, partition_folder(hour_start))
        covered = []
        for path in files_in(folder, "*.json"):
            m = _RECORD_FILE.match(path.rsplit("/", 1)[-1])
            if m:
                covered.append((parse_compact_ts(m["start"]), parse_compact_ts(m["end"])))
        cursor = hour_start
        for piece_start, piece_end in sorted(covered):
            if piece_start > cursor:
                gaps.append((cursor, min(piece_start, hour_end)))
            cursor = max(cursor, piece_end)
            if cursor >= hour_end:
                break
        if cursor < hour_end:
            gaps.append((cursor, hour_end))
    return [(s, e) for s, e in gaps if s < e]


def describe_gaps(gaps: list[tuple[datetime, datetime]], most: int = 3) -> str:
    """``2026-11-22T10:10:00Z..10:20:00Z, ... (+N more)`` for an error line."""
    shown = [f"{s.strftime('%Y-%m-%dT%H:%M:%SZ')}..{e.strftime('%H:%M:%SZ')}" for s, e in gaps[:most]]
    more = f" (+{len(gaps) - most} more)" if len(gaps) > most else ""
    return ", ".join(shown) + more


# ----------------------------------------------------------------------------- snapshots


def write_latest_pointer(lake_root: str, table: str, snapshot_folder: str) -> str:
    """Point ``raw/<table>/_LATEST`` at ``snapshot_folder`` (e.g. ``snapshot=20261122T100000Z``)."""
    if not snapshot_folder.startswith(SNAPSHOT_PREFIX):
        raise ValueError(f"snapshot folder must look like snapshot=YYYYMMDDTHHMMSSZ, got {snapshot_folder!r}")
    path = join(lake_root, RAW, table, LATEST_POINTER)
    write_text(path, snapshot_folder + "\n")
    return path


def latest_snapshot_dir(lake_root: str, table: str) -> str | None:
    """Folder of the newest complete snapshot of ``table``, or None when there is none yet.

    Raises:
      LakeReadError: the pointer could not be read (a denied read is not "no snapshot").
    """
    pointer = join(lake_root, RAW, table, LATEST_POINTER)
    text = read_text_if_exists(pointer)
    if text is None:
        return None
    folder = text.strip()
    if not folder.startswith(SNAPSHOT_PREFIX) or "/" in folder:
        raise ValueError(f"{pointer} holds {folder!r}; expected snapshot=YYYYMMDDTHHMMSSZ")
    return join(lake_root, RAW, table, folder)


def read_latest_snapshot_rows(lake_root: str, table: str) -> list[dict[str, Any]] | None:
    """All rows of the newest snapshot of ``table``; None when no snapshot exists yet.

    Plain Python, no pipeline: the streaming job calls it to refresh its side inputs
    and the hourly job through :class:`beam_pipelines.transforms.lake_io.ReadDimension`.
    None and ``[]`` differ: the first is "never extracted", the second a snapshot of an
    empty table (which ``extract_dims`` writes only when the table had no rows before).

    Raises:
      LakeReadError: the pointer or a part file could not be read.
    """
    folder = latest_snapshot_dir(lake_root, table)
    if folder is None:
        return None
    rows = []
    for path in files_in(folder, "part-*.jsonl"):
        rows.extend(json.loads(line) for line in iter_lines(path))
    return rows
