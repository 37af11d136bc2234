"""Calico's keepaliveTime (`bgp.peers[].keepalive_time`, BIRD's `keepalive time`): bgpd sends a peer a
KEEPALIVE every keepalive_time seconds, scaled as BIRD scales it when the peer offers a lower hold time
(keepalive x negotiated / offered hold time), and every hold time / 3 (ExaBGP's own) without one; a reload
that changes only keepalive times applies them at once and resets no session.

The peers are raw BGP speakers (`speak` below, bench/rawbgp.py's wire format) in their own hosts'
namespaces, which log the arrival of every KEEPALIVE on the machine's monotonic clock; intervals are measured
over several KEEPALIVEs, with deadlines. ExaBGP's send timer counts whole seconds of wall time and its
reactor wakes at least every 100 ms, so an interval is within a few tenths of a second of its value."""

from __future__ import annotations

import itertools
import select
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench import rawbgp
from bgpd.lab.netns import Process, wait_for
from tests.e2e.conftest import ASN, Host, Underlay

pytestmark = pytest.mark.e2e

CONVERGE = 30.0
ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 0.4  # seconds, either way, for one interval
INTERVALS = 3  # measured per peer


def speak(address: str, asn: int, router_id: str, hold: int) -> None:
    """The raw peer: connects to bgpd at `address` (retrying while it is not listening yet), offers `hold`,
    answers bgpd's OPEN, sends End-of-RIB once established and a KEEPALIVE every second. One line per
    event on stdout: `open HOLD` (bgpd's OPEN and its hold time), `established`, `keepalive T` (T:
    time.monotonic() at arrival), `notification CODE SUBCODE`, `closed WHY`."""

    def emit(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    deadline = time.monotonic() + 60
    while True:
        try:
            sock = socket.create_connection((address, 179), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    sock.sendall(rawbgp.open_message(asn, router_id, hold))
    received, established, next_keepalive = bytearray(), False, 0.0
    while True:
        if established and time.monotonic() >= next_keepalive:
            sock.sendall(rawbgp.keepalive())
            next_keepalive = time.monotonic() + 1.0
        if not select.select([sock], [], [], 0.2)[0]:
            continue
        chunk = sock.recv(65536)
        if not chunk:
            emit("closed by bgpd")
            return
        received += chunk
        while len(received) >= 19:
            length, kind = struct.unpack("!HB", received[16:19])
            if len(received) < length:
                break
            body, arrived = bytes(received[19:length]), time.monotonic()
            del received[:length]
            if kind == rawbgp.OPEN:
                emit(f"open {struct.unpack('!H', body[3:5])[0]}")
                sock.sendall(rawbgp.keepalive())  # RFC 4271 §8.2.2: OPEN accepted
            elif kind == rawbgp.KEEPALIVE:
                if not established:
                    established = True
                    emit("established")
                    sock.sendall(rawbgp.message(rawbgp.UPDATE, rawbgp.update()))  # End-of-RIB
                emit(f"keepalive {arrived:.6f}")
            elif kind == rawbgp.NOTIFICATION:
                emit(f"notification {body[0]} {body[1]}")


class Peer:
    """`speak` running in `host`'s namespace, connected to bgpd on `bgpd_host`, offering `hold`."""

    def __init__(self, host: Host, bgpd_host: Host, hold: int) -> None:
        self.host, self.log = host, host.workdir / "raw.log"
        code = (
            f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "from tests.e2e.test_keepalive import speak\n"
            f"speak({bgpd_host.address!r}, {ASN}, {host.address!r}, {hold})\n"
        )
        self.process: Process = host.fabric.spawn(
            f"raw-{host.name}", host.ns, [sys.executable, "-c", code], str(self.log)
        )

    def events(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def keepalives(self, after: float) -> list[float]:
        times = (float(e.split()[1]) for e in self.events() if e.startswith("keepalive "))
        return [t for t in times if t > after]


def _intervals(peers: dict[str, Peer], count: int = INTERVALS) -> dict[str, list[float]]:
    """From now on: the first `count` intervals between KEEPALIVEs each peer receives (the first
    KEEPALIVE after now starts the first interval)."""
    after = time.monotonic()
    slowest = 3.0 * (count + 1) + 10
    for name, peer in peers.items():
        wait_for(
            lambda p=peer: len(p.keepalives(after)) > count, slowest, f"{count + 1} keepalives at {name}"
        )
    out = {}
    for name, peer in peers.items():
        times = peer.keepalives(after)[: count + 1]
        out[name] = [round(b - a, 3) for a, b in itertools.pairwise(times)]
    return out


def _every(intervals: list[float], seconds: float) -> bool:
    return all(abs(i - seconds) <= TOLERANCE for i in intervals)


def _peers_by_address(host: Host) -> dict[str, Any]:
    return {p["address"]: p for p in host.ctl_json("show", "peers")}


def _setup(
    underlay: Underlay, peers: list[dict[str, Any]], holds: dict[str, int]
) -> tuple[Host, dict[str, Peer]]:
    """bgpd on h1 (hold time 9), passive towards raw peers on the hosts named in `holds` (each offering
    its hold time), configured with `peers` (their addresses filled in by host name)."""
    bgpd_host = underlay.host("h1", 11)
    hosts = {name: underlay.host(name, octet) for octet, name in enumerate(holds, start=20)}
    configured = [{**p, "address": hosts[p["address"]].address, "asn": ASN, "passive": True} for p in peers]
    bgpd_host.write_config(bgp={"hold_time": 9, "peers": configured})
    bgpd_host.start_bgpd()
    raw = {name: Peer(host, bgpd_host, holds[name]) for name, host in hosts.items()}
    for name, peer in raw.items():
        wait_for(lambda p=peer: "established" in p.events(), CONVERGE, f"the session with {name}")
    wait_for(
        lambda: all(p["state"] == "up" for p in _peers_by_address(bgpd_host).values()),
        CONVERGE,
        "bgpd's view of the sessions",
    )
    return bgpd_host, raw


def test_keepalives_go_every_keepalive_time_scaled_as_bird_does(underlay: Underlay) -> None:
    """r1: keepalive_time 1 with hold time 9: every second (ExaBGP alone: every 3). r2: keepalive_time 4
    with hold time 30, the peer offering 15: every 4 x 15 / 30 = 2 s, as BIRD would (not 4, nor ExaBGP's
    15 / 3 = 5). r3, nothing configured: hold time 9 / 3 = 3 s, as before."""
    bgpd_host, raw = _setup(
        underlay,
        [
            {"address": "r1", "keepalive_time": 1},
            {"address": "r2", "hold_time": 30, "keepalive_time": 4},
            {"address": "r3"},
        ],
        {"r1": 9, "r2": 15, "r3": 9},
    )
    assert [[e for e in p.events() if e.startswith("open ")] for p in raw.values()] == [
        ["open 9"],
        ["open 30"],
        ["open 9"],
    ]
    measured = _intervals(raw)
    assert _every(measured["r1"], 1.0), measured
    assert _every(measured["r2"], 2.0), measured
    assert _every(measured["r3"], 3.0), measured
    written = (bgpd_host.workdir / "run" / "exabgp.keepalive.json").read_text()
    assert written.strip() == f'{{"{raw["r1"].host.address}": 1, "{raw["r2"].host.address}": 4}}'


def test_a_reload_of_keepalive_times_applies_at_once_without_a_reset(underlay: Underlay) -> None:
    """A reload that only moves keepalive_time from r1 (1 s; then hold time / 3 = 3 s) to r3 (3 s; then
    1 s): the new intervals within a few seconds, on the same sessions (no NOTIFICATION, no new OPEN,
    bgpd's flap counters and up-since times unchanged)."""
    bgpd_host, raw = _setup(
        underlay, [{"address": "r1", "keepalive_time": 1}, {"address": "r3"}], {"r1": 9, "r3": 9}
    )
    before = _intervals(raw)
    assert _every(before["r1"], 1.0) and _every(before["r3"], 3.0), before
    sessions = _peers_by_address(bgpd_host)
    peers = bgpd_host.config["bgp"]["peers"]
    bgpd_host.write_config(
        bgp={
            "hold_time": 9,
            "peers": [{**peers[0], "keepalive_time": None}, {**peers[1], "keepalive_time": 1}],
        }
    )
    result = bgpd_host.ctl("reload")
    assert result.returncode == 0 and "reloaded" in result.stdout, result.stdout + result.stderr
    # at once: the next KEEPALIVE to r3 within 1 s (it was due up to 3 s later), then every second
    reloaded = time.monotonic()
    wait_for(lambda: bool(raw["r3"].keepalives(reloaded)), 2.0, "r3's next keepalive")
    after = _intervals(raw)
    assert _every(after["r1"], 3.0) and _every(after["r3"], 1.0), after
    for name, peer in raw.items():
        events = peer.events()
        assert events.count("established") == 1 and len([e for e in events if e.startswith("open ")]) == 1
        assert not [e for e in events if e.startswith(("closed", "notification"))], (name, events)
    now = _peers_by_address(bgpd_host)
    for address, session in sessions.items():
        assert (now[address]["state"], now[address]["since"], now[address]["flaps"]) == (
            "up",
            session["since"],
            0,
        ), (session, now[address])
