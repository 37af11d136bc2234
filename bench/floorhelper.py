"""ExaBGP's API helper in the `floor` scenario (bench/floor.py): the stand-in for bgpd at both ends.

ExaBGP starts it from its `process floor { run PYTHON floorhelper.py ROLE SOCKET; }` stanza, with ExaBGP's
API on its stdin (events) and stdout (commands). It connects to the harness's unix socket SOCKET, says
``{"ev": "hello", "role": ROLE}`` and then:

- ``sender``: every line the harness writes to the socket is one ExaBGP API command. The helper takes
  ``time.monotonic()`` right before writing the line to its stdout (ExaBGP's API input; one unbuffered
  ``write``, so nothing waits in a buffer) and answers ``{"ev": "sent", "t": T, "cmd": LINE}``. What
  ExaBGP writes to its stdin (neighbor changes) is read and dropped.
- ``receiver``: reads ExaBGP's JSON events from stdin. ``T = time.monotonic()`` is taken as soon as a
  read returns, before any parsing, and every event line of that read is reported with it:
  ``{"ev": "state", "t": T, "peer": P, "state": S}``, ``{"ev": "update", "t": T, "peer": P, "add":
  [PREFIX...], "del": [PREFIX...]}``, ``{"ev": "eor", "t": T, "peer": P}``.

``time.monotonic()`` is CLOCK_MONOTONIC, one clock for every namespace of the machine, so the harness
subtracts the sender's T (host A) from the receiver's (host B). It needs only the standard library and
bgpd's bridge (for connecting to the harness). The helper exits
when ExaBGP closes its stdin or the harness its socket, and dies with ExaBGP (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import time
from typing import Any

from bgpd.exabgp.bridge import connect, die_with_parent


def _routes(routes: Any) -> list[str]:
    """Prefixes of one family's route list: ExaBGP 5 writes ``[{"nlri": "10.1.0.1/32"}, ...]``."""
    if not isinstance(routes, list):
        return []
    return [str(r.get("nlri")) if isinstance(r, dict) else str(r) for r in routes]


def event_report(line: str, t: float) -> dict[str, Any] | None:
    """What the receiver reports for one line ExaBGP wrote (encoder json, API 5.0.0); None to skip it."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        msg = json.loads(line)
    except ValueError:
        return None
    if not isinstance(msg, dict):
        return None
    neighbor = msg.get("neighbor")
    if not isinstance(neighbor, dict):
        return None
    address = neighbor.get("address")
    peer = str(address.get("peer", "")) if isinstance(address, dict) else ""
    kind = msg.get("type")
    if kind == "state":
        return {"ev": "state", "t": t, "peer": peer, "state": str(neighbor.get("state", ""))}
    if kind != "update":
        return None
    message = neighbor.get("message")
    if not isinstance(message, dict):
        return None
    if "eor" in message:
        return {"ev": "eor", "t": t, "peer": peer}
    update = message.get("update")
    if not isinstance(update, dict):
        return None
    added: list[str] = []
    announce = update.get("announce")
    if isinstance(announce, dict):
        for by_next_hop in announce.values():
            if isinstance(by_next_hop, dict):
                for routes in by_next_hop.values():
                    added += _routes(routes)
    deleted: list[str] = []
    withdraw = update.get("withdraw")
    if isinstance(withdraw, dict):
        for routes in withdraw.values():
            deleted += _routes(routes)
    return {"ev": "update", "t": t, "peer": peer, "add": added, "del": deleted}


def _send(sock: socket.socket, report: dict[str, Any]) -> None:
    sock.sendall(json.dumps(report).encode() + b"\n")


def sender(sock: socket.socket) -> int:
    buf = b""
    while True:
        ready, _, _ = select.select([sock.fileno(), 0], [], [])
        if 0 in ready and not os.read(0, 65536):
            return 0  # ExaBGP went away
        if sock.fileno() in ready:
            chunk = sock.recv(65536)
            if not chunk:
                return 0  # the harness went away
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                t = time.monotonic()
                os.write(1, line + b"\n")
                _send(sock, {"ev": "sent", "t": t, "cmd": line.decode()})


def receiver(sock: socket.socket) -> int:
    buf = b""
    while True:
        chunk = os.read(0, 1 << 20)
        t = time.monotonic()
        if not chunk:
            return 0
        buf += chunk
        *lines, buf = buf.split(b"\n")
        reports = [r for r in (event_report(x.decode("utf-8", "replace"), t) for x in lines) if r]
        if reports:
            sock.sendall(b"".join(json.dumps(r).encode() + b"\n" for r in reports))


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("sender", "receiver"):
        print("usage: floorhelper.py sender|receiver SOCKET", file=sys.stderr)
        return 2
    if not die_with_parent():
        return 0
    role = argv[1]
    try:
        sock = connect(argv[2])
        _send(sock, {"ev": "hello", "role": role, "pid": os.getpid()})
        return sender(sock) if role == "sender" else receiver(sock)
    except OSError as exc:
        print(f"floorhelper {role}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
