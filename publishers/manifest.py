"""The ground truth of one publisher run, written as JSON by ``--manifest``.

Both ``python -m publishers.simulator publish`` (generated sessions) and ``... replay``
(a real file) fill one :class:`Manifest`: what was planned and sent, how many valid
events of each name, which were duplicates, late or malformed (and why), and the valid
event ids (up to :data:`MAX_MANIFEST_IDS`, else ``null``). A test or a demo checks the
pipelines' output against it; it is replaced atomically, so readers never see half of one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from beam_pipelines import events

MAX_MANIFEST_IDS = 200_000


@dataclass
class Manifest:
    """Ground truth of one run (written as JSON by ``--manifest``)."""

    seed: int
    mode: str = "publish"
    target: str = ""
    published_total: int = 0
    planned_total: int = 0
    publish_errors: int = 0
    unique_valid_events: int = 0
    valid_by_event_name: dict[str, int] = field(default_factory=lambda: dict.fromkeys(events.EVENT_NAMES, 0))
    duplicates_sent: int = 0
    malformed_sent: int = 0
    malformed_by_reason: dict[str, int] = field(default_factory=dict)
    late_sent: int = 0
    late_minutes: float = 0.0
    min_event_ts: str | None = None
    max_event_ts: str | None = None
    valid_event_ids: list[str] | None = field(default_factory=list)
    orders_written: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    seconds: float = 0.0
    publish_rate: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def add_valid(self, event_id: str, event_name: str, event_ts: str) -> None:
        self.unique_valid_events += 1
        self.valid_by_event_name[event_name] = self.valid_by_event_name.get(event_name, 0) + 1
        if self.min_event_ts is None or event_ts < self.min_event_ts:
            self.min_event_ts = event_ts
        if self.max_event_ts is None or event_ts > self.max_event_ts:
            self.max_event_ts = event_ts
        if self.valid_event_ids is not None:
            if len(self.valid_event_ids) < MAX_MANIFEST_IDS:
                self.valid_event_ids.append(event_id)
            else:
                self.valid_event_ids = None  # too many to list

    def add_malformed(self, reason: str) -> None:
        self.malformed_sent += 1
        self.malformed_by_reason[reason] = self.malformed_by_reason.get(reason, 0) + 1

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "extra"}
        out.update(self.extra)
        return out

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        tmp.replace(path)  # readers never see a half-written manifest
