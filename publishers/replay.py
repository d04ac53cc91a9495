"""Replay a real clickstream file (CSV or JSONL) as contract events, paced and optionally re-timed.

Columns are renamed with ``--mapping source=target`` and event names translated with
``--value-map source=target`` (an empty target drops those rows). Rows are published
as they are after mapping: a row that breaks the contract (say, an empty price) is
published anyway and counted as invalid in the manifest, as the pipelines will
dead-letter it.

Ids: a mapped ``event_id`` column is used as is; otherwise a stable UUID is derived
from the file name and row number (re-running a replay re-sends the same ids). Order
and return rows without an ``order_id`` get one derived from the session, and their
event ids follow the contract (``events.order_line_event_id``), one line per row.

``--retime`` moves the events to now (keeping every gap between them) and makes the
run a new set of events: each run has a run id (``--run-id``, default random, printed
in the summary as ``run_id``) appended to every event, session and order id
(``<id>-<run id>``), so a second retimed run of the same file adds new sessions
instead of being hidden as duplicates of the first.

Columns the event contract has no field for are listed in one warning line on stderr.
Product and user columns (``category_code``, ``brand``, ``price``, ``user_id``) reach
the product and user dimensions with ``--database-url``: before publishing, the file is
imported as a clickstream (:mod:`publishers.import_files`, through ``--source-mapping``,
whose ``[users]`` / ``[products]`` defaults complete the rows) into the SQL source that
``extract_dims`` reads, so replayed events are enriched without a catalog.

``--lake-root`` writes the events into the lake instead of publishing them, one file
per hour in the layout the hourly job reads for a backfill
(``raw/events/dt=YYYY-MM-DD/hour=HH/replay_<run id>.jsonl``, the Pub/Sub wire format);
a row whose time cannot be read goes into the first event's hour, where the hourly job
dead-letters it.

Naive times (``2010-12-01 08:26:00``) are read in ``--timezone`` (else the
``--source-mapping``'s ``timezone``; without either they are invalid). The file is read
strictly (:mod:`publishers.source_files`): an unreadable row is not sent. When rows are
invalid (unreadable, or events the pipelines would dead-letter) one stderr line counts
them by cause; above ``--max-invalid-share`` (default 0.1) nothing is sent and the
command exits 2. Publishing to Pub/Sub, a warning counts the events that will reach the
streaming job after their engagement window closed (``events.ENGAGEMENT_*``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from beam_pipelines import cli, events
from beam_pipelines.events import format_ts
from publishers import source_files
from publishers.cli_types import fraction
from publishers.import_files import run_import
from publishers.manifest import Manifest
from publishers.publishing import JsonlSink, Message, Progress
from publishers.sinks import SinkOptions, open_sink

# The event's wire fields: the contract's columns but event_time, which validation derives from event_ts.
TARGET_FIELDS = tuple(name for name in events.EVENT_FIELDS if name != "event_time")
INT_FIELDS = frozenset({"quantity"})  # ids stay text: "0042" and "42" are two ids
# The public "eCommerce behavior data from multi category store" export, the usual real-world sample.
DEFAULT_MAPPING = {"event_time": "event_ts", "event_type": "event_name", "user_session": "session_id"}
DEFAULT_VALUE_MAP = {"cart": "add_to_cart", "purchase": "order", "remove_from_cart": ""}
REPLAY_NAMESPACE = uuid.UUID("7d7f3c5e-2f0b-4c3a-9a53-0a6b2f1f5e11")
# Above this share of invalid rows the file or its mapping is wrong, not a few rows of it:
# a replay with no --timezone of naive times once sent 10,000 of 10,000 rows invalid.
DEFAULT_MAX_INVALID_SHARE = 0.1
MAX_PRINTED_FAULTS = 5

DESCRIPTION = (
    __doc__.split("\n\n", 1)[1]
    + """
