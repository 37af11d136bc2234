"""The `floor` scenario: the route-propagation latency ExaBGP alone imposes, the floor under bgpd's.

Two hosts as in the latency scenario (A 192.168.100.10 sends, B 192.168.100.11 receives, iBGP AS 64512),
but no bgpd and no kernel routes: each host runs ExaBGP exactly as bgpd starts it (`python -m
bgpd.exabgp.launch server CONF`, the environment of `bgpd.exabgp.confgen.environment()` with bgpd's
ExaBGP log level WARNING; `BGPD_EXABGP_UNPATCHED=1` for the unpatched run), with one neighbor configured
in the style of confgen.render, and `bench/floorhelper.py` as the API process in bgpd's place.

One sample: the harness hands `announce attributes next-hop A origin igp nlri 10.1.X.Y/32` (then
`withdraw attributes next-hop A nlri ...`, bgpd's command format) to A's helper over a unix socket; the
helper takes time.monotonic() right before writing it to ExaBGP's API pipe and reports that time back; B's
helper takes time.monotonic() when its read of ExaBGP's JSON event returns. Figure = B's time - A's time:
ExaBGP A reading and parsing the command, building and sending the UPDATE, the TCP hop, ExaBGP B parsing
it and writing the JSON event - what bgpd's latency includes between its write to ExaBGP and its read of
the event, and nothing of bgpd. The harness-to-helper hop is outside the figure (recorded apart).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from bgpd.exabgp import confgen

from .scenarios import PROBE, READY_TIMEOUT, Settings, latency_figures, percentile
from .topo import ASN, BenchError, Topology, cmdline

HELPER = str(Path(__file__).with_name("floorhelper.py"))
EXABGP_LOG_LEVEL = "WARNING"  # what bgpd passes unless its own log level is debug (bgpd/speaker.py)
SAMPLE_TIMEOUT = 10.0

Report = dict[str, Any]


# --------------------------------------------------------------------------------------------- config
def helper_command(role: str, socket_path: str) -> str:
    return " ".join(shlex.quote(p) for p in (sys.executable, HELPER, role, socket_path))


def exabgp_config(local: str, peer: str, role: str, socket_path: str) -> str:
    """One iBGP neighbor, exactly as confgen.render writes it for bgpd (same capabilities, API events), with
    the floor helper as the API process instead of bgpd's bridge."""
    session = confgen.Session(
        address=IPv4Address(peer),
        asn=ASN,
        # as a bgpd mesh: the node with the lower address waits for the other (bgpd/config.py)
        passive=IPv4Address(local) < IPv4Address(peer),
        description=f"floor {role} session {peer}",
    )
    ip = IPv4Address(local)
    speaker = confgen.Speaker(router_id=ip, local_address=ip, asn=ASN)
    return confgen.render(speaker, [session], socket_path, run=helper_command(role, socket_path))


def exabgp_env(address: str, patched: bool) -> dict[str, str]:
    """bgpd's ExaBGP environment (confgen.environment) for a speaker on `address`, port 179."""
    ip = IPv4Address(address)
    speaker = confgen.Speaker(router_id=ip, local_address=ip, asn=ASN)
    env = confgen.environment(speaker, EXABGP_LOG_LEVEL)
    env["BGPD_EXABGP_UNPATCHED"] = "0" if patched else "1"
    return env


def announce(next_hop: str, prefix: str) -> str:
    """bgpd's announcement (bgpd/exabgp/codec.py announce_lines, default attributes, every neighbor)."""
    return f"announce attributes next-hop {next_hop} origin igp nlri {prefix}"


def withdraw(next_hop: str, prefix: str) -> str:
    return f"withdraw attributes next-hop {next_hop} nlri {prefix}"


def parse_report(line: str) -> Report | None:
    """One line a helper wrote to the harness; None if it is not a report (an object with "ev" and, but
    for hello, a float "t")."""
    try:
        msg = json.loads(line)
    except ValueError:
        return None
    if not isinstance(msg, dict) or not isinstance(msg.get("ev"), str):
        return None
    if msg["ev"] != "hello":
        if not isinstance(msg.get("t"), int | float) or isinstance(msg.get("t"), bool):
            return None
        msg["t"] = float(msg["t"])
    if msg["ev"] == "update":
        msg["add"] = [str(p) for p in msg.get("add") or []]
        msg["del"] = [str(p) for p in msg.get("del") or []]
    return msg


def has(op: str, prefix: str) -> Callable[[Report], bool]:
    """Matches the receiver's report of an update announcing (op add) or withdrawing (op del) prefix."""
    return lambda r: r["ev"] == "update" and prefix in r["add" if op == "add" else "del"]


