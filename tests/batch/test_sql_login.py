"""extract_dims logs in to the SQL source as on Google Cloud, and nothing secret leaves the workers.

Run as a user or the Flex launcher runs it (``python -m beam_pipelines.extract_dims``),
against real password authentication (SCRAM-SHA-256 on a PostgreSQL cluster of this
session), Secret Manager read by its real client, and Google's Cloud SQL Python
Connector doing its TLS tunnel and IAM login through local stand-ins of the Cloud SQL
Admin API and the instance (``tests/fixtures/google_standins.py``; Google ships no
emulator for either). What these cannot show: a real instance checking a real IAM token.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from beam_pipelines import extract_dims, lake
from beam_pipelines.io import orders_api, sql
from beam_pipelines.io.sql_login import SqlLogin
from tests.dataflow.offline import LOCAL_ENDPOINT_ENVS, describe
from tests.fixtures.google_standins import IAM_DB_USER, LOGIN_SCOPE, PASSWORD_USER, PRINCIPAL

ROOT = Path(__file__).resolve().parents[2]
PASSWORD_SECRET = "projects/acme-analytics-prod/secrets/shop-reader/versions/latest"
SNAPSHOT = "2026-11-21T10:00:00Z"
PRODUCTS, USERS = 12, 5

pytestmark = pytest.mark.integration


@pytest.fixture
def shop(scram_postgres):
    """The source tables in the password-protected cluster, readable by the password and the IAM user."""
    ts = datetime(2026, 11, 21, 9, tzinfo=UTC)
    with sql.connect(scram_postgres.admin_url) as db:
        sql.create_schema(db, drop_existing=True)
        db.bulk_load(
            "products",
            ["product_id", "product_name", "category", "price", "updated_at"],
            [(f"p{i:03d}", f"product {i}", "cat", "9.50", ts) for i in range(PRODUCTS)],
        )
        db.bulk_load(
            "users",
            ["user_id", "user_name", "email", "signup_date", "country", "updated_at"],
            [(f"u{i}", f"user {i}", f"u{i}@example.com", date(2025, 1, 1), "DE", ts) for i in range(USERS)],
        )
        for role in (PASSWORD_USER, IAM_DB_USER):
            db.execute(f'grant select on products, users to "{role}"')
    return scram_postgres


def _extract(tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "beam_pipelines.extract_dims", "--lake_root", str(tmp_path / "lake"),
         "--snapshot_ts", SNAPSHOT, "--num_partitions", "2", *argv],
        cwd=ROOT, capture_output=True, text=True, timeout=180, env={**os.environ, **(env or {})},
    )  # fmt: skip


def _error_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def _snapshot_ids(tmp_path: Path, table: str, key: str) -> list[str]:
    return sorted(r[key] for r in lake.read_latest_snapshot_rows(str(tmp_path / "lake"), table))


def _assert_full_snapshot(tmp_path: Path) -> None:
    assert _snapshot_ids(tmp_path, "products", "product_id") == [f"p{i:03d}" for i in range(PRODUCTS)]
    assert _snapshot_ids(tmp_path, "users", "user_id") == [f"u{i}" for i in range(USERS)]


# ----------------------------------------------------------------------------- password from Secret Manager


def test_the_password_comes_from_secret_manager_and_logs_in_with_scram(shop, google_standins, tmp_path):
    google_standins.add_secret(PASSWORD_SECRET, shop.password)
    proc = _extract(tmp_path, "--database_url", shop.url(), "--database_password_secret", PASSWORD_SECRET,
                    env=google_standins.env())  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    _assert_full_snapshot(tmp_path)
    assert google_standins.requests_to(":access"), "the password was read from Secret Manager"
    assert shop.password not in proc.stdout + proc.stderr


def test_without_the_secret_the_server_asks_for_a_password(shop, tmp_path):
    proc = _extract(tmp_path, "--database_url", shop.url())
    line = _error_line(proc)
    assert proc.returncode == 1
    assert f"PostgreSQL at {shop.url()} refused the login: fe_sendauth: no password supplied" in line
    assert "the server asks for a password: pass --database_password_secret projects/<p>/secrets/" in line


def test_a_wrong_password_fails_in_one_line_saying_what_to_do(shop, google_standins, tmp_path):
    wrong = "not-the-password-" + shop.password[::-1]
    google_standins.add_secret(PASSWORD_SECRET, wrong)
    proc = _extract(tmp_path, "--database_url", shop.url(), "--database_password_secret", PASSWORD_SECRET,
                    env=google_standins.env())  # fmt: skip
    line = _error_line(proc)
    assert proc.returncode == 1
    assert f'password authentication failed for user "{PASSWORD_USER}"' in line
    assert f"PostgreSQL at {shop.url()} refused the login" in line
    assert f"the password in {PASSWORD_SECRET} is wrong for this user" in line
    assert "gcloud secrets versions add shop-reader --data-file=-" in line
    assert wrong not in proc.stdout + proc.stderr
    (traceback_log,) = re.findall(r"\[traceback: (\S+);", line)  # the full traceback, kept for the user
    assert "refused the login" in Path(traceback_log).read_text() and wrong not in Path(traceback_log).read_text()
    assert not (tmp_path / "lake" / "raw").exists()


def test_a_secret_the_job_may_not_read_names_the_role(shop, google_standins, tmp_path):
    google_standins.add_secret(PASSWORD_SECRET, shop.password)
    google_standins.denied_secrets.add(PASSWORD_SECRET)
    proc = _extract(tmp_path, "--database_url", shop.url(), "--database_password_secret", PASSWORD_SECRET,
                    env=google_standins.env())  # fmt: skip
    line = _error_line(proc)
    assert proc.returncode == 1
    assert f"cannot read --database_password_secret {PASSWORD_SECRET}: permission denied" in line
    assert "roles/secretmanager.secretAccessor on projects/acme-analytics-prod/secrets/shop-reader" in line


def test_the_orders_api_token_is_read_through_the_same_secret_client(google_standins, monkeypatch):
    name = "projects/acme-analytics-prod/secrets/orders-api-token/versions/3"
    google_standins.add_secret(name, "  tok-123\n")
    for key, value in google_standins.env().items():
        monkeypatch.setenv(key, value)
    assert orders_api.resolve_token(None, name) == "tok-123"
    (access,) = google_standins.requests_to(":access")
    assert access["path"] == f"/v1/{name}:access"


# ----------------------------------------------------------------------------- Cloud SQL through the connector


def _cloud_sql_args(instance, user: str = PRINCIPAL) -> list[str]:
    return ["--cloud_sql_instance", instance.connection_name, "--database_user", user, "--database_name", "shop"]


def test_iam_database_login_through_the_cloud_sql_connector(shop, cloud_sql_instance, google_standins, tmp_path):
    proc = _extract(tmp_path, *_cloud_sql_args(cloud_sql_instance), env=google_standins.env())
    assert proc.returncode == 0, proc.stderr
    _assert_full_snapshot(tmp_path)
    # The connector asked the Admin API for the instance and a client certificate carrying a
    # token scoped for database login, and logged in as the service account without its
    # .gserviceaccount.com suffix, with no password, through the TLS tunnel.
    certs = google_standins.requests_to(":generateEphemeralCert")
    assert certs and all(r["login_token_scope"] == LOGIN_SCOPE for r in certs)
    assert google_standins.requests_to("/connectSettings")
    assert google_standins.logins and {r["user"] for r in google_standins.logins} == {IAM_DB_USER}
    assert all(LOGIN_SCOPE in r["login_scope"] for r in google_standins.logins)
    assert not google_standins.requests_to(":access")  # no Secret Manager: no password at all
    assert google_standins.tokens and not any(token in proc.stdout + proc.stderr for token in google_standins.tokens)


def test_a_built_in_user_on_cloud_sql_logs_in_with_its_secret_password(
    shop, cloud_sql_instance, google_standins, tmp_path
):
    google_standins.add_secret(PASSWORD_SECRET, shop.password)
    args = [*_cloud_sql_args(cloud_sql_instance, PASSWORD_USER), "--database_password_secret", PASSWORD_SECRET]
    proc = _extract(tmp_path, *args, env=google_standins.env())
    assert proc.returncode == 0, proc.stderr
    _assert_full_snapshot(tmp_path)
    assert {r["user"] for r in google_standins.logins} == {PASSWORD_USER}
    assert all(r["login_token_scope"] is None for r in google_standins.requests_to(":generateEphemeralCert"))
    assert shop.password not in proc.stdout + proc.stderr


def test_an_iam_login_cloud_sql_refuses_says_what_to_set_up(shop, cloud_sql_instance, google_standins, tmp_path):
    other = "someone-else@acme-analytics-prod.iam.gserviceaccount.com"
    proc = _extract(tmp_path, *_cloud_sql_args(cloud_sql_instance, other), env=google_standins.env())
    line = _error_line(proc)
    assert proc.returncode == 1
    assert f"Cloud SQL {cloud_sql_instance.connection_name} database shop refused the login" in line
    assert 'IAM service account authentication failed for user "someone-else@acme-analytics-prod.iam"' in line
    assert "cloudsql.iam_authentication=on" in line and "roles/cloudsql.instanceUser" in line


def test_an_admin_api_refusal_names_the_cloud_sql_client_role(shop, cloud_sql_instance, google_standins, tmp_path):
    cloud_sql_instance.denied = True
    proc = _extract(tmp_path, *_cloud_sql_args(cloud_sql_instance), env=google_standins.env())
    line = _error_line(proc)
    assert proc.returncode == 1
    assert "the Cloud SQL Admin API refused (403" in line and "roles/cloudsql.client" in line


# ----------------------------------------------------------------------------- nothing secret in the job


DATAFLOW = ["--runner=DataflowRunner", "--project=acme-analytics-prod", "--region=europe-west1",
            "--temp_location=gs://acme-dataflow-prod/temp", "--no_auth"]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--database_url", "postgresql://reader:example-pw@10.20.0.5:5432/shop"],
            "--database_url holds a password, which Dataflow shows in the job's pipeline options: drop it from "
            "the URL and pass --database_password_secret projects/<p>/secrets/<s>/versions/<v>",
        ),
        (
            ["--database_url", "postgresql://reader@10.20.0.5:5432/shop?password=example-pw"],
            "--database_url holds a password",
        ),
        (["--database_url_env", "SHOP_URL"], "Dataflow workers do not have your environment: pass --cloud_sql"),
        (["--database_url", "sqlite:///source.db"], "a file on this machine, which Dataflow workers cannot read"),
    ],
)
def test_off_the_local_runner_a_password_url_or_environment_is_refused(argv, message, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "beam_pipelines.extract_dims", *DATAFLOW, "--lake_root", "gs://acme-lake/ecommerce",
         *argv],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "SHOP_URL": "postgresql://x"},
    )  # fmt: skip
    line = _error_line(proc)
    assert proc.returncode == 2
    assert message in line
    assert "example-pw" not in proc.stderr + proc.stdout


def test_the_dataflow_job_holds_secret_names_never_their_values(google_standins, tmp_path, monkeypatch):
    """The offline Dataflow job (job JSON + every upload) names the secret; the launcher never reads it."""
    password = "pw-" + os.urandom(12).hex()
    google_standins.add_secret(PASSWORD_SECRET, password)
    for key, value in google_standins.env().items():  # a launcher read would succeed: it must not happen
        monkeypatch.setenv(key, value)
    for name in LOCAL_ENDPOINT_ENVS:  # other tests' emulators: a Dataflow job refuses them
        monkeypatch.delenv(name, raising=False)
    for argv in (
        ["--cloud_sql_instance", "acme-analytics-prod:europe-west1:shop", "--database_user", "reader",
         "--database_name", "shop", "--database_password_secret", PASSWORD_SECRET],
        ["--database_url", "postgresql://reader@10.20.0.5:5432/shop", "--database_password_secret", PASSWORD_SECRET],
        ["--cloud_sql_instance", "acme-analytics-prod:europe-west1:shop", "--database_user", PRINCIPAL,
         "--database_name", "shop"],
    ):  # fmt: skip
        workdir = tmp_path / str(len(list(tmp_path.iterdir())))
        job = describe(
            lambda p, o: extract_dims.build_pipeline(p, o.view_as(extract_dims.ExtractDimsOptions)),
            [*argv, "--lake_root=gs://acme-lake/ecommerce", f"--snapshot_ts={SNAPSHOT}"],
            workdir,
        )
        texts = [(workdir / "job.json").read_bytes(), *(path.read_bytes() for path in job.uploads.values())]
        assert not any(password.encode() in text for text in texts)
        options = job.options
        assert options.get("database_password_secret") in (PASSWORD_SECRET, None)
        assert not any("password" in str(v).lower() and "secret" not in k for k, v in options.items())
    assert not google_standins.requests_to(":access")


# ----------------------------------------------------------------------------- option checks


@pytest.mark.parametrize(
    ("login", "local", "message"),
    [
        (SqlLogin(), True, "no SQL source: pass --cloud_sql_instance"),
        (SqlLogin(database_url="sqlite:///a.db", cloud_sql_instance="p-1:europe-west1:i"), True, "pass one SQL source"),
        (SqlLogin(cloud_sql_instance="my-instance", database_user=PRINCIPAL, database_name="shop"), False,
         "--cloud_sql_instance must be the instance connection name project:region:instance"),
        (SqlLogin(cloud_sql_instance="acme-1:europe-west1:shop", database_user=PRINCIPAL), False,
         "--cloud_sql_instance needs --database_name"),
        (SqlLogin(cloud_sql_instance="acme-1:europe-west1:shop", database_user="reader", database_name="shop"), False,
         "--database_user reader is not an IAM principal"),
        (SqlLogin(database_url="postgresql://u@h/db", database_user="u"), True, "--database_user goes with"),
        (SqlLogin(database_url="postgresql://u@h/db", database_password_secret="shop-reader"), True,
         "--database_password_secret must look like projects/<p>/secrets/<s>/versions/<v>"),
        (SqlLogin(database_url="sqlite:///a.db", database_password_secret=PASSWORD_SECRET), True,
         "SQLite file has no password"),
        (SqlLogin(database_url="postgresql://u:pw@h/db", database_password_secret=PASSWORD_SECRET), True, "keep one"),
    ],
)  # fmt: skip
def test_a_login_that_cannot_work_is_refused_at_launch(login, local, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        login.check(local=local)


def test_a_password_in_a_local_url_is_allowed_and_never_printed():
    login = SqlLogin(database_url="postgresql://u:example-pw@127.0.0.1:1/db")
    login.check(local=True)
    assert "example-pw" not in login.where and "***" in login.where