Example (a file with event_time,event_type,product_id,price,user_id,user_session):

    python -m publishers.simulator replay --project local-ecommerce --topic user-events \\
        --file events.csv --mapping event_time=event_ts,event_type=event_name,user_session=session_id \\
        --value-map cart=add_to_cart,purchase=order,remove_from_cart= --speed 60 --retime
"""
)


def parse_pairs(text: str | None, option: str, allow_empty_target: bool) -> dict[str, str]:
    """``a=b,c=d`` -> ``{"a": "b", "c": "d"}``; raise ValueError naming the option and the format."""
    out: dict[str, str] = {}
    if not text:
        return out
    for item in text.split(","):
        if not item.strip():
            continue
        source, sep, target = item.partition("=")
        source, target = source.strip(), target.strip()
        if not sep or not source or (not target and not allow_empty_target):
            raise ValueError(f"{option}: {item!r} is not source=target (format: a=b,c=d)")
        out[source] = target
    return out


def parse_mapping(text: str | None, columns: list[str]) -> dict[str, str]:
    """Column mapping: identity for contract names, the public export's names, then ``--mapping``."""
    mapping = {c: c for c in columns if c in TARGET_FIELDS}
    mapping.update({c: t for c, t in DEFAULT_MAPPING.items() if c in columns})
    explicit = parse_pairs(text, "--mapping", allow_empty_target=True)
    for source, target in explicit.items():
        if target and target not in TARGET_FIELDS:
            raise ValueError(f"--mapping: target {target!r} is not an event field; expected one of {TARGET_FIELDS}")
        if source not in columns:
            raise ValueError(f"--mapping: column {source!r} is not in the file (columns: {', '.join(columns)})")
    mapping.update(explicit)
    mapping = {s: t for s, t in mapping.items() if t}
    targets = list(mapping.values())
    dupes = {t for t in targets if targets.count(t) > 1}
    if dupes:
        raise ValueError(f"--mapping: several columns map to {sorted(dupes)}; map each event field once")
    for required in ("event_name", "event_ts"):
        if required not in targets:
            raise ValueError(f"no column maps to {required}: add it to --mapping (e.g. event_type=event_name)")
    return mapping


def read_rows(path: Path, fmt: str | None = None) -> tuple[list[str], source_files.Rows]:
    """Columns and numbered rows (or faults) of a CSV, JSONL or Parquet file (:mod:`publishers.source_files`)."""
    if not Path(path).exists():
        raise ValueError(f"--file {path} does not exist")
    if fmt is None and Path(path).suffix.lower() not in (".csv", ".tsv", ".parquet", ".pq"):
        fmt = "jsonl"  # replay has always read any other extension as JSONL
    return source_files.read(Path(path), fmt)


def replay_zone(args: argparse.Namespace) -> tzinfo | None:
    """The zone of naive times: ``--timezone``, else the ``--source-mapping``'s, else None (naive is invalid)."""
    from beam_pipelines.io import source_mapping

    if args.timezone:
        return source_mapping.parse_timezone(args.timezone, "--timezone")
    if args.source_mapping is not None:
        return source_mapping.load(args.source_mapping).timezone
    return None


def localized(value: Any, zone: tzinfo | None) -> Any:
    """A naive ISO-8601 time read in ``zone``, as canonical UTC text; anything else unchanged.

    A time that does not exist or occurs twice around a daylight-saving change is read
    as ``zoneinfo`` does (``fold=0``: the first occurrence), as ``import_files`` reads it.
    """
    if zone is None or not isinstance(value, str):
        return value
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        return value
    return value if dt.tzinfo is not None else format_ts(dt.replace(tzinfo=zone))


def late_for_engagement(event_time: datetime, published: datetime) -> bool:
    """Whether the streaming job's engagement window of ``event_time`` has closed at ``published``.

    Its watermark follows publish time; a window accepts events until its end plus
    the allowed lateness (the job's defaults, ``events.ENGAGEMENT_*``).
    """
    size = events.ENGAGEMENT_WINDOW_SECONDS
    window_end = (math.floor(event_time.timestamp() / size) + 1) * size
    return published.timestamp() > window_end + events.ENGAGEMENT_ALLOWED_LATENESS_SECONDS


