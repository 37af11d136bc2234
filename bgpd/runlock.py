"""One bgpd per runtime directory: an exclusive lock on `RUNTIME_DIR/bgpd.pid` held for the daemon's life.

Two daemons pointed at the same `runtime.dir` would overwrite each other's ExaBGP config, API socket and
log, and their sessions would never come up. The second one refuses to start instead, naming the first's
pid. The lock is the kernel's (`flock`): it goes with the process, also after `kill -9`, so a stale pid
file never blocks a start.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

PID_FILE = "bgpd.pid"


class AlreadyRunning(Exception):
    """Another process holds the runtime directory; the message is the one line to print."""


def lock_runtime_dir(runtime_dir: str) -> int:
    """Take the runtime directory for this process (creating it if needed); the lock's file descriptor,
    to keep open for the daemon's life. AlreadyRunning if another process holds it; OSError if the
    directory or the pid file cannot be made."""
    directory = Path(runtime_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / PID_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _pid_in(fd)
        os.close(fd)
        raise AlreadyRunning(
            f"another bgpd (pid {pid}) runs with runtime.dir {directory}; stop it or give this one "
            "another runtime.dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def holder(runtime_dir: str) -> str | None:
    """The pid (as written) of the bgpd that holds `runtime_dir` now, or None when none does. Reads only:
    the pid file is neither created nor locked for longer than the test."""
    try:
        fd = os.open(Path(runtime_dir) / PID_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _pid_in(fd)
    except OSError:
        return None
    finally:
        os.close(fd)  # also releases the shared lock, when it was taken
    return None


def _pid_in(fd: int) -> str:
    return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
