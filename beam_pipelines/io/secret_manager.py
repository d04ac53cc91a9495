"""Secrets read from Google Secret Manager where they are used: on the workers, never in a job.

A secret is named by its version, ``projects/<p>/secrets/<s>/versions/<v>`` (``<v>`` a
number or ``latest``); that name is what sits in pipeline options, the Flex Template
parameters and the Composer Variable. :func:`read_secret` fetches the value with the
process's Application Default Credentials (on Dataflow: the job's worker service
account, which needs ``roles/secretmanager.secretAccessor`` on that secret). The value
is returned, never logged, and every error names the secret, not its value.

Local stand-in: with ``SECRET_MANAGER_EMULATOR_HOST=host:port`` (or ``http://host:port``)
the client talks REST to that endpoint instead of ``secretmanager.googleapis.com``,
still with Application Default Credentials. There is no official emulator; the tests
serve the one method this module calls (``tests/fixtures/google_standins.py``).
Dataflow workers never have the variable.
"""

from __future__ import annotations

import os
import re

SECRET_VERSION_RE = re.compile(r"^projects/[^/\s]+/secrets/[^/\s]+/versions/[^/\s]+$")
SECRET_VERSION_FORMAT = "projects/<p>/secrets/<s>/versions/<v>"  # noqa: S105 - a format, not a secret
EMULATOR_ENV = "SECRET_MANAGER_EMULATOR_HOST"


class SecretError(RuntimeError):
    """A secret could not be read; the message names the secret and the fix, never a value."""


def check_secret_version(flag: str, name: str) -> str:
    """``name`` when it is a secret version name; ValueError naming ``flag`` and the format otherwise."""
    if not SECRET_VERSION_RE.match(name or ""):
        raise ValueError(f"{flag} must look like {SECRET_VERSION_FORMAT} (e.g. .../versions/latest), got {name!r}")
    return name


def _client():
    from google.api_core.client_options import ClientOptions
    from google.cloud import secretmanager

    endpoint = os.environ.get(EMULATOR_ENV, "").strip()
    if not endpoint:
        return secretmanager.SecretManagerServiceClient()
    if "://" not in endpoint:
        endpoint = f"http://{endpoint}"
    return secretmanager.SecretManagerServiceClient(
        transport="rest", client_options=ClientOptions(api_endpoint=endpoint)
    )


def read_secret(name: str, flag: str) -> str:
    """The value of secret version ``name`` (UTF-8, surrounding whitespace stripped).

    Args:
      name: ``projects/<p>/secrets/<s>/versions/<v>``.
      flag: the option that named it, for error messages (``--database_password_secret``).

    Raises:
      ValueError: ``name`` is not a secret version name.
      SecretError: the secret cannot be read (missing, access denied, service down) or is empty.
    """
    from google.api_core import exceptions
    from google.auth.exceptions import GoogleAuthError

    check_secret_version(flag, name)
    secret = name.rsplit("/versions/", 1)[0]
    try:
        response = _client().access_secret_version(request={"name": name}, timeout=30)
    except exceptions.Forbidden as exc:  # PermissionDenied over gRPC, Forbidden over REST
        raise SecretError(
            f"cannot read {flag} {name}: permission denied ({_first_line(exc)}); grant the job's service "
            f"account roles/secretmanager.secretAccessor on {secret}"
        ) from None
    except exceptions.NotFound:
        raise SecretError(
            f"cannot read {flag} {name}: no such secret or version; create it with "
            f"`gcloud secrets create {secret.rsplit('/', 1)[-1]} --data-file=-` or fix the name"
        ) from None
    except (exceptions.GoogleAPIError, GoogleAuthError) as exc:
        raise SecretError(f"cannot read {flag} {name}: {_first_line(exc)}") from None
    value = response.payload.data.decode("utf-8").strip()
    if not value:
        raise SecretError(f"{flag} {name} is empty; add a version with the value (gcloud secrets versions add)")
    return value


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(getattr(exc, "message", None) or exc).split())
    text = re.sub(r"^[A-Z]+ https?://\S+: ", "", text)  # the REST transport prefixes the request
    return text[:300] or type(exc).__name__
