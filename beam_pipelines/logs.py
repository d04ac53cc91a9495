"""Logging for the jobs' command lines: our progress at INFO, Beam's internals at WARNING.

Beam logs whole table schemas, type-hint conversions and state-cache sizes at INFO,
which buries what a person running a job wants to see. Without ``verbose`` the
tracebacks those libraries log at ERROR while a run fails are left out as well:
:mod:`beam_pipelines.cli` reports the failure as one line and keeps the traceback
in a log file.
"""

from __future__ import annotations

import logging

QUIET_LOGGERS = ("apache_beam", "google", "urllib3", "httpx")


class _NoLibraryTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        library = record.name.split(".", 1)[0] in {n.split(".", 1)[0] for n in QUIET_LOGGERS}
        return not (library and record.levelno >= logging.ERROR)


def configure_job_logging(level: int = logging.INFO, verbose: bool = True) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    if not verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_NoLibraryTracebacks())
