"""Which tables a run touches: ``project:dataset.table`` references and each final table's staging table.

:class:`TableRef` parses the jobs' ``--*_table`` options (``project:dataset.table``) and
names a run's staging table (``<table>_stg_<run_id>``); :class:`MergeTarget` pairs a
final table with the staging table the run loads (:mod:`.load`) and merges from
(:mod:`.merge`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TABLE_RE = re.compile(r"^(?P<project>[a-z][\w\-.]*):(?P<dataset>\w+)\.(?P<table>[\w$]+)$")


@dataclass(frozen=True)
class TableRef:
    """``project:dataset.table`` split into parts."""

    project: str
    dataset: str
    table: str

    @classmethod
    def parse(cls, spec: str, option: str = "table") -> TableRef:
        m = _TABLE_RE.match(spec or "")
        if not m:
            raise ValueError(
                f"--{option} must be project:dataset.table (e.g. my-project:ecommerce.users), got {spec!r}"
            )
        return cls(m["project"], m["dataset"], m["table"])

    @property
    def beam(self) -> str:
        return f"{self.project}:{self.dataset}.{self.table}"

    @property
    def sql(self) -> str:
        return f"`{self.project}.{self.dataset}.{self.table}`"

    @property
    def table_id(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"

    def staging(self, run_id: str) -> TableRef:
        suffix = re.sub(r"[^0-9a-zA-Z_]", "_", run_id).lower()
        return TableRef(self.project, self.dataset, f"{self.table}_stg_{suffix}")


@dataclass(frozen=True)
class MergeTarget:
    """One final table and its staging table. ``kind`` is a ``tables.json`` name."""

    kind: str
    final: TableRef
    staging: TableRef
