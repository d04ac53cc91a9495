"""How a job reaches and logs in to the SQL source, with nothing secret in the job.

A :class:`SqlLogin` names the source and where its credential comes from. It never
holds a password or a token: it is pickled into the job graph, and its fields are
pipeline options, which Dataflow shows on the job page and writes into the job JSON.
:meth:`SqlLogin.connect` fetches the credential where the connection is made (on the
workers) and keeps it in a local variable only:

=================================================  ==========================================================
options                                             login
=================================================  ==========================================================
``--cloud_sql_instance P:R:I``                      Google's Cloud SQL Python Connector, driver psycopg: TLS
``--database_user SA@P.iam --database_name DB``     1.3 with an ephemeral client certificate, and **IAM
                                                    database authentication**: the workers' service account's
                                                    OAuth token rides on the certificate request; no password
``--cloud_sql_instance ... --database_user U``      the same tunnel, as a built-in database user whose
``--database_password_secret S``                    password is read from Secret Manager on the worker
``--database_url postgresql://U@H:5432/DB``         psycopg straight to the server (a PostgreSQL that is not
``[--database_password_secret S]``                  Cloud SQL), the password from Secret Manager when given
``--database_url sqlite:///path.db``                local runs; a password inside a URL is refused on any
``--database_url_env NAME``                         runner that is not in-process, and ``NAME`` (read where
                                                    the connection is made) on every such runner
=================================================  ==========================================================

Why not the alternatives: ``psycopg.connect`` alone sends no IAM token (manual IAM login
would pass an hour-long OAuth token as the password, and must then verify the instance's
server CA itself; the connector authenticates both ends with an ephemeral certificate); an
environment variable does not reach Dataflow's SDK harness (only a custom container sets
one); a password in ``--database_url`` is readable by anyone who can view the job.

Contract: :meth:`SqlLogin.check` refuses a bad combination at launch with one
``ValueError`` line naming the option to use instead; :meth:`SqlLogin.connect` raises
``ConnectionError`` (or :class:`~beam_pipelines.io.secret_manager.SecretError`) with
one line naming the source, the server's reason and the fix, never the password.

One :class:`Connector` per worker process and IP type (:func:`_connector`): each owns an
event-loop thread, an RSA key pair and the instance's certificate cache, and one
worker runs many DoFn instances. The cache is an optimisation only: every process
builds its own. The connector refreshes certificates lazily, when a connection needs
one, since a batch worker opens its connections in bursts.

Local stand-in: ``CLOUD_SQL_ADMIN_EMULATOR_HOST=http://host:port`` points the
connector's Cloud SQL Admin API calls at a local server (credentials are still
Application Default Credentials). There is no official emulator; the tests serve the
two methods the connector calls and its TLS endpoint (``tests/fixtures/google_standins.py``).
Dataflow workers never have the variable.
"""

from __future__ import annotations

import atexit
import os
import re
import threading
from dataclasses import dataclass, fields
from typing import Any

from beam_pipelines.io import sql
from beam_pipelines.io.secret_manager import SECRET_VERSION_FORMAT, check_secret_version, read_secret

ADMIN_EMULATOR_ENV = "CLOUD_SQL_ADMIN_EMULATOR_HOST"
IP_TYPES = ("PRIVATE", "PUBLIC", "PSC")
PASSWORD_FLAG = "--database_password_secret"  # noqa: S105 - an option name
INSTANCE_FORMAT = "project:region:instance"
# libpq's connect timeout for a URL (as before logins came here); the connector's covers
# two Admin API calls and a TLS handshake besides the login, so it gets the connector's default.
URL_CONNECT_SECONDS, CLOUD_SQL_CONNECT_SECONDS = 10, 30
# project (or domain:project):region:instance, as `gcloud sql instances describe` prints connectionName.
_INSTANCE_RE = re.compile(r"^(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]*:[a-z]+-[a-z]+\d+:[a-z][a-z0-9-]*$")
CLOUD_FIX = (
    f"--cloud_sql_instance {INSTANCE_FORMAT} --database_user SA@PROJECT.iam --database_name DB (IAM database "
    f"authentication), or --database_url postgresql://user@host:5432/db with {PASSWORD_FLAG} {SECRET_VERSION_FORMAT}"
)

