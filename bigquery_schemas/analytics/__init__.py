"""BigQuery SQL analytics on ``user_behavior``: one query per ``.sql`` file beside this module.

Every file opens with a comment block (first line: a one-line description; then the
question, parameters and definitions). Business questions read the view
``user_behavior_dedup`` (one row per event_id), created by :func:`create_views`; the
report's health queries read what the jobs wrote (``dead_letter``,
``engagement_minutely``, raw ``user_behavior``) and ``retention_cohorts`` reads
``user_profile`` (:func:`refresh_profile`). Table names in the files are
written ``{project}.{dataset}.<table>``; :func:`render` substitutes validated
identifiers there and nothing else. Values (dates, limits, the business time zone) are
always BigQuery named query parameters (``@start_date``, ``@end_date``, ``@limit``,
``@time_zone``), never text in the SQL.

Three kinds of file, told apart by their first statement:
  * ``query``: a ``select`` run by ``python -m bigquery_schemas.analytics run <name>``;
  * ``view``: ``create or replace view`` applied by ``create-views``;
  * ``table``: ``create or replace table ... as`` applied by ``refresh-profile``.

Run ``python -m bigquery_schemas.analytics --help`` for the command line.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.api_core.exceptions import NotFound
from google.cloud import bigquery

SQL_DIR = Path(__file__).resolve().parent

DEDUP_VIEW = "user_behavior_dedup"
USER_PROFILE = "user_profile"

KIND_QUERY = "query"
KIND_VIEW = "view"
KIND_TABLE = "table"

DEFAULT_LIMIT = 10

# BigQuery types of the parameters a file may use; anything else is a mistake in the file.
PARAMETER_TYPES = {"start_date": "DATE", "end_date": "DATE", "limit": "INT64", "time_zone": "STRING"}

# The business time zone: every date a query compares or returns is a date in it (a day
# runs from local midnight to local midnight, daylight saving included). UTC unless the
# command's --time-zone or this environment variable names another IANA zone.
DEFAULT_TIME_ZONE = "UTC"
TIME_ZONE_ENV = "ANALYTICS_TIME_ZONE"

# Project ids: 6-30 chars, lower-case letters, digits, hyphens, optionally "domain:" first.
# Dataset ids: letters, digits, underscores. Both are checked before substitution, so a
# name can never close the backtick quote and smuggle SQL in.
_PROJECT_RE = re.compile(r"^(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_DATASET_RE = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_PARAM_RE = re.compile(r"@([A-Za-z_][A-Za-z0-9_]*)")
_STRING_RE = re.compile(r"'(?:[^'\\]|\\.)*'")
_DECLARED_RE = re.compile(r"^\s*@([A-Za-z_][A-Za-z0-9_]*)\s+([A-Z0-9]+)\b")
_TABLE_RE = re.compile(r"`\{project\}\.\{dataset\}\.(\w+)`")


class MissingTableError(ValueError):
    """A statement's input table or view does not exist (yet), and a known command builds it.

    The command line prints it as one ``error:`` line with exit code 3 (the environment
    is not ready): a step the user skipped, not a BigQuery failure. The fix is this
    package's ``create-views`` (views), ``refresh-profile`` (user_profile) or
    ``python -m bigquery_schemas.tables`` (the tables the jobs write).
    """

    def __init__(self, query: str, table: str, fix: str) -> None:
        super().__init__(f"{query} reads {table}, which does not exist yet: run '{fix}' first")
        self.query, self.table, self.fix = query, table, fix


@dataclass(frozen=True)
class AnalyticsSql:
    """One ``.sql`` file of this package."""

    name: str
    path: Path
    kind: str
    description: str
    header: str
    body: str
    parameters: tuple[str, ...]
    declared_parameters: tuple[tuple[str, str], ...]
    inputs: tuple[str, ...]  # tables and views the statement reads (or writes), by name

    def render(self, project: str, dataset: str) -> str:
        """The statement to send, with ``{project}`` and ``{dataset}`` substituted.

        The header comment block is left out: it is documentation, and the emulator
        (bqemulator 1.4) counts ``@name`` inside comments as extra parameters and then
        fails ("Parameter argument/count mismatch"). Real BigQuery runs the whole file
        unchanged as well.
        """
        return render(self.body, project, dataset)


def _strip_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines())


def _parse(path: Path) -> AnalyticsSql:
    text = path.read_text()
    lines = text.splitlines()
    header_lines = []
    for line in lines:
        if not line.startswith("--"):
            break
        header_lines.append(line[2:].removeprefix(" "))
    if not header_lines or not header_lines[0].strip():
        raise ValueError(f"{path.name}: must open with a '-- <one-line description>' comment block")
    body = "\n".join(lines[len(header_lines) :]).strip()
    code = _strip_comments(body)
    first = " ".join(code.lower().split()[:4])
    if first.startswith("create or replace view"):
        kind = KIND_VIEW
    elif first.startswith("create or replace table"):
        kind = KIND_TABLE
    else:
        kind = KIND_QUERY
    order = list(PARAMETER_TYPES)
    found = set(_PARAM_RE.findall(_STRING_RE.sub("''", code)))
    used = tuple(sorted(found, key=lambda p: (order.index(p) if p in order else len(order), p)))
    declared = tuple((m.group(1), m.group(2)) for m in (_DECLARED_RE.match(h) for h in header_lines) if m is not None)
    return AnalyticsSql(
        name=path.stem,
        path=path,
        kind=kind,
        description=header_lines[0].strip(),
        header="\n".join(header_lines),
        body=body,
        parameters=used,
        declared_parameters=declared,
        inputs=tuple(sorted(set(_TABLE_RE.findall(code)))),
    )


@functools.cache
def catalog() -> dict[str, AnalyticsSql]:
    """Every ``.sql`` file of the package by name (file stem), in name order."""
    return {p.stem: _parse(p) for p in sorted(SQL_DIR.glob("*.sql"))}


def queries() -> list[AnalyticsSql]:
    """The ``select`` files, in name order: what ``run all`` runs."""
    return [s for s in catalog().values() if s.kind == KIND_QUERY]


def get(name: str) -> AnalyticsSql:
    """The file called ``name`` (stem, with or without ``.sql``)."""
    entries = catalog()
    key = name.removesuffix(".sql")
    if key not in entries:
        raise ValueError(f"unknown analytics SQL {name!r}; expected one of {', '.join(entries)}")
    return entries[key]


def render(sql: str, project: str, dataset: str) -> str:
    """Substitute the ``{project}`` and ``{dataset}`` names after validating them.

    Raises:
      ValueError: when the project or dataset is not a valid BigQuery identifier
        (e.g. ``my-analytics-prod`` and ``ecommerce``).
    """
    if not _PROJECT_RE.match(project or ""):
        raise ValueError(f"invalid project id {project!r}; expected e.g. my-analytics-prod")
    if not _DATASET_RE.match(dataset or ""):
        raise ValueError(f"invalid dataset id {dataset!r}; expected letters, digits and _, e.g. ecommerce")
    return sql.replace("{project}", project).replace("{dataset}", dataset)


def check_range(start_date: dt.date | None, end_date: dt.date | None) -> None:
    """A ValueError when the inclusive range ``[start_date, end_date]`` is reversed."""
    if start_date and end_date and start_date > end_date:
        raise ValueError(f"start date {start_date} is after end date {end_date}")


def check_time_zone(name: str) -> str:
    """``name`` when it is an IANA time zone BigQuery and Python both know (``Europe/Berlin``, ``UTC``).

    Raises:
      ValueError: naming the zone and an example.
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    text = (name or "").strip()
    if text.upper() == "UTC":
        return "UTC"
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"time zone {name!r:.60} is not an IANA time zone name (e.g. Europe/Berlin, America/Sao_Paulo, UTC)"
        ) from None
    return text


