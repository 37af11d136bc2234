"""The helper process ExaBGP starts (`process bgpd { run ... }`): hands ExaBGP's pipes to bgpd.

ExaBGP writes events to this helper's stdin and reads commands from its stdout. The helper connects to
bgpd's unix socket, passes both file descriptors over it (SCM_RIGHTS), closes its own copies and waits.
From then on bgpd reads and writes ExaBGP's pipes directly: no process copies the bytes in between (an
earlier version relayed them, which cost two process wake-ups per message and direction).

The helper stays alive because ExaBGP treats its exit as the API going away, and dies with ExaBGP
(PR_SET_PDEATHSIG). ExaBGP itself dies with bgpd (the supervisor sets the same on it). Once the pipes are
handed over it has nothing left to do but wait, so it replaces itself (execv) with coreutils' `sleep
infinity`: ~1 MiB resident instead of a Python interpreter's ~12 MiB. Linux keeps the parent-death
signal across execve of a program that gains no privileges (no set-user-ID, set-group-ID or file
capabilities: `sleep`); a `sleep` that is not coreutils' (busybox's may not know `infinity`), or none, and
the helper waits in Python instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import sys
import time

CONNECT_DEADLINE = 10.0
PR_SET_PDEATHSIG = 1
HELLO = b"bgpd-exabgp-pipes v1"


def connect(path: str) -> socket.socket:
    """A unix stream socket connected to `path`, retried until CONNECT_DEADLINE (the listener may be late)."""
    deadline = time.monotonic() + CONNECT_DEADLINE
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def die_with_parent() -> bool:
    """SIGTERM this process when its parent (ExaBGP) dies; False if the parent is already gone."""
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    return os.getppid() == parent  # else ExaBGP died before the prctl took effect


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bgpd.exabgp.bridge SOCKET", file=sys.stderr)
        return 2
    if not die_with_parent():
        return 0
    try:
        sock = connect(argv[1])
        socket.send_fds(sock, [HELLO], [sys.stdin.fileno(), sys.stdout.fileno()])
        sock.close()
    except OSError as exc:
        print(f"bgpd bridge: cannot hand the pipes to {argv[1]}: {exc}", file=sys.stderr)
        return 1
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)  # bgpd holds the pipes now; drop our copies so EOF travels when either side goes
    os.dup2(devnull, 1)
    os.close(devnull)
    sleeper = coreutils_sleep()
    if sleeper is not None:
        with contextlib.suppress(OSError):  # cannot exec it: wait in Python
            os.execv(sleeper, [sleeper, "infinity"])  # keeps PR_SET_PDEATHSIG (see the docstring)
    while True:
        signal.pause()


def coreutils_sleep() -> str | None:
    """The path of coreutils' `sleep` on PATH (a file, or coreutils' multi-call binary), else None."""
    found = shutil.which("sleep")
    if found is None:
        return None
    real = os.path.basename(os.path.realpath(found))
    return found if real in ("sleep", "coreutils") else None


if __name__ == "__main__":
    sys.exit(main(sys.argv))