# The job's options (extract_dims declares them from here, so help and checks stay together).
OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "--cloud_sql_instance",
        {
            "default": None,
            "help": f"Cloud SQL instance connection name, {INSTANCE_FORMAT}: connect through Google's Cloud SQL "
            "Python Connector (TLS, IAM-authorised). With no --database_password_secret the login is IAM database "
            "authentication as --database_user (the workers' service account; no password).",
        },
    ),
    (
        "--database_user",
        {
            "default": None,
            "help": "Database user on --cloud_sql_instance. IAM database authentication: the service account as "
            "SA@PROJECT.iam (its e-mail without .gserviceaccount.com); a built-in user needs "
            "--database_password_secret.",
        },
    ),
    ("--database_name", {"default": None, "help": "Database on --cloud_sql_instance, e.g. shop."}),
    (
        "--cloud_sql_ip_type",
        {
            "default": "PRIVATE",
            "choices": IP_TYPES,
            "help": "Which address of --cloud_sql_instance the workers use: PRIVATE (in the workers' VPC), PUBLIC "
            "or PSC.",
        },
    ),
    (
        PASSWORD_FLAG,
        {
            "default": None,
            "help": f"Secret Manager secret version holding the database password, {SECRET_VERSION_FORMAT}; read on "
            "the workers (their service account needs roles/secretmanager.secretAccessor on it). For a built-in user "
            "on --cloud_sql_instance, or the user of a --database_url without a password.",
        },
    ),
    (
        "--database_url",
        {
            "default": None,
            "help": "SQL source as a URL: sqlite:///path.db, or postgresql://user@host:port/db (a password in it is "
            f"refused off the local runner: use {PASSWORD_FLAG}).",
        },
    ),
    (
        "--database_url_env",
        {
            "default": None,
            "help": "Local runs only: the name of an environment variable holding the database URL (Dataflow "
            "workers do not have your environment).",
        },
    ),
)