def query_parameters(
    entry: AnalyticsSql,
    start_date: dt.date | None = None,
    end_date: dt.date | None = None,
    limit: int | None = None,
    time_zone: str = DEFAULT_TIME_ZONE,
) -> list[bigquery.ScalarQueryParameter]:
    """The typed named parameters ``entry`` uses, and only those.

    Raises:
      ValueError: when a parameter the query needs is missing, the range is reversed or
        the time zone unknown.
    """
    values: dict[str, Any] = {
        "start_date": start_date,
        "end_date": end_date,
        "limit": limit,
        "time_zone": check_time_zone(time_zone),
    }
    if "limit" in entry.parameters and limit is None:
        values["limit"] = DEFAULT_LIMIT
    params = []
    for name in entry.parameters:
        if name not in PARAMETER_TYPES:
            raise ValueError(f"{entry.name}: unsupported parameter @{name}; known: {sorted(PARAMETER_TYPES)}")
        if values[name] is None:
            raise ValueError(f"{entry.name} needs @{name} (--{name.replace('_date', '')} on the command line)")
        params.append(bigquery.ScalarQueryParameter(name, PARAMETER_TYPES[name], values[name]))
    check_range(start_date, end_date)
    if values.get("limit") is not None and int(values["limit"]) < 1:
        raise ValueError(f"limit must be at least 1, got {values['limit']}")
    return params


