"""Lake layout: windows, partition paths, per-window replacement, snapshots and _LATEST."""

from datetime import UTC, datetime, timedelta

import pytest

from beam_pipelines import lake


def _dt(h, m=0, day=21):
    return datetime(2026, 11, day, h, m, tzinfo=UTC)


def test_parse_window_accepts_iso_utc_and_rejects_bad_bounds():
    assert lake.parse_window("2026-11-21T10:00:00Z", "2026-11-21T12:00:00+00:00") == (_dt(10), _dt(12))
    with pytest.raises(ValueError, match="after window_start"):
        lake.parse_window("2026-11-21T12:00:00Z", "2026-11-21T10:00:00Z")
    with pytest.raises(ValueError, match="ISO-8601"):
        lake.parse_window("yesterday", "2026-11-21T10:00:00Z")
    with pytest.raises(ValueError, match="whole hours"):
        lake.parse_window("2026-11-21T10:30:00Z", "2026-11-21T12:00:00Z", whole_hours=True)
    with pytest.raises(ValueError, match="whole seconds"):
        lake.parse_window("2026-11-21T23:07:00.000001Z", "2026-11-21T23:10:00Z")
    with pytest.raises(ValueError, match="whole seconds"):
        lake.parse_window("2026-11-21T23:07:00Z", "2026-11-21T23:10:00.5Z")


def test_hour_pieces_and_split_range_never_cross_an_hour():
    assert lake.hour_pieces(_dt(10, 50), _dt(12, 10)) == [
        (_dt(10, 50), _dt(11)),
        (_dt(11), _dt(12)),
        (_dt(12), _dt(12, 10)),
    ]
    assert lake.split_range(_dt(10, 40), _dt(11, 20), timedelta(minutes=15)) == [
        (_dt(10, 40), _dt(10, 55)),
        (_dt(10, 55), _dt(11)),
        (_dt(11), _dt(11, 15)),
        (_dt(11, 15), _dt(11, 20)),
    ]


def test_partition_path_works_for_local_and_gcs_roots():
    assert lake.partition_path("/data/lake/", "orders", _dt(9, 59)) == "/data/lake/raw/orders/dt=2026-11-21/hour=09"
    assert (
        lake.partition_path("gs://bucket/prefix", "orders", _dt(23), zone=lake.DEAD_LETTER)
        == "gs://bucket/prefix/dead_letter/orders/dt=2026-11-21/hour=23"
    )


def _tmp_file(tmp_path, name, lines):
    path = str(tmp_path / "_tmp" / name)
    lake.write_jsonl(path, lines)
    return path


def test_replace_window_files_replaces_only_its_own_window(tmp_path):
    part = lake.partition_path(str(tmp_path), "orders", _dt(10))
    first = [_tmp_file(tmp_path, "a.jsonl", ['{"n":1}']), _tmp_file(tmp_path, "b.jsonl", ['{"n":2}'])]
    lake.replace_window_files(part, "orders", _dt(10), _dt(10, 10), first)
    other = [_tmp_file(tmp_path, "c.jsonl", ['{"n":3}'])]
    lake.replace_window_files(part, "orders", _dt(10, 10), _dt(10, 20), other)
    # Re-run of the first window with one file: both old files go, the other window stays.
    rerun = [_tmp_file(tmp_path, "d.jsonl", ['{"n":4}'])]
    lake.replace_window_files(part, "orders", _dt(10), _dt(10, 10), rerun)
    files = lake.list_files(lake.join(part, "*.jsonl"))
    assert [f.rsplit("/", 1)[1] for f in files] == [
        "orders_20261121T100000Z_20261121T101000Z-00000.jsonl",
        "orders_20261121T101000Z_20261121T102000Z-00000.jsonl",
    ]
    assert [list(lake.iter_lines(f)) for f in files] == [['{"n":4}'], ['{"n":3}']]
    # A covering window replaces both; a partly overlapping one is refused.
    with pytest.raises(ValueError, match="partly overlaps"):
        lake.replace_window_files(part, "orders", _dt(10, 5), _dt(10, 15), [])
    lake.replace_window_files(part, "orders", _dt(10), _dt(11), [])
    assert lake.list_files(lake.join(part, "*.jsonl")) == []


def test_snapshots_are_read_through_the_latest_pointer(tmp_path):
    root = str(tmp_path)
    assert lake.read_latest_snapshot_rows(root, "products") is None  # never extracted
    old = lake.snapshot_dir(root, "products", _dt(9))
    new = lake.snapshot_dir(root, "products", _dt(10))
    lake.write_jsonl(lake.join(old, "part-00000-of-00001.jsonl"), [{"product_id": "1", "product_name": "old"}])
    lake.write_jsonl(lake.join(new, "part-00000-of-00002.jsonl"), [{"product_id": "1", "product_name": "new"}])
    lake.write_jsonl(lake.join(new, "part-00001-of-00002.jsonl"), [{"product_id": "2", "product_name": "two"}])
    lake.write_latest_pointer(root, "products", "snapshot=20261121T090000Z")
    assert lake.read_latest_snapshot_rows(root, "products") == [{"product_id": "1", "product_name": "old"}]
    lake.write_latest_pointer(root, "products", new.rsplit("/", 1)[1])
    assert lake.read_latest_snapshot_rows(root, "products") == [
        {"product_id": "1", "product_name": "new"},
        {"product_id": "2", "product_name": "two"},
    ]
    with pytest.raises(ValueError, match="snapshot="):
        lake.write_latest_pointer(root, "products", "../elsewhere")
