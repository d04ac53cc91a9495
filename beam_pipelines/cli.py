"""Command lines of the jobs and tools: help with defaults, typos refused, one-line errors.

Every entry point (the four Beam jobs, ``beam_pipelines.local``, ``publishers.simulator``,
``bigquery_schemas.tables``) goes through this module, so they all behave alike. It
imports nothing of the project, so every package may build its command line on it;
what runs checks before a job (:mod:`beam_pipelines.launch`, :mod:`beam_pipelines.preflight`)
sits above it.

* ``--help`` lists the command's own options with their defaults
  (:class:`HelpFormatter`; a help text that already names its default keeps it once),
  options first: usage, the options, then the description. A Beam job's help carries
  only the first paragraph of its module docstring and the docs page that holds its
  design notes (:data:`JOB_DOCS`); ``hourly --help`` was 111 lines with ~60 lines of
  notes before the first option.
* An unknown flag is refused with the closest known one
  (``error: unknown option --windw_start (did you mean --window_start?)``). Beam's
  ``PipelineOptions`` alone would accept it silently, so :func:`parse_job_options`
  checks argv against the job's options class plus every standard Beam option.
* Errors are one line on stderr, ``error: <what> ...`` saying what to do; the traceback
  is printed only with ``--verbose`` and is otherwise written to a log file named
  in that line.

Exit codes (:func:`beam_pipelines.launch.main` for the jobs, :func:`command_failed` for the
tools): 0 ok, 1 the run failed, 2 bad command line or option value (:class:`UsageError`),
3 the environment is not ready (:class:`PreflightError`), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import tempfile
import traceback
from collections.abc import Iterable, Sequence
from typing import Any

VERBOSE_FLAG = "--verbose"
EXIT_FAILED, EXIT_USAGE, EXIT_NOT_READY, EXIT_INTERRUPTED = 1, 2, 3, 130
BEAM_EPILOG = (
    "Standard Beam/Dataflow options are accepted too, e.g. --runner (default: a pinned local runner; "
    "DataflowRunner on Google Cloud), --project, --region, --temp_location, --staging_location, "
    "--job_name, --setup_file, --service_account_email, --experiments."
)
# Where each job's design notes live (inputs, steps, idempotency, conservation, how to run).
JOB_DOCS = {
    "beam_pipelines.streaming": "docs/streaming.md",
    "beam_pipelines.hourly": "docs/batch.md (section hourly)",
    "beam_pipelines.extract_orders": "docs/batch.md (section extract_orders)",
    "beam_pipelines.extract_dims": "docs/batch.md (section extract_dims)",
}


class UsageError(ValueError):
    """The command line itself is wrong (unknown flag, bad value): exit code 2."""


class PreflightError(RuntimeError):
    """The run cannot start in this environment; the message says which command fixes it: exit code 3.

    Raised by the checks of :mod:`beam_pipelines.preflight` (and a few commands' own);
    defined here, below every command line, so that each one maps it to its exit code.
    """


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions as written and appends ``(default: X)`` once.

    argparse's ``ArgumentDefaultsHelpFormatter`` appends the default even when the
    help text already says it, which printed every default twice in the simulator.
    No default (None, False for a switch) prints nothing.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or default is None
            or default is False
            or default == argparse.SUPPRESS
            or "default" in text.lower()
            or isinstance(action, argparse._HelpAction)
        ):
            return text
        return f"{text} (default: %(default)s)"


def closest(flag: str, known: Iterable[str], preferred: Iterable[str] = ()) -> str | None:
    """The known flag closest to ``flag`` (``preferred`` ones first), or None."""
    name = flag.split("=", 1)[0]
    for pool in (list(preferred), list(known)):
        match = difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
        if match:
            return match[0]
    return None


def unknown_flags_message(unknown: Sequence[str], known: Iterable[str], preferred: Iterable[str] = ()) -> str:
    """``unknown option --windw_start (did you mean --window_start?)`` for the first unknown flag."""
    known = list(known)
    # Values after an unknown flag are its value, not more mistakes; lone positionals are.
    unknown = [a for a in unknown if a.startswith("-")] or list(unknown)
    parts = []
    for arg in unknown:
        name = arg.split("=", 1)[0]
        if not name.startswith("-"):
            parts.append(f"unexpected argument {arg!r}")
            continue
        hint = closest(name, known, preferred)
        parts.append(f"unknown option {name}" + (f" (did you mean {hint}?)" if hint else ""))
    return "; ".join(parts)


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """Every long flag of ``parser`` and of its subcommands."""
    out: list[str] = []
    for action in parser._actions:
        out.extend(s for s in action.option_strings if s.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out.extend(_option_strings(sub))
    return out


class ArgumentParser(argparse.ArgumentParser):
    """argparse with :class:`HelpFormatter`, no abbreviations, and one-line errors that suggest a flag."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("formatter_class", HelpFormatter)
        # A prefix such as --window would otherwise silently mean --window_start.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def format_help(self) -> str:
        """argparse's help with the options first: usage, argument groups, description, epilog."""
        formatter = self._get_formatter()
        formatter.add_usage(self.usage, self._actions, self._mutually_exclusive_groups)
        for group in self._action_groups:
            formatter.start_section(group.title)
            formatter.add_text(group.description)
            formatter.add_arguments(group._group_actions)
            formatter.end_section()
        formatter.add_text(self.description)
        formatter.add_text(self.epilog)
        return formatter.format_help()

    def error(self, message: str):
        unknown = re.match(r"unrecognized arguments: (.*)", message)
        if unknown:
            message = unknown_flags_message(unknown.group(1).split(), _option_strings(self))
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def job_help_parser(options_cls: type, prog: str, doc: str | None) -> ArgumentParser:
    """The parser ``--help`` prints for a Beam job: its own options with defaults, then what the job
    is (the docstring's first paragraph), where its design notes are, and a note on Beam's options."""
    summary = (doc or "").strip().split("\n\n", 1)[0].replace("``", "")
    if prog in JOB_DOCS:
        summary += f"\n\nDesign notes (inputs, steps, idempotency, conservation, examples): {JOB_DOCS[prog]}."
    parser = ArgumentParser(
        prog=f"python -m {prog}", usage="%(prog)s [options]", description=summary, epilog=BEAM_EPILOG
    )
    options_cls._add_argparse_args(parser)
    parser.add_argument(VERBOSE_FLAG, action="store_true", help="print the full traceback of an error")
    return parser


def parse_job_options(argv: Sequence[str] | None, options_cls: type, prog: str, doc: str | None = None):
    """``PipelineOptions`` for a job; answers ``--help`` and refuses unknown flags.

    Raises:
      UsageError: a flag no options class knows (with the closest known one), or a
        value of the wrong type.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    argv = [a for a in (sys.argv[1:] if argv is None else argv) if a != VERBOSE_FLAG]
    if "-h" in argv or "--help" in argv:
        job_help_parser(options_cls, prog, doc).print_help()
        raise SystemExit(0)

    parsers: list[argparse.ArgumentParser] = []

    def capture(parser: argparse.ArgumentParser) -> None:
        # Beam's parser exits with a usage block on a bad value: make it raise instead.
        def error(message: str):
            raise UsageError(message)

        parser.error = error
        parsers.append(parser)

    # Beam builds one parser from every PipelineOptions subclass (its standard options
    # and our jobs'); add_extra_args_fn is its public hook to that parser. Checked on
    # empty options first: Beam would log "Discarding unparseable args" for a typo.
    PipelineOptions([]).get_all_options(add_extra_args_fn=capture)
    _, unknown = parsers[0].parse_known_args(argv)
    if unknown:
        own = _option_strings(job_help_parser(options_cls, prog, doc))
        raise UsageError(unknown_flags_message(unknown, _option_strings(parsers[0]), own))
    return PipelineOptions(argv)


def _last_error_line(exc: BaseException) -> str:
    """The innermost ``Type: message`` of an exception chain, including Beam's wrapped tracebacks."""
    while exc.__cause__ is not None or (exc.__context__ is not None and not exc.__suppress_context__):
        exc = exc.__cause__ or exc.__context__
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # Beam re-raises a DoFn's error with the worker traceback inside the message; the
    # last "SomeError: ..." line of it is the real cause.
    typed = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception|NotFound|Forbidden|Unavailable)\b.*:", ln)]
    line = typed[-1] if typed else (lines[0] if lines else type(exc).__name__)
    step = re.findall(r"\[while running '([^']+)'\]", text)
    if step:
        line += f" [step {step[-1]}]"
    return line if len(line) <= 400 else line[:397] + "..."


