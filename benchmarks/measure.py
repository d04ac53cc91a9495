"""Run one benchmark case in its own process and collect what it measured.

Each case runs in a fresh interpreter so that its peak RSS (``ru_maxrss``) is its
own and not the high-water mark of an earlier case. The child measures CPU time
(``time.process_time``: user + system of all its threads) and wall time around the
work only, excluding interpreter start-up and imports, and prints one JSON line
prefixed with :data:`RESULT_PREFIX`; the parent adds the child's whole-process
figures from ``wait4``.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

RESULT_PREFIX = "BENCH_RESULT "


@contextmanager
def measured(result: dict[str, Any]):
    """Fill ``result`` with wall_s, cpu_s around the block and the process's peak RSS."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    yield result
    result["wall_s"] = time.perf_counter() - wall0
    result["cpu_s"] = time.process_time() - cpu0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # The whole process's CPU so far, interpreter start-up and imports included (to compare
    # with a command's CPU as wait4 reports it).
    result["process_cpu_s"] = usage.ru_utime + usage.ru_stime
    result["peak_rss_mib"] = peak_rss_mib(usage)


def peak_rss_mib(usage=None) -> float:
    """This process's peak RSS: ``VmHWM`` where /proc has it, else ``ru_maxrss``.

    Not ``ru_maxrss`` first: Linux folds into it the peak of the memory the process had
    before its exec, i.e. the forking parent's size, so a case started by a parent that
    had grown (after comparing outputs in DuckDB: ~900 MiB) reported the parent's peak
    (measured: the chain at 1M 479 MiB in the first repeat, 910 and 921 after).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    usage = usage or resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_maxrss / 1024  # KiB on Linux


def emit(result: dict[str, Any]) -> None:
    """Print the child's result line for :func:`run_case`."""
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)


def run_case(argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 3600) -> dict[str, Any]:
    """Run ``python argv...`` and return its result dict plus whole-process CPU and RSS.

    Raises:
      RuntimeError: the child failed or printed no result line (its stderr tail is included).
    """
    child_env = dict(os.environ, NO_GCE_CHECK="true", **(env or {}))
    proc = subprocess.Popen(
        [sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise RuntimeError(f"benchmark case timed out after {timeout}s: {argv}") from None
    # communicate() has reaped the child; its rusage is folded into RUSAGE_CHILDREN,
    # so the per-child figures come from the child's own report.
    lines = [line for line in out.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark case failed (exit {proc.returncode}): {argv}\n{err[-3000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> str:
    """``min-max`` of a series, to show how noisy the machine was."""
    return f"{min(values):,.2f}-{max(values):,.2f}" if values else "-"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) >= 100 else f"{v:,.2f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_description() -> dict[str, Any]:
    """CPU model, core count, memory and load when the run started (for the report)."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import platform

    import apache_beam

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "beam": apache_beam.__version__,
    }


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0