@dataclass(frozen=True)
class SqlLogin:
    """Where the SQL source is and how to log in to it; names only, no secret (see the module doc)."""

    database_url: str | None = None
    database_url_env: str | None = None
    cloud_sql_instance: str | None = None
    database_user: str | None = None
    database_name: str | None = None
    cloud_sql_ip_type: str = "PRIVATE"
    database_password_secret: str | None = None

    @classmethod
    def from_options(cls, options: Any) -> SqlLogin:
        """The login named by a job's options (any object with the :data:`OPTIONS` attributes)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = getattr(options, f.name, None)
            values[f.name] = value.strip() if isinstance(value, str) and value.strip() else None
        values["cloud_sql_ip_type"] = values["cloud_sql_ip_type"] or "PRIVATE"
        return cls(**values)

    # ------------------------------------------------------------------ launch-time checks
    def check(self, local: bool) -> None:
        """Refuse a login that cannot work, or would put a secret in the job, with one ``ValueError`` line.

        Args:
          local: the runner runs the job in this process (its environment and files are the workers').
        """
        sources = [f"--{n}" for n in ("cloud_sql_instance", "database_url", "database_url_env") if getattr(self, n)]
        if not sources:
            raise ValueError(f"no SQL source: pass {CLOUD_FIX}; locally --database_url sqlite:///path.db also works")
        if len(sources) > 1:
            raise ValueError(f"pass one SQL source, not {' and '.join(sources)}")
        if self.cloud_sql_instance:
            self._check_cloud_sql()
        else:
            for flag in ("database_user", "database_name"):
                if getattr(self, flag):
                    raise ValueError(f"--{flag} goes with --cloud_sql_instance; put the user and database in the URL")
        if self.database_url_env and not local:
            raise ValueError(
                f"--database_url_env {self.database_url_env} is read on the workers, and Dataflow workers do not have "
                f"your environment: pass {CLOUD_FIX}"
            )
        if self.database_url:
            self._check_url(local)
        if self.database_password_secret:
            check_secret_version(PASSWORD_FLAG, self.database_password_secret)

    def _check_cloud_sql(self) -> None:
        if not _INSTANCE_RE.match(self.cloud_sql_instance or ""):
            raise ValueError(
                f"--cloud_sql_instance must be the instance connection name {INSTANCE_FORMAT} "
                "(gcloud sql instances describe INSTANCE --format 'value(connectionName)'), "
                f"got {self.cloud_sql_instance!r}"
            )
        missing = [f"--{n}" for n in ("database_user", "database_name") if not getattr(self, n)]
        if missing:
            raise ValueError(f"--cloud_sql_instance needs {' and '.join(missing)}")
        if self.cloud_sql_ip_type not in IP_TYPES:
            raise ValueError(f"--cloud_sql_ip_type is one of {', '.join(IP_TYPES)}, not {self.cloud_sql_ip_type!r}")
        if not self.database_password_secret and "@" not in (self.database_user or ""):
            raise ValueError(
                f"--database_user {self.database_user} is not an IAM principal: IAM database authentication logs in as "
                f"a service account (SA@PROJECT.iam) or a Google account; a built-in user needs {PASSWORD_FLAG}"
            )

    def _check_url(self, local: bool) -> None:
        dialect, _ = sql.parse_url(self.database_url or "")
        if dialect == sql.SQLITE:
            if self.database_password_secret:
                raise ValueError(f"{PASSWORD_FLAG} is for PostgreSQL; a SQLite file has no password")
            if not local:
                raise ValueError(
                    f"--database_url {self.database_url} is a file on this machine, which Dataflow workers cannot "
                    f"read: pass {CLOUD_FIX}"
                )
            return
        if _url_password(self.database_url or ""):
            if not local:
                raise ValueError(
                    f"--database_url holds a password, which Dataflow shows in the job's pipeline options: drop it "
                    f"from the URL and pass {PASSWORD_FLAG} {SECRET_VERSION_FORMAT}, or use --cloud_sql_instance "
                    "(IAM database authentication)"
                )
            if self.database_password_secret:
                raise ValueError(f"--database_url holds a password and {PASSWORD_FLAG} names one: keep one")

    # ------------------------------------------------------------------ where the connection is made
    @property
    def where(self) -> str:
        """The source, printable (a password in a URL shown as ``***``)."""
        if self.cloud_sql_instance:
            return f"Cloud SQL {self.cloud_sql_instance} database {self.database_name}"
        if self.database_url:
            return sql.redact(self.database_url)
        return f"${self.database_url_env}"

    def connect(self) -> sql.Database:
        """Read the password (if any) from Secret Manager and open the connection.

        Raises:
          ConnectionError: the source refused or could not be reached (one line, with the fix).
          SecretError: the password secret cannot be read.
          ValueError: ``--database_url_env`` names an empty variable.
        """
        password = read_secret(self.database_password_secret, PASSWORD_FLAG) if self.database_password_secret else None
        if self.cloud_sql_instance:
            return self._connect_cloud_sql(password, CLOUD_SQL_CONNECT_SECONDS)
        url = self.database_url or self._url_from_env()
        try:
            return sql.connect(url, password=password, connect_timeout=URL_CONNECT_SECONDS)
        except ConnectionError as exc:
            raise ConnectionError(f"{exc}{self._login_hint(str(exc))}") from None

    def _url_from_env(self) -> str:
        value = os.environ.get(self.database_url_env or "", "").strip()
        if not value:
            raise ValueError(
                f"--database_url_env {self.database_url_env}: the variable is not set or empty here; set it, or pass "
                "--database_url"
            )
        return value

    def _connect_cloud_sql(self, password: str | None, timeout: int) -> sql.Database:
        import psycopg

        iam = password is None
        try:
            raw = _connector(self.cloud_sql_ip_type, iam).connect(
                self.cloud_sql_instance,
                "psycopg",
                user=self.database_user,
                db=self.database_name,
                password=password,
                autocommit=True,
                timeout=timeout,
            )
        except psycopg.OperationalError as exc:
            reason = sql.refused_login(exc)
            if reason is None:
                raise ConnectionError(f"cannot connect to {self.where}: {' '.join(str(exc).split())}") from None
            raise ConnectionError(f"{self.where} refused the login: {reason}{self._login_hint(reason)}") from None
        except Exception as exc:  # the connector's errors: aiohttp, google-auth, its own, OSError
            raise ConnectionError(f"cannot connect to {self.where}: {_connector_problem(exc, self)}") from None
        return sql.postgres_database(raw, self.where)

    def _login_hint(self, message: str) -> str:
        """What to do about a refused login, from the server's message."""
        text = message.lower()
        if self.database_password_secret and "password authentication failed" in text:
            secret = self.database_password_secret.rsplit("/versions/", 1)[0].rsplit("/", 1)[-1]
            return (
                f"; the password in {self.database_password_secret} is wrong for this user: add the right one "
                f"with `gcloud secrets versions add {secret} --data-file=-`"
            )
        if "no password supplied" in text or ("password authentication failed" in text and not self.cloud_sql_instance):
            return f"; the server asks for a password: pass {PASSWORD_FLAG} {SECRET_VERSION_FORMAT}"
        if self.cloud_sql_instance and not self.database_password_secret:
            return (
                "; check the instance flag cloudsql.iam_authentication=on, the IAM database user (gcloud sql users "
                "create ... --type=cloud_iam_service_account) and the account's roles/cloudsql.instanceUser"
            )
        return ""


def _url_password(url: str) -> bool:
    from psycopg.conninfo import conninfo_to_dict

    try:
        return bool(conninfo_to_dict(url).get("password"))
    except Exception:  # a malformed URL: psycopg will say so when connecting
        return sql.redact(url) != url


def _connector_problem(exc: BaseException, login: SqlLogin) -> str:
    """One line for an error of the Cloud SQL connector, with the fix where it is known."""
    status = getattr(exc, "status", None)  # aiohttp.ClientResponseError from the Admin API
    message = " ".join(str(getattr(exc, "message", None) or exc).split()) or type(exc).__name__
    if status in (401, 403):
        return (
            f"the Cloud SQL Admin API refused ({status}: {message}); the workers' service account needs "
            "roles/cloudsql.client, and the project needs the Cloud SQL Admin API (sqladmin.googleapis.com) on"
        )
    if status == 404:
        return f"no such instance (404: {message}); check --cloud_sql_instance ({INSTANCE_FORMAT})"
    if type(exc).__name__ == "CloudSQLIPTypeError":
        others = ", ".join(t for t in IP_TYPES if t != login.cloud_sql_ip_type)
        return f"{message}; pass --cloud_sql_ip_type {others} or give the instance a {login.cloud_sql_ip_type} address"
    return f"{type(exc).__name__}: {message}"


_CONNECTORS: dict[tuple[str, bool], Any] = {}
_CONNECTORS_LOCK = threading.Lock()


def _connector(ip_type: str, iam: bool) -> Any:
    """This process's Cloud SQL connector for ``ip_type`` and login kind (see the module doc)."""
    from google.cloud.sql.connector import Connector, RefreshStrategy

    with _CONNECTORS_LOCK:
        if (ip_type, iam) not in _CONNECTORS:
            endpoint = os.environ.get(ADMIN_EMULATOR_ENV, "").strip() or None
            if endpoint and "://" not in endpoint:
                endpoint = f"http://{endpoint}"
            connector = Connector(
                ip_type=ip_type,
                enable_iam_auth=iam,
                refresh_strategy=RefreshStrategy.LAZY,
                sqladmin_api_endpoint=endpoint,
            )
            atexit.register(connector.close)
            _CONNECTORS[(ip_type, iam)] = connector
        return _CONNECTORS[(ip_type, iam)]