def failure_summary(job: str, exc: BaseException, resources: Iterable[str] = ()) -> str:
    """One line for a failed run, naming the resource (table, subscription, URL) it mentions."""
    chain_text = "\n".join(traceback.format_exception(exc))
    named = [r for r in resources if r and _mentions(chain_text, r)]
    urls = re.findall(r"https?://[\w.:/-]+", _last_error_line(exc))
    urls = [u for u in urls if not any(u.startswith(n) for n in named)]
    where = ", ".join(dict.fromkeys([*named, *urls]))
    return f"{job} failed: {_last_error_line(exc)}" + (f" (resource: {where})" if where else "")


def _mentions(text: str, resource: str) -> bool:
    # project:dataset.table is spelled project.dataset.table or dataset.table in API errors.
    spellings = {resource, resource.replace(":", "."), resource.split(":", 1)[-1], resource.rsplit("/", 1)[-1]}
    return any(s and len(s) > 3 and s in text for s in spellings)


def report_error(message: str, exc: BaseException | None, verbose: bool, prog: str) -> None:
    """Print ``error: message`` as one line; the traceback goes to stderr (verbose) or a log file."""
    if exc is not None and verbose:
        traceback.print_exception(exc, file=sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        return
    suffix = ""
    if exc is not None:
        with tempfile.NamedTemporaryFile("w", prefix=f"{prog.rsplit('.', 1)[-1]}-", suffix=".log", delete=False) as log:
            traceback.print_exception(exc, file=log)
        suffix = f" [traceback: {log.name}; or re-run with {VERBOSE_FLAG}]"
    print(f"error: {message}{suffix}", file=sys.stderr)


def command_failed(exc: BaseException, *, prog: str, resources: Iterable[str], verbose: bool) -> int:
    """Report a failed (non-Beam) command's error in one line and return its exit code."""
    if isinstance(exc, PreflightError):
        report_error(str(exc), None, verbose, prog)
        return EXIT_NOT_READY
    report_error(failure_summary(prog.rsplit(".", 1)[-1], exc, resources), exc, verbose, prog)
    return EXIT_FAILED


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain aligned text table for terminals."""
    if not rows:
        return "(no rows)"
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    line = "  ".join(c.ljust(widths[c]) for c in cols)
    body = ["  ".join(str(r[c]).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join([line, "  ".join("-" * widths[c] for c in cols), *body])
