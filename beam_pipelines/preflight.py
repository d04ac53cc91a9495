"""Checks made before any pipeline, publisher or table command starts: is everything it needs there?

Without them a run with the stack down sat silent for over a minute (clients retry
connections for minutes), a run with no ``eval "$(... local env)"`` line started
Google's browser login and wrote ``~/.apitools.token``, the simulator printed a
34-line ``DefaultCredentialsError``, and a typo in a table name created a new table.

Contract: every check raises :class:`PreflightError` whose message is one line naming
what is missing (which variable, endpoint, topic, subscription, dataset, table or URL),
the closest existing name when it looks like a typo ("did you mean --topic
user-events?"), and the command that fixes it. Each network probe is bounded
(``PROBE_SECONDS``), so a whole check ends well within 5 s. Local (emulator) and Google
Cloud runs get the same checks; on Google Cloud a missing credential names ``gcloud auth
application-default login``. The command lines turn it into exit code 3 (the class lives in
:mod:`beam_pipelines.cli`, below every command line, which maps it to that code).

Used by every entry point: :func:`beam_pipelines.launch.main` (the Beam jobs, through
:func:`check_job`), ``publishers.simulator``, ``bigquery_schemas.tables``,
``bigquery_schemas.migrate_ids`` and ``bigquery_schemas.analytics``.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from beam_pipelines import cli, runners
from beam_pipelines.cli import PreflightError
from beam_pipelines.local.stack import LocalStack

PROBE_SECONDS = 1.5
PUBSUB_ENV = "PUBSUB_EMULATOR_HOST"
BIGQUERY_ENV = "BIGQUERY_EMULATOR_HOST"
ENV_FIX = 'eval "$(.venv/bin/python -m beam_pipelines.local env)"'
UP_FIX = ".venv/bin/python -m beam_pipelines.local up"
LOGIN_FIX = "gcloud auth application-default login"
TABLES_FIX = ".venv/bin/python -m bigquery_schemas.tables --project {project} --dataset {dataset}"


# ---------------------------------------------------------------------------- probes


def _host_port(value: str) -> tuple[str, int]:
    parts = urlsplit(value if "://" in value else f"//{value}")
    default = 443 if parts.scheme == "https" else 80
    return parts.hostname or "127.0.0.1", parts.port or default


def listening(value: str, timeout: float = PROBE_SECONDS) -> bool:
    """True when something accepts a TCP connection at ``host:port`` or ``http://host:port``."""
    try:
        with socket.create_connection(_host_port(value), timeout=timeout):
            return True
    except OSError:
        return False


def _local_stack_running() -> bool:
    try:
        return any(info.alive() for info in LocalStack().load().values())
    except (OSError, ValueError, TypeError):
        return False


def require_credentials(what: str, local_alternative: bool = True) -> None:
    """Google Application Default Credentials must exist (never an interactive login)."""
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    # google-auth logs a warning for each source it tried; the error below says it all.
    auth_log = logging.getLogger("google.auth")
    level, auth_log.level = auth_log.level, logging.CRITICAL
    try:
        google.auth.default()
    except DefaultCredentialsError:
        local = f", or for the local stack run `{UP_FIX}` and `{ENV_FIX}`" if local_alternative else ""
        raise PreflightError(
            f"{what} needs Google credentials and none were found: run `{LOGIN_FIX}` (or set "
            f"GOOGLE_APPLICATION_CREDENTIALS){local}"
        ) from None
    finally:
        auth_log.setLevel(level)


def require_service(env_var: str, what: str) -> bool:
    """The emulator named by ``env_var`` answers, or real Google Cloud is usable; True when local.

    Raises:
      PreflightError: the variable points at nothing; or it is unset while the local
        stack runs (the env line is missing); or it is unset and there are no credentials.
    """
    value = os.environ.get(env_var, "").strip()
    if value:
        if not listening(value):
            raise PreflightError(
                f"{what}: nothing answers at {env_var}={value} (the local stack is down); start it with "
                f"`{UP_FIX}`, then `{ENV_FIX}` (its ports change on each start)"
            )
        return True
    if _local_stack_running():
        raise PreflightError(
            f"{what}: the local stack is running but {env_var} is not set in this shell, so the run would "
            f"go to Google Cloud; run `{ENV_FIX}`"
        )
    require_credentials(f"{what} on Google Cloud ({env_var} is not set)")
    return False


def require_bigquery(what: str, endpoint: str | None = None) -> None:
    """BigQuery is usable: the ``--endpoint`` given answers, or :func:`require_service` for the emulator variable."""
    if endpoint:
        if not listening(endpoint):
            raise PreflightError(f"{what}: nothing answers at --endpoint {endpoint}; start the stack with `{UP_FIX}`")
        return
    require_service(BIGQUERY_ENV, what)


# ---------------------------------------------------------------------------- resources


