"""Logging for the jobs' command lines: our progress at INFO, Beam's internals at WARNING.

Beam logs whole table schemas, type-hint conversions and state-cache sizes at INFO,
which buries what a person running a job wants to see.
"""

from __future__ import annotations

import logging

QUIET_LOGGERS = ("apache_beam", "google", "urllib3", "httpx")


def configure_job_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
