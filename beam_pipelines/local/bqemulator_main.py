"""bqemulator's own command line, with its automatic time-travel copies turned off.

``python -m beam_pipelines.local.bqemulator_main start ...`` takes exactly the options of
``bqemulator start``; the local stack runs its persistent BigQuery emulator this way.

Why: to serve ``FOR SYSTEM_TIME AS OF``, bqemulator 1.4 copies the whole table into a
snapshot table after every write (each ``insertAll`` request, load job, MERGE or DML:
``SnapshotManager.record_change`` -> ``capture``) and keeps the copies for
``BQEMU_TIME_TRAVEL_RETENTION_DAYS`` (default 7; 0 still copies and purges a minute
later). A write therefore costs a copy of the table, which on disk is a write of it.
Measured with ``user_behavior`` at 200,000 rows (benchmarks/bq_persistence.py,
docs/benchmarks.md): one streaming-insert request of 100 rows took 1,487 ms on disk and
335 ms in memory with the copies, 75 ms and 15 ms without; the DuckDB file was 188 MiB
instead of 14, the process 1.5 GB instead of 0.3. The streaming job sends one such
request per bundle, so with the copies it fell behind as the table grew.

Nothing in this project reads ``FOR SYSTEM_TIME AS OF`` (BigQuery's own time travel costs
no copy). User snapshots (``CREATE SNAPSHOT TABLE``) and the change events that
``record_change`` publishes are kept: only the automatic copy is skipped.

This replaces a method of bqemulator's private code, pinned in requirements.lock;
``tests/foundation/test_local_stack.py`` fails loudly when the method or its caller
changes shape.
"""

from __future__ import annotations

import sys
from typing import Any


def skip_automatic_snapshots() -> None:
    """Make ``SnapshotManager.capture`` return None for ``kind="AUTO"`` (the copy after each write)."""
    from bqemulator.versioning.snapshots import SnapshotManager

    capture = SnapshotManager.capture
    if getattr(capture, "skips_automatic", False):
        return

    def capture_user_snapshots_only(
        self: SnapshotManager, project_id: str, dataset_id: str, table_id: str, *, kind: str = "AUTO"
    ) -> Any:
        if kind == "AUTO":
            return None
        return capture(self, project_id, dataset_id, table_id, kind=kind)

    capture_user_snapshots_only.skips_automatic = True  # type: ignore[attr-defined]
    SnapshotManager.capture = capture_user_snapshots_only  # type: ignore[method-assign]


def main() -> int:
    skip_automatic_snapshots()
    from bqemulator.cli import main as bqemulator_main

    bqemulator_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