def one_line(text: object) -> str:
    """The first line of an API error: the BigQuery client appends "Location: ..." and "Job ID: ..." lines."""
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


def did_you_mean(name: str, existing: Iterable[str], prefix: str = "", suffix: str = "") -> str:
    """``"did you mean <prefix><closest><suffix>? "`` for the existing name closest to ``name``, or ``""``."""
    guess = cli.closest(name, existing)
    return f"did you mean {prefix}{guess}{suffix}? " if guess else ""


def _listed(lister) -> list[str]:
    """Names from a list call, or none when listing is not allowed (a hint is never worth a failure)."""
    from google.api_core import exceptions

    try:
        return list(lister())
    except exceptions.GoogleAPICallError:
        return []


def require_subscription(path: str) -> None:
    from google.api_core import exceptions
    from google.cloud import pubsub_v1

    client = pubsub_v1.SubscriberClient()
    try:
        client.get_subscription(request={"subscription": path}, timeout=3 * PROBE_SECONDS, retry=None)
    except exceptions.NotFound:
        project, name = path.split("/")[1], path.rsplit("/", 1)[-1]
        if os.environ.get(PUBSUB_ENV):
            fix = f"the local stack creates projects/<project>/subscriptions/user-events-sub with `{UP_FIX}`"
        else:
            fix = f"create it with `gcloud pubsub subscriptions create {name} --topic user-events --project {project}`"
        existing = _listed(
            lambda: (
                s.name
                for s in client.list_subscriptions(
                    request={"project": f"projects/{project}"}, timeout=3 * PROBE_SECONDS, retry=None
                )
            )
        )
        hint = did_you_mean(path, existing)
        raise PreflightError(f"subscription {path} does not exist: {hint}{fix}") from None
    except exceptions.GoogleAPICallError as exc:
        raise PreflightError(f"cannot read subscription {path}: {one_line(exc.message)}") from None
    finally:
        client.close()


def require_topic(path: str, client=None) -> None:
    """The topic ``projects/<p>/topics/<t>`` exists (a publisher without ``topics.get`` permission passes).

    Raises:
      PreflightError: naming the topic, the closest existing topic of the project when it
        looks like a typo (``user_events`` -> ``user-events``), and how to create it.
    """
    from google.api_core import exceptions
    from google.cloud import pubsub_v1

    own = client is None
    client = client or pubsub_v1.PublisherClient()
    project = path.split("/")[1]
    try:
        client.get_topic(topic=path, timeout=3 * PROBE_SECONDS, retry=None)
    except exceptions.NotFound:
        existing = _listed(
            lambda: (
                t.name.rsplit("/", 1)[-1]
                for t in client.list_topics(
                    request={"project": f"projects/{project}"}, timeout=3 * PROBE_SECONDS, retry=None
                )
            )
        )
        hint = did_you_mean(path.rsplit("/", 1)[-1], existing, prefix="--topic ")
        if os.environ.get(PUBSUB_ENV):
            fix = f"`{UP_FIX}` creates the local stack's user-events topic, or pass --create-topic"
        else:
            fix = f"create it with `gcloud pubsub topics create {path.rsplit('/', 1)[-1]} --project {project}`"
        raise PreflightError(f"topic {path} does not exist: {hint}{fix}") from None
    except exceptions.PermissionDenied:
        pass  # publishers often may publish without topics.get; publishing will tell
    except exceptions.GoogleAPICallError as exc:
        raise PreflightError(f"cannot read topic {path}: {one_line(exc.message)}") from None
    finally:
        if own:
            client.stop()


def split_table(spec: str) -> tuple[str, str, str]:
    """``project:dataset.table`` or ``project.dataset.table`` -> its three parts."""
    project, _, rest = spec.replace(":", ".", 1).partition(".")
    dataset, _, table = rest.partition(".")
    if not (project and dataset and table):
        raise ValueError(f"table must be project:dataset.table, got {spec!r}")
    return project, dataset, table


def require_dataset(
    project: str, dataset: str, endpoint: str | None = None, client=None, table: str | None = None
) -> None:
    """The dataset exists.

    Raises:
      PreflightError: naming it, the closest existing dataset of the project when it looks
        like a typo (``ecommerse`` -> ``ecommerce``), and the command that creates one. With
        ``table`` (a job's ``--*_table`` option) the hint spells the whole table.
    """
    from google.api_core import exceptions

    from bigquery_schemas.client import make_client

    client = client or make_client(project, endpoint)
    try:
        client.get_dataset(f"{project}.{dataset}", retry=None, timeout=3 * PROBE_SECONDS)
        return
    except exceptions.NotFound:
        pass
    except exceptions.GoogleAPICallError as exc:
        raise PreflightError(f"cannot read dataset {project}:{dataset}: {one_line(exc.message)}") from None
    existing = dataset_ids(client, project)
    if table is None:
        hint = did_you_mean(dataset, existing, prefix="--dataset ")
        what = f"dataset {project}:{dataset}"
    else:
        hint = did_you_mean(dataset, existing, prefix=f"{project}:", suffix=f".{table}")
        what = f"table {project}:{dataset}.{table}: its dataset {dataset}"
    fix = TABLES_FIX.format(project=project, dataset=dataset)
    raise PreflightError(f"{what} does not exist: {hint}a new dataset and its tables come from `{fix}`")


