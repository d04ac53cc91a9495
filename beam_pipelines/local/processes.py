"""Start, probe and stop the background processes of the local stack."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"


class StackError(RuntimeError):
    """A local service is missing, crashed or did not come up; the message (one line) says how to fix it."""


def free_port() -> int:
    """A TCP port that is free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    """True when ``port`` can be bound on the loopback interface now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the servers bind: connections of a killed server left in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when ``url`` answers with any HTTP status below 500."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback URL we built
            return resp.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, urllib.error.URLError):
        return False


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@dataclass
class RunningProcess:
    name: str
    pid: int
    log_path: Path


def start_process(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    ready: Callable[[], bool] | None = None,
    timeout: float = 60.0,
    hint: str = "",
) -> RunningProcess:
    """Start ``argv`` in its own process group and wait until ``ready()`` is true.

    Raises:
      StackError: the process exited early or did not become ready in time; the
        message (one line) carries the last line of its log, the log's path and ``hint``.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child, closed below
    try:
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise StackError(f"{name}: cannot run {argv[0]!r} ({exc}). {hint}".strip()) from None
    finally:
        log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise StackError(f"{name} exited with code {code} during start-up{last_line(log_path)}. {hint}".rstrip())
        if ready is None or ready():
            return RunningProcess(name, proc.pid, log_path)
        time.sleep(0.2)
    stop_process(proc.pid)
    raise StackError(f"{name} did not become ready in {timeout:.0f} s{last_line(log_path)}. {hint}".rstrip())


def _group_alive(pgid: int) -> bool:
    """True while any process of the group ``pgid`` exists (zombies aside)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(0) also succeeds for zombies; the group is gone once its leader is reaped
    # and no other member is left.
    return pid_alive(pgid) or _other_members(pgid)


def _other_members(pgid: int) -> bool:
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == pgid:
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def stop_process(pid: int | None, timeout: float = 10.0) -> None:
    """SIGTERM the process group of ``pid``, then SIGKILL whatever of the group is left.

    Waits for the whole group, not just its leader: the Pub/Sub emulator's launcher
    is a shell script whose Java child would otherwise outlive it.
    """
    if not pid:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Reap the leader if it is our child; otherwise just poll for the group's exit.
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not _group_alive(pid):
                return
            time.sleep(0.1)


def last_line(path: Path) -> str:
    """``: <the log's last non-empty line> (log: <path>)`` for a one-line error, or ``" (log: <path>)"``."""
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    last = lines[-1] if lines else ""
    last = last if len(last) <= 200 else last[:197] + "..."
    return (f": {last}" if last else "") + f" (log: {path})"