def _coerce(field: str, value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        if value == "":
            return None
        if field in INT_FIELDS and value.isdigit():
            return int(value)
        if field in INT_FIELDS:
            try:
                as_float = float(value)
            except ValueError:
                return value
            return int(as_float) if as_float.is_integer() else value
    return value


def _safe_ts(value: Any) -> datetime | None:
    try:
        return events.parse_ts(value)
    except (ValueError, TypeError):
        return None


class Replayer:
    """Turns file rows into (record, original timestamp) pairs under a mapping."""

    def __init__(
        self,
        file_name: str,
        mapping: dict[str, str],
        value_map: dict[str, str],
        run_id: str | None = None,
        zone: tzinfo | None = None,
    ):
        self.file_name = file_name
        self.run_id = run_id
        self.mapping = mapping
        self.value_map = value_map
        self.zone = zone
        self._lines: dict[str, int] = {}
        self.skipped = 0

    @property
    def run_key(self) -> str:
        return f"{self.file_name}:{self.run_id}" if self.run_id else self.file_name

    def record(self, row_number: int, row: dict[str, Any]) -> dict[str, Any] | None:
        rec: dict[str, Any] = {}
        for source, target in self.mapping.items():
            rec[target] = _coerce(target, row.get(source))
        rec["event_ts"] = localized(rec.get("event_ts"), self.zone)
        if self.run_id:
            for key in ("event_id", "session_id", "order_id"):
                if rec.get(key) not in (None, ""):
                    rec[key] = f"{rec[key]}-{self.run_id}"
        name = rec.get("event_name")
        if isinstance(name, str) and name in self.value_map:
            if not self.value_map[name]:
                self.skipped += 1
                return None
            rec["event_name"] = self.value_map[name]
        if rec.get("event_name") in events.ORDER_EVENTS:
            if not rec.get("order_id"):
                basis = rec.get("session_id") or f"{rec.get('user_id')}:{rec.get('event_ts')}"
                rec["order_id"] = "r-" + uuid.uuid5(REPLAY_NAMESPACE, f"{self.run_key}:{basis}").hex[:16]
            if not rec.get("event_id"):
                key = f"{rec['order_id']}:{rec['event_name']}"
                line = self._lines[key] = self._lines.get(key, 0) + 1
                rec["event_id"] = events.order_line_event_id(rec["order_id"], line, rec["event_name"])
        if not rec.get("event_id"):
            rec["event_id"] = str(uuid.uuid5(REPLAY_NAMESPACE, f"{self.run_key}:{row_number}"))
        return {k: rec.get(k) for k in TARGET_FIELDS if k in rec}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file", required=True, type=Path, help="CSV (with a header row), JSONL or Parquet file to replay")
    p.add_argument("--format", choices=source_files.FORMATS, help="file format (default: from the file extension)")
    p.add_argument(
        "--timezone",
        metavar="ZONE",
        help="IANA time zone of naive event times in the file, e.g. Europe/Berlin (default: the "
        "--source-mapping's timezone; without either a time with no UTC offset is invalid)",
    )
    p.add_argument(
        "--max-invalid-share",
        type=fraction,
        default=DEFAULT_MAX_INVALID_SHARE,
        help="largest share of rows that may be invalid (unreadable, or events the pipelines would "
        "dead-letter); above it nothing is sent and the command exits 2 (default %(default)s)",
    )
    p.add_argument(
        "--mapping",
        help="column renames source=target,...; targets: "
        + ", ".join(TARGET_FIELDS)
        + ". Columns already named like a target map to it; event_time, event_type and "
        "user_session map to event_ts, event_name and session_id by default",
    )
    p.add_argument(
        "--value-map",
        default=",".join(f"{k}={v}" for k, v in DEFAULT_VALUE_MAP.items()),
        help="event-name translations source=target,...; an empty target drops the row (default: %(default)s)",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="replay speed vs the file's own timing: 1 = real time, 60 = a minute per second, "
        "0 = as fast as possible (default 1)",
    )
    p.add_argument(
        "--retime",
        action="store_true",
        help="shift event times to now (keeping gaps, divided by --speed); with --speed 0 the last "
        "event is placed at now",
    )
    p.add_argument(
        "--run-id",
        help="with --retime: the suffix that makes this run's event, session and order ids new "
        "(default: random; printed in the summary)",
    )
    p.add_argument("--limit", type=int, help="replay at most this many rows")
    p.add_argument(
        "--lake-root",
        metavar="ROOT",
        help="write the events into ROOT/raw/events/dt=YYYY-MM-DD/hour=HH/ (a local folder or gs://...) for an "
        "hourly backfill, instead of publishing",
    )
    p.add_argument(
        "--database-url",
        help="import the file's products and users (as publishers.import_files --clickstream does) into this "
        "SQL source before replaying, so extract_dims gives the events their names and categories",
    )
    p.add_argument(
        "--source-mapping",
        type=Path,
        metavar="FILE",
        help="mapping for --database-url: [clickstream] column names and [products]/[users] defaults",
    )


def build_messages(args: argparse.Namespace, now: datetime | None = None):
    """Messages, per-message send offsets (seconds) and the manifest for a replay."""
    columns, rows = read_rows(args.file, args.format)
    if not columns:
        raise ValueError(f"--file {args.file} has no rows")
    mapping = parse_mapping(args.mapping, columns)
    value_map = parse_pairs(args.value_map, "--value-map", allow_empty_target=True)
    if args.speed < 0:
        raise ValueError("--speed must be >= 0 (0 = as fast as possible)")
    run_id = (args.run_id or uuid.uuid4().hex[:12]) if args.retime else None
    if run_id is not None:
        events.id_text(run_id, "--run-id")
    zone = replay_zone(args)
    replayer = Replayer(Path(args.file).name, mapping, value_map, run_id, zone)
    records: list[tuple[dict[str, Any], datetime | None]] = []
    faults: list[source_files.Fault] = []
    for i, row in rows:
        if args.limit is not None and len(records) >= args.limit:
            break
        if isinstance(row, source_files.Fault):
            faults.append(row)  # unreadable: its fields cannot be told apart, so it is not sent
            continue
        rec = replayer.record(i, row)
        if rec is not None:
            records.append((rec, _safe_ts(rec.get("event_ts"))))
    times = [t for _, t in records if t is not None]
    first, last = (min(times), max(times)) if times else (None, None)
    now = now or datetime.now(UTC)
    speed = args.speed

    def offset(t: datetime | None) -> float:
        if t is None or first is None or speed == 0:
            return 0.0
        return (t - first).total_seconds() / speed

    manifest = Manifest(seed=0, mode="replay")
    messages, schedule = [], []
    late = 0
    for rec, original in records:
        t = original
        if args.retime and t is not None:
            new = now - (last - t) if speed == 0 else now + timedelta(seconds=offset(t))
            rec["event_ts"] = format_ts(new)
            t = new
        data = json.dumps(rec, separators=(",", ":"), default=str).encode()
        try:
            event = events.parse_payload(data, now=max(now, t or now) + timedelta(seconds=1))
        except events.InvalidEvent as exc:
            manifest.add_malformed(f"{exc.stage}: {_reason_group(exc.reason)}")
        else:
            manifest.add_valid(event["event_id"], event["event_name"], event["event_ts"])
            publish_at = now + timedelta(seconds=offset(original))
            late += late_for_engagement(datetime.fromtimestamp(event["event_time"], UTC), publish_at)
        attr_ts = format_ts(t) if t is not None else format_ts(now)
        messages.append(Message(data, {"event_id": str(rec.get("event_id")), "event_ts": attr_ts}))
        schedule.append(offset(original))  # pace by the file's own timing, whatever the published times
    manifest.extra = {
        "rows_skipped_by_value_map": replayer.skipped,
        "mapping": mapping,
        "file": str(args.file),
        "run_id": run_id,
        "timezone": getattr(zone, "key", None) or (str(zone) if zone else None),
        "unmapped_columns": [c for c in columns if c not in mapping],
        "rows_unreadable": len(faults),
        "unreadable_sample": [f"row {f.row}, {f.column}: {f.reason}" for f in faults[:MAX_PRINTED_FAULTS]],
        "late_for_engagement": late,
    }
    return messages, schedule, manifest


def _reason_group(reason: str) -> str:
    """An invalid event's reason without its values, so the manifest groups rows by cause."""
    if "has no UTC offset" in reason:
        return "event_ts has no UTC offset"
    return reason.split(":")[0].split(" (")[0][:60]


def check_invalid_share(manifest, max_share: float, zone: tzinfo | None) -> tuple[list[str], bool]:
    """The stderr summary of invalid rows, and whether their share is within ``max_share``."""
    unreadable = manifest.extra["rows_unreadable"]
    invalid = manifest.malformed_sent + unreadable
    total = manifest.unique_valid_events + invalid
    if not invalid:
        return [], True
    share = invalid / total
    causes = [f"{n:,} {reason}" for reason, n in sorted(manifest.malformed_by_reason.items(), key=lambda x: -x[1])]
    if unreadable:
        causes.append(f"{unreadable:,} unreadable (e.g. {manifest.extra['unreadable_sample'][0]})")
    lines = [f"{invalid:,} of {total:,} rows are invalid ({share:.1%}): {'; '.join(causes)}"]
    if zone is None and any("no UTC offset" in r for r in manifest.malformed_by_reason):
        lines.append("hint: the file's times have no UTC offset: pass --timezone (e.g. UTC or Europe/Berlin)")
    return lines, share <= max_share


def write_lake(lake_root: str, messages, run_id: str) -> dict[str, int]:
    """Messages as one wire-format file per event hour under ``raw/events``; returns lines per partition."""
    from beam_pipelines import lake

    by_hour: dict[datetime, list[str]] = {}
    fallback = None
    for message in messages:
        t = _safe_ts(message.attributes.get("event_ts"))
        fallback = fallback or t
        by_hour.setdefault(lake.floor_hour(t) if t else None, []).append(message.data.decode("utf-8"))
    unplaced = by_hour.pop(None, [])
    if unplaced:  # no readable time: the first event's hour, where the hourly job dead-letters them
        by_hour.setdefault(lake.floor_hour(fallback or datetime.now(UTC)), []).extend(unplaced)
    written = {}
    for hour, lines in sorted(by_hour.items()):
        path = lake.join(lake.partition_path(lake_root, lake.EVENTS, hour), f"replay_{run_id}.jsonl")
        written[lake.partition_folder(hour)] = lake.write_jsonl(path, lines)
    return written


def import_dimensions(args: argparse.Namespace) -> dict[str, Any]:
    """Products and users of the replayed file into ``--database-url`` (publishers.import_files)."""
    from beam_pipelines.io import source_mapping, sql

    mapping = source_mapping.load(args.source_mapping)
    fmt = args.format
    with sql.connect(args.database_url) as db:
        return run_import(db, mapping, [("clickstream", Path(args.file))], fmt)


def source_mapping_columns(path: Path | None) -> list[str]:
    """The file columns a clickstream import reads under the mapping in ``path``."""
    from beam_pipelines.io import source_mapping

    return list(source_mapping.load(path)["clickstream"].columns.values())


def main_replay(args: argparse.Namespace, sink_opts: SinkOptions) -> int:
    now = datetime.now(UTC)
    messages, offsets, manifest = build_messages(args, now)
    invalid, within = check_invalid_share(manifest, args.max_invalid_share, replay_zone(args))
    if not within:
        for line in invalid:
            print(f"error: {line}" if not line.startswith("hint:") else line, file=sys.stderr)
        print(
            f"error: more than --max-invalid-share {args.max_invalid_share:g} of the rows are invalid; nothing was "
            "sent (fix the file or the --mapping / --timezone, or raise --max-invalid-share)",
            file=sys.stderr,
        )
        return cli.EXIT_USAGE
    for line in invalid:  # within the share: sent, and dead-lettered by the pipelines
        print(f"warning: {line}" if not line.startswith("hint:") else line, file=sys.stderr)
    late = manifest.extra["late_for_engagement"]
    if late and not args.lake_root and not sink_opts.output_jsonl:
        print(
            f"warning: {late:,} of {manifest.unique_valid_events:,} events will be published after their "
            f"engagement window closed ({events.ENGAGEMENT_WINDOW_SECONDS} s windows, "
            f"{events.ENGAGEMENT_ALLOWED_LATENESS_SECONDS // 60} min allowed lateness, the streaming job's "
            "defaults): engagement_minutely leaves them out, user_behavior still gets them; "
            + (
                "--retime --speed 0 puts the file's whole span before now: use a --speed that paces it in real time"
                if args.retime
                else "use --retime to move them to now"
            ),
            file=sys.stderr,
        )
    imported = import_dimensions(args) if args.database_url else None
    unmapped = manifest.extra["unmapped_columns"]
    if imported:
        manifest.extra["dimensions_imported"] = imported["loaded"]
        used = set(source_mapping_columns(args.source_mapping))
        unmapped = [c for c in unmapped if c not in used]
    if unmapped:
        hint = "" if imported else " (product and user columns reach the dimensions with --database-url)"
        print(f"warning: column(s) not replayed: {', '.join(unmapped)}{hint}", file=sys.stderr)
    if args.lake_root:
        run_id = manifest.extra["run_id"] or uuid.uuid4().hex[:12]
        manifest.extra["run_id"] = run_id
        manifest.extra["lake_partitions"] = write_lake(args.lake_root, messages, run_id)
        manifest.target, manifest.planned_total = f"lake {args.lake_root}", len(messages)
        manifest.published_total = len(messages)
        manifest.started_at = manifest.finished_at = format_ts(now)
        if args.manifest:
            manifest.write(args.manifest)
        print(json.dumps({k: v for k, v in manifest.to_json().items() if k != "valid_event_ids"}))
        return 0
    sink, target = open_sink(sink_opts)
    manifest.target, manifest.planned_total = target, len(messages)
    manifest.started_at = format_ts(now)
    if sink_opts.progress:
        print(f"replaying {len(messages):,} rows of {args.file} to {target}", file=sys.stderr)
    progress = Progress(len(messages), label="replayed", enabled=sink_opts.progress)
    t0 = time.monotonic()
    # With --retime the schedule is relative to `now`; wall-clock pacing starts now too.
    schedule = (lambda i: offsets[i]) if args.speed else None
    try:
        stats = sink.send(messages, schedule=schedule, progress=progress, start=t0)
    finally:
        if isinstance(sink, JsonlSink):
            sink.close()
    manifest.published_total, manifest.publish_errors = stats.sent, stats.errors
    manifest.seconds = round(time.monotonic() - t0, 3)
    manifest.publish_rate = round(stats.sent / manifest.seconds, 1) if manifest.seconds else 0.0
    manifest.finished_at = format_ts(datetime.now(UTC))
    progress.report(stats.sent, stats.errors, final=True)
    for sample in stats.error_samples:
        print(f"publish error: {sample}", file=sys.stderr)
    if args.manifest:
        manifest.write(args.manifest)
    print(json.dumps({k: v for k, v in manifest.to_json().items() if k != "valid_event_ids"}))
    return 1 if stats.errors else 0
