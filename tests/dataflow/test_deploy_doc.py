"""docs/deploy.md: every command block says what it needs, and what can run offline does, here.

Each ```bash block opens with ``# needs a project`` (real Google Cloud resources) or
``# offline`` naming the test that runs it. The offline ones run: the Flex Template
metadata check (``PRINT_ONLY=1 dataflow/build_templates.sh``, ``gcloud ... --print-only``).
For the project-bound commands this page introduced or changed, ``--help`` proves the
command and every flag the page passes exist in the installed CLI (``gcloud logging
metrics create`` once failed on a missing ``--description``; ``twine`` was not installed).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_MD = REPO_ROOT / "docs" / "deploy.md"
MARKERS = ("# needs a project", "# offline")
UV = str(Path(sys.executable).with_name("uv"))
# command -> flags deploy.md passes to it (each is also looked up in the page itself).
HELP_CHECKS = {
    ("gcloud", "logging", "metrics", "create"): ["--config-from-file", "--description", "--log-filter", "--project"],
    ("gcloud", "alpha", "monitoring", "policies", "create"): ["--policy-from-file", "--notification-channels"],
    ("gcloud", "beta", "monitoring", "channels", "create"): ["--type", "--display-name", "--channel-labels"],
    ("gcloud", "composer", "environments", "create"): [
        "--image-version",
        "--service-account",
        "--triggerer-count",
        "--triggerer-cpu",
        "--triggerer-memory",
    ],
    ("gcloud", "storage", "rsync"): ["--recursive", "--exclude", "--delete-unmatched-destination-objects"],
    ("gcloud", "sql", "instances", "patch"): ["--database-flags", "--project"],
    ("gcloud", "sql", "users", "create"): ["--instance", "--type", "--project"],
}


def bash_blocks() -> list[str]:
    return [m.group(1) for m in re.finditer(r"^ *```bash\n(.*?)^ *```", DEPLOY_MD.read_text(), re.S | re.M)]


def gcloud_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"), "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}


def test_every_command_block_says_what_it_needs() -> None:
    blocks = bash_blocks()
    assert len(blocks) > 10
    for block in blocks:
        first = block.lstrip().splitlines()[0]
        assert first.startswith(MARKERS), f"mark this block with one of {MARKERS}:\n{block}"
        for named in re.findall(r"tests/[\w/]+\.py", first):
            assert (REPO_ROOT / named).exists(), named


def test_composer_gets_no_pip_package() -> None:
    # The image's preinstalled Beam stays: the jobs run in their Flex Template containers.
    text = DEPLOY_MD.read_text()
    assert "--update-pypi-package" not in text
    assert "setup_file" not in text[text.index("## 6. Cloud Composer") :]


def test_no_tool_the_venv_lacks() -> None:
    text = DEPLOY_MD.read_text()
    assert "twine" not in text.replace("no twine needed", "")
    assert shutil.which("uv") or Path(UV).exists()


@pytest.mark.integration
def test_flex_template_print_only_runs_offline(tmp_path: Path) -> None:
    env = {
        **gcloud_env(tmp_path),
        "PRINT_ONLY": "1",
        "PROJECT": "acme-analytics-prod",
        "REGION": "europe-west1",
        "BUCKET": "gs://acme-dataflow-prod",
        "VERSION": "test",
    }
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "dataflow" / "build_templates.sh")],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for job in ("extract_orders", "extract_dims", "hourly", "streaming"):
        assert f"ecommerce-{job.replace('_', '-')}:test" in result.stdout, job


@pytest.mark.integration
@pytest.mark.parametrize("command", sorted(HELP_CHECKS), ids=" ".join)
def test_project_commands_and_their_flags_exist(command: tuple[str, ...], tmp_path: Path) -> None:
    tool = UV if command[0] == "uv" else shutil.which("gcloud")
    assert tool, "the Google Cloud CLI (gcloud) is needed to check deploy.md's commands"
    result = subprocess.run(
        [tool, *command[1:], "--help"], capture_output=True, text=True, timeout=120, env=gcloud_env(tmp_path),
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    help_text = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
    page = DEPLOY_MD.read_text()
    assert " ".join(command[1:]) + " " in page, command
    for flag in HELP_CHECKS[command]:
        assert flag in help_text, (command, flag)
        assert flag in page, (command, flag)