# --------------------------------------------------------------------------------------------- channel
class Link:
    """One helper's connection to the harness: newline-separated JSON reports."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        self.sock = sock
        self.name = name
        self._buf = b""
        self.pending: list[Report] = []

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.sock], [], [], max(timeout, 0.0))
        if not ready:
            return
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise BenchError(f"floor helper {self.name} closed its socket")
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            report = parse_report(line.decode("utf-8", "replace"))
            if report is not None:
                self.pending.append(report)

    def expect(self, match: Callable[[Report], bool], timeout: float, what: str) -> Report:
        """The first report for which match() is true (taken off the list); TimeoutError after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            for i, report in enumerate(self.pending):
                if match(report):
                    del self.pending[i]
                    return report
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} from {self.name}")
            self._read(left)

    def flush(self) -> None:
        """Drop every report received so far."""
        self._read(0.0)
        self.pending.clear()

    def command(self, line: str, timeout: float = SAMPLE_TIMEOUT) -> float:
        """Hand one API command to the sender helper; its time.monotonic() right before writing it to
        ExaBGP."""
        self.sock.sendall(line.encode() + b"\n")
        return float(self.expect(lambda r: r["ev"] == "sent" and r.get("cmd") == line, timeout, line)["t"])

    def close(self) -> None:
        self.sock.close()


def _accept(listener: socket.socket, topo: Topology, timeout: float) -> dict[str, Link]:
    """Both helpers' connections, by role, once each has said hello."""
    links: dict[str, Link] = {}
    deadline = time.monotonic() + timeout
    while len(links) < 2:
        topo.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"floor: helpers connected: {sorted(links) or 'none'} after {timeout:.0f}s")
        ready, _, _ = select.select([listener], [], [], 0.5)
        if not ready:
            continue
        conn, _ = listener.accept()
        link = Link(conn, "?")
        try:
            hello = link.expect(lambda r: r["ev"] == "hello", 10.0, "hello")
        except BaseException:
            conn.close()
            raise
        link.name = str(hello.get("role"))
        links[link.name] = link
    return links


def _wait(link: Link, topo: Topology, match: Callable[[Report], bool], timeout: float, what: str) -> Report:
    """link.expect in 1 s steps, failing early if an ExaBGP exits."""
    deadline = time.monotonic() + timeout
    while True:
        topo.check_alive()
        try:
            return link.expect(match, min(1.0, max(deadline - time.monotonic(), 0.0)), what)
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise BenchError(f"floor: no {what} within {timeout:.0f}s; logs in {topo.workdir}") from None


def _stop_helpers(pids: list[int]) -> None:
    """Helpers are ExaBGP's children: ExaBGP ends them and they die with it (PR_SET_PDEATHSIG); this is
    the belt to those braces, by pid, for helpers we know are ours."""
    for pid in pids:
        if HELPER in cmdline(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------------- the run
def run_floor(settings: Settings, rep: int, patched: bool) -> dict[str, Any]:
    name = "patched" if patched else "unpatched"
    topo = Topology(settings.workdir / f"floor-{name}-{rep}", f"floor-{name}-{rep}")
    sockdir = tempfile.mkdtemp(prefix="bgpdbench-floor-")  # short: a unix socket path has 108 bytes
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    links: dict[str, Link] = {}
    try:
        path = os.path.join(sockdir, "floor.sock")
        listener.bind(path)
        listener.listen(4)
        a = topo.host("hA", 10, workload_dev=False)
        b = topo.host("hB", 11, workload_dev=False)
        t0 = time.monotonic()
        for host, peer, role in ((b, a, "receiver"), (a, b, "sender")):
            conf = exabgp_config(host.address, peer.address, role, path)
            topo.start_exabgp(host, conf, exabgp_env(host.address, patched))
        links = _accept(listener, topo, 30.0)
        send, recv = links["sender"], links["receiver"]
        _wait(recv, topo, lambda r: r["ev"] == "state" and r["state"] == "up", READY_TIMEOUT, "session up")
        # probe: one route A -> B and its withdrawal, so the session is warm before measuring
        send.command(announce(a.address, PROBE))
        _wait(recv, topo, has("add", PROBE), 30.0, "probe route")
        ready = time.monotonic() - t0
        send.command(withdraw(a.address, PROBE))
        _wait(recv, topo, has("del", PROBE), 30.0, "probe withdrawal")
        rng = random.Random(rep)
        adds: list[float] = []
        dels: list[float] = []
        handoff: list[float] = []
        lost = 0
        for i in range(settings.latency_samples):
            prefix = f"10.1.{i // 200}.{i % 200 + 1}/32"
            for op, out in (("add", adds), ("del", dels)):
                time.sleep(rng.uniform(0.05, 0.15))  # off any timer's phase, as run_latency
                recv.flush()
                line = announce(a.address, prefix) if op == "add" else withdraw(a.address, prefix)
                t_bench = time.monotonic()
                t_sent = send.command(line)
                handoff.append((t_sent - t_bench) * 1000)
                try:
                    t_seen = recv.expect(has(op, prefix), SAMPLE_TIMEOUT, f"{op} {prefix}")["t"]
                except TimeoutError:
                    lost += 1
                    topo.check_alive()
                    continue
                out.append((t_seen - t_sent) * 1000)
        return {
            "patched": patched,
            **latency_figures(adds, dels, lost),
            "ready_s": ready,
            # harness -> sender helper (outside the figure): how late the helper's stamp is after ours
            "handoff_p50_ms": percentile(handoff, 50),
        }
    finally:
        for link in links.values():
            link.close()
        listener.close()
        helpers = [p for h in topo.hosts.values() for p in h.tree()[1:]]
        try:
            topo.close()
        finally:
            _stop_helpers(helpers)
            shutil.rmtree(sockdir, ignore_errors=True)