def dataset_ids(client, project: str) -> list[str]:
    """The project's dataset ids, or none when listing them is not allowed."""
    return _listed(lambda: (d.dataset_id for d in client.list_datasets(project, retry=None, timeout=3 * PROBE_SECONDS)))


def require_tables(tables: Iterable[str]) -> None:
    """Every table exists. Jobs never create tables: ``bigquery_schemas.tables`` does.

    Raises:
      PreflightError: naming the missing dataset or table, the closest existing dataset or
        declared table name when it looks like a typo, and the command that creates them.
    """
    from google.api_core import exceptions

    import bigquery_schemas
    from bigquery_schemas.client import make_client

    clients = {}
    datasets_seen: set[tuple[str, str]] = set()
    for spec in tables:
        project, dataset, table = split_table(spec)
        client = clients.get(project) or clients.setdefault(project, make_client(project))
        if (project, dataset) not in datasets_seen:
            require_dataset(project, dataset, client=client, table=table)
            datasets_seen.add((project, dataset))
        try:
            client.get_table(f"{project}.{dataset}.{table}", retry=None, timeout=3 * PROBE_SECONDS)
        except exceptions.NotFound:
            declared = bigquery_schemas.table_names()
            fix = TABLES_FIX.format(project=project, dataset=dataset)
            if table in declared:
                hint = f"create it with `{fix} --table {table}`"
            else:
                hint = did_you_mean(table, declared, prefix=f"{project}:{dataset}.") + (
                    f"{table} is not a declared table (bigquery_schemas/tables.json); the tables come from `{fix}`"
                )
            raise PreflightError(f"table {spec} does not exist (jobs never create tables): {hint}") from None
        except exceptions.GoogleAPICallError as exc:
            raise PreflightError(f"cannot read table {spec}: {one_line(exc.message)}") from None


def require_url(name: str, url: str) -> None:
    """Something answers HTTP at ``url`` (any status: the job handles auth and errors)."""
    if not listening(url):
        local = _host_port(url)[0] in {"127.0.0.1", "localhost", "::1"}
        fix = f"start the local stack with `{UP_FIX}`, then `{ENV_FIX}`" if local else "check the URL"
        raise PreflightError(f"nothing answers at --{name} {url}: {fix}")


# ---------------------------------------------------------------------------- jobs


def job_resources(job_options) -> list[str]:
    """The subscription, tables and URLs a job's options name (for checks and failure lines)."""
    values = job_options.get_all_options(current_only=True)
    names = [k for k in values if k.endswith(("_table", "_subscription", "_url"))]
    # A database URL may carry a password: never print it in an error line.
    return [re.sub(r"://([^:/@]+):[^@/]+@", r"://\1:***@", str(values[k])) for k in names if values[k]]


def check_job(options, options_cls: type) -> None:
    """Everything the Beam job of ``options`` reads or writes is reachable and exists.

    By naming convention of the job's own options: ``*_subscription`` -> Pub/Sub,
    ``*_table`` -> BigQuery, ``*_base_url`` -> HTTP. A Dataflow run checks credentials,
    the subscription and the tables from the launching machine, but not the URLs (the
    workers may reach an API the launcher cannot); with ``--no_auth`` or ``--dry_run``
    it talks to nothing, so nothing is checked.
    """
    from apache_beam.options.pipeline_options import GoogleCloudOptions, StandardOptions, TestOptions

    runner = options.view_as(StandardOptions).runner or ""  # unset: a pinned local runner
    values = options.view_as(options_cls).get_all_options(current_only=True)
    local = runners.allows(options, runners.LocalStep.LAUNCHER_CHECKS)
    if not local:
        cloud = options.view_as(GoogleCloudOptions)
        # --template_location: this process only writes the job description (the Flex
        # Template launcher runs job files so); the job's resources are used, and
        # checked, when Dataflow runs it.
        if cloud.no_auth or cloud.template_location or options.view_as(TestOptions).dry_run:
            return
        require_credentials(f"--runner {runner}", local_alternative=False)
    else:
        for name, value in values.items():
            if name.endswith("_base_url") and value:
                require_url(name, value)
    subscriptions = [v for k, v in values.items() if k.endswith("_subscription") and v]
    tables = [v for k, v in values.items() if k.endswith("_table") and v]
    if subscriptions:
        if local:
            require_service(PUBSUB_ENV, "reading Pub/Sub")
        for path in subscriptions:
            require_subscription(path)
    if tables:
        if local:
            require_service(BIGQUERY_ENV, "writing BigQuery")
        require_tables(tables)