def _execute(
    client: bigquery.Client, sql: str, params: Sequence[bigquery.ScalarQueryParameter] = ()
) -> bigquery.table.RowIterator:
    job = client.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=list(params)))
    return job.result()


def run_query(
    client: bigquery.Client,
    name: str,
    dataset: str,
    start_date: dt.date,
    end_date: dt.date,
    limit: int | None = None,
    project: str | None = None,
    time_zone: str = DEFAULT_TIME_ZONE,
) -> list[dict[str, Any]]:
    """Run the query file ``name`` and return its rows as dicts (column order kept).

    Args:
      client: BigQuery client (``bigquery_schemas.client.make_client``).
      name: query file stem, e.g. ``top_products_by_units``.
      dataset: dataset holding ``user_behavior`` and the dedup view.
      start_date, end_date: inclusive date range (dates in ``time_zone``).
      limit: row limit for the ``top_*`` queries (default :data:`DEFAULT_LIMIT`).
      project: project of the dataset; defaults to the client's project.
      time_zone: the business time zone of every date (IANA name; default UTC).
    """
    entry = get(name)
    if entry.kind != KIND_QUERY:
        raise ValueError(f"{name} is a {entry.kind}, not a query (use create-views / refresh-profile)")
    project = project or client.project
    sql = entry.render(project, dataset)
    params = query_parameters(entry, start_date, end_date, limit, time_zone)
    try:
        return [dict(row.items()) for row in _execute(client, sql, params)]
    except NotFound as exc:
        raise _missing_input(entry, exc, project, dataset) or exc from exc


def _missing_input(entry: AnalyticsSql, exc: NotFound, project: str, dataset: str) -> MissingTableError | None:
    """The input of ``entry`` a 404 names, as a :class:`MissingTableError` with its fix; None for any other 404.

    BigQuery says "Not found: Table p:d.user_behavior_dedup was not found in location US",
    the emulator "Not found: Table p.d.user_behavior_dedup"; the longest input name that
    the message holds as a whole word is the missing one (``user_behavior`` is a prefix
    of ``user_behavior_dedup``).
    """
    text = str(getattr(exc, "message", exc))
    named = [t for t in entry.inputs if re.search(rf"[.:]{re.escape(t)}\b", text)]
    if not named:
        return None
    table = max(named, key=len)
    where = f"--project {project} --dataset {dataset}"
    made_by = catalog()[table].kind if table in catalog() else None
    if made_by == KIND_VIEW:
        fix = f"python -m bigquery_schemas.analytics create-views {where}"
    elif made_by == KIND_TABLE:
        fix = f"python -m bigquery_schemas.analytics refresh-profile {where}"
    else:
        fix = f"python -m bigquery_schemas.tables {where}"
    return MissingTableError(entry.name, f"{project}.{dataset}.{table}", fix)


def create_views(client: bigquery.Client, dataset: str, project: str | None = None) -> list[str]:
    """Create or replace every view file (``user_behavior_dedup``); returns the view ids."""
    done = []
    project = project or client.project
    for entry in catalog().values():
        if entry.kind == KIND_VIEW:
            try:
                _execute(client, entry.render(project, dataset))
            except NotFound as exc:
                raise _missing_input(entry, exc, project, dataset) or exc from exc
            done.append(f"{project}.{dataset}.{entry.name}")
    return done


def refresh_profile(client: bigquery.Client, dataset: str, project: str | None = None) -> str:
    """Rebuild ``user_profile`` from the dedup view (full, atomic replace); returns its id.

    The dedup view must exist (``create-views``).
    """
    project = project or client.project
    entry = get(USER_PROFILE)
    try:
        _execute(client, entry.render(project, dataset))
    except NotFound as exc:
        raise _missing_input(entry, exc, project, dataset) or exc from exc
    return f"{project}.{dataset}.{USER_PROFILE}"


def run_all(
    client: bigquery.Client,
    dataset: str,
    start_date: dt.date,
    end_date: dt.date,
    limit: int | None = None,
    project: str | None = None,
    time_zone: str = DEFAULT_TIME_ZONE,
) -> Mapping[str, list[dict[str, Any]]]:
    """Every query file's rows by name."""
    return {
        q.name: run_query(client, q.name, dataset, start_date, end_date, limit, project=project, time_zone=time_zone)
        for q in queries()
    }
