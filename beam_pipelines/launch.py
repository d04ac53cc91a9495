"""Run a Beam job as a command line: parse, check, run, and turn the outcome into an exit code.

Each job's ``__main__`` calls :func:`main` with its ``run(argv)`` and options class. In
order: ``--help`` and unknown flags (:mod:`beam_pipelines.cli`), the refused local
running modes (:mod:`beam_pipelines.runners`), the option checks that need no service
(:func:`check_inputs`), then :func:`beam_pipelines.preflight.check_job` (stack, env line,
credentials, that the tables/subscription/URL exist), and only then the job.

It sits above what it checks (preflight, lake, runners), which sit above
:mod:`beam_pipelines.cli`; the exit codes are the ones ``cli`` documents.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from beam_pipelines import lake, preflight, runners
from beam_pipelines.cli import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_READY,
    EXIT_USAGE,
    VERBOSE_FLAG,
    PreflightError,
    failure_summary,
    parse_job_options,
    report_error,
)
from beam_pipelines.logs import configure_job_logging


def _is_input_error(exc: BaseException) -> bool:
    # A ValueError raised while launching (option checks) is bad input; one raised inside
    # a step carries Beam's "[while running ...]" marker and is a failed run.
    return isinstance(exc, ValueError) and "while running '" not in str(exc)


def check_inputs(job_options) -> None:
    """The option checks that need no service, so bad input is reported before a missing service.

    The job's own ``validate_job()`` when it has one, and the window bounds every
    windowed job takes (the jobs check them again, with their own rules, when wiring).
    """
    if hasattr(job_options, "validate_job"):
        job_options.validate_job()
    start, end = getattr(job_options, "window_start", None), getattr(job_options, "window_end", None)
    if start and end:
        lake.parse_window(start, end)


def main(
    entry: Callable[[list[str]], Any],
    options_cls: type,
    prog: str,
    doc: str | None = None,
    argv: Sequence[str] | None = None,
) -> int:
    """Run a Beam job's ``entry(argv)`` as a command line; return its exit code.

    Parses argv first (help, unknown flags), runs :func:`beam_pipelines.preflight.check_job`
    (stack, env line, credentials, that the tables/subscription/URL exist), then ``entry``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = VERBOSE_FLAG in argv
    argv = [a for a in argv if a != VERBOSE_FLAG]
    configure_job_logging(verbose=verbose)
    job = prog.rsplit(".", 1)[-1]
    resources: list[str] = []
    try:
        options = parse_job_options(argv, options_cls, prog, doc)
        runners.refuse_unsafe_running_mode(options)
        check_inputs(options.view_as(options_cls))
        resources = preflight.job_resources(options.view_as(options_cls))
        preflight.check_job(options, options_cls)
        entry(argv)
    except KeyboardInterrupt:
        print(f"{job}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except PreflightError as exc:
        report_error(str(exc), exc if verbose else None, verbose, prog)
        return EXIT_NOT_READY
    except Exception as exc:
        if _is_input_error(exc):
            message = str(exc).strip().splitlines()[0]
            if "--help" not in message:
                message += f" (see python -m {prog} --help)"
            report_error(message, exc if verbose else None, verbose, prog)
            return EXIT_USAGE
        report_error(failure_summary(job, exc, resources), exc, verbose, prog)
        return EXIT_FAILED
    return 0
