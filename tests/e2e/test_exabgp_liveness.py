"""Issue 14: a hung ExaBGP child (SIGSTOP: it exists but answers nothing) is found by bgpd's liveness probe
on the API channel, killed by pid and restarted; bgpd replays its table, the session comes back, and
neither host's kernel loses a route meanwhile (`ip monitor route` runs on both hosts all along).

The peer's hold timer (60 s, so it hears the hung host's last KEEPALIVE at most 20 s before the stop) runs
longer than bgpd needs to find the hang (at most `PROBE_INTERVAL` + `HUNG_AFTER` + `CHECK_INTERVAL`, 23 s):
the peer still holds the session when the hung ExaBGP is killed, sees its TCP connection close without a
NOTIFICATION and keeps the hung host's routes as a graceful restart helper until they are re-sent. (With a
shorter hold time the peer's hold timer expires first: it sends a NOTIFICATION and drops the hung host's
routes at once, RFC 4724 §4.2.)
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgpd.exabgp import liveness
from bgpd.lab.netns import wait_for
from tests.e2e.conftest import Host, Underlay, gone

pytestmark = pytest.mark.e2e

CONVERGE = 30.0
DETECT = liveness.PROBE_INTERVAL + liveness.HUNG_AFTER + liveness.CHECK_INTERVAL
FROM_H0, FROM_H1, LATER = "10.20.1.0/26", "10.20.2.0/26", "10.20.3.0/26"
MARKER = "10.99.0.0/24"  # a static route: once `ip monitor` printed it, it is listening


def _pair(underlay: Underlay) -> tuple[Host, Host]:
    h0, h1 = underlay.host("h0", 10), underlay.host("h1", 11)
    nodes = underlay.mesh_nodes()
    for host in (h0, h1):
        mesh = {"enabled": True, "nodes": nodes}
        host.write_config(bgp={"hold_time": 60, "graceful_restart": 60, "mesh": mesh})
        host.start_bgpd()
    return h0, h1


def _exabgp_pid(host: Host) -> int | None:
    exabgp = host.ctl_json("show", "status")["exabgp"]
    return int(exabgp["pid"]) if exabgp["alive"] and exabgp["attached"] else None


@contextlib.contextmanager
def _route_monitor(host: Host) -> Iterator[Path]:
    """`ip monitor route` in `host`'s namespace, its output in a file, until the block ends."""
    out = host.workdir / "ip-monitor.txt"
    with open(out, "wb") as sink:
        proc = subprocess.Popen(["ip", "-n", host.ns, "monitor", "route"], stdout=sink, stderr=sink)

    def listening() -> bool:  # `ip monitor` prints the marker once it listens: add it again until then
        if MARKER in out.read_text():
            return True
        host.ip("route", "del", MARKER, "dev", "lo", "proto", "static", check=False)
        host.ip("route", "add", MARKER, "dev", "lo", "proto", "static")
        return False

    try:
        wait_for(listening, CONVERGE, f"ip monitor listening on {host.name}")
        yield out
    finally:
        proc.terminate()
        proc.wait(10)


def _deleted(monitor: Path, prefix: str) -> list[str]:
    return [line for line in monitor.read_text().splitlines() if line.startswith(f"Deleted {prefix}")]


def test_stopped_exabgp_is_found_hung_killed_and_restarted_routes_kept(underlay: Underlay) -> None:
    h0, h1 = _pair(underlay)
    h0.add_block(FROM_H0)
    h1.add_block(FROM_H1)
    wait_for(lambda: FROM_H0 in h1.bird_routes(), CONVERGE, "h0's block on h1")
    wait_for(lambda: FROM_H1 in h0.bird_routes(), CONVERGE, "h1's block on h0")
    pid_file = Path(h1.config["runtime"]["dir"]) / "exabgp.pid"
    old = _exabgp_pid(h1)
    assert old is not None and old == int(pid_file.read_text())
    restarts = h1.ctl_json("show", "status")["exabgp"]["restarts"]

    with _route_monitor(h0) as on_h0, _route_monitor(h1) as on_h1:
        os.kill(old, signal.SIGSTOP)
        try:
            wait_for(lambda: _exabgp_pid(h1) not in (None, old), DETECT + CONVERGE, "a new ExaBGP on h1")
            wait_for(lambda: gone(old), CONVERGE, "the stopped ExaBGP gone")
        finally:
            if not gone(old):  # the test failed: end what it stopped (by pid), not leaving it stopped
                with contextlib.suppress(ProcessLookupError):
                    os.kill(old, signal.SIGKILL)
                    os.kill(old, signal.SIGCONT)
        # the new ExaBGP got bgpd's table (h0 has h1's block as fresh again) and carries new routes
        h0.add_block(LATER)
        wait_for(lambda: LATER in h1.bird_routes(), CONVERGE, "a new block of h0 on h1")
        wait_for(lambda: h0.ctl_json("show", "peers")[0]["stale_routes"] == 0, CONVERGE, "h1's routes fresh")
        assert not _deleted(on_h1, FROM_H0), "h1's kernel lost h0's route while its ExaBGP was replaced"
        assert not _deleted(on_h0, FROM_H1), "h0's kernel lost h1's route while h1's ExaBGP was replaced"
    assert h1.bird_routes()[FROM_H0] == [h0.address] and h0.bird_routes()[FROM_H1] == [h1.address]

    status = h1.ctl_json("show", "status")["exabgp"]
    assert status["restarts"] == restarts + 1
    log = (h1.workdir / "bgpd.log").read_text()
    (hung,) = re.findall(r"msg=\"exabgp hung: [^\n]*", log)
    assert f"pid={old} " in hung
    silent = float(re.findall(r"silent_s=([0-9.]+)", hung)[0])
    assert liveness.HUNG_AFTER <= silent <= DETECT + 2, hung
    assert re.search(r"msg=\"exabgp exited; restarting\" [^\n]*reason=hung", log)
    # h0's side of it: the session went down without a NOTIFICATION, h0 kept h1's routes as a helper
    h0_log = (h0.workdir / "bgpd.log").read_text()
    assert "graceful restart: keeping the peer's routes" in h0_log and "stale routes withdrawn" not in h0_log


def test_a_stopped_exabgp_dies_with_its_bgpd_and_the_next_start_comes_up(underlay: Underlay) -> None:
    """`kill -9` of bgpd while its ExaBGP is stopped: ExaBGP does not stay behind (it gets SIGKILL as its
    parent dies; its process group, orphaned with a stopped member, also gets SIGHUP and SIGCONT from the
    kernel), and the next start's ExaBGP gets the BGP port."""
    h0, h1 = _pair(underlay)
    h0.add_block(FROM_H0)
    wait_for(lambda: FROM_H0 in h1.bird_routes(), CONVERGE, "h0's block on h1")
    old = _exabgp_pid(h1)
    assert old is not None and h1.bgpd is not None
    os.kill(old, signal.SIGSTOP)
    try:
        os.kill(h1.bgpd.pid, signal.SIGKILL)
        assert h1.bgpd.popen.wait(30) == -signal.SIGKILL
        wait_for(lambda: gone(old), 10.0, "the stopped ExaBGP gone with its bgpd")
    finally:
        if not gone(old):
            with contextlib.suppress(ProcessLookupError):
                os.kill(old, signal.SIGKILL)
                os.kill(old, signal.SIGCONT)
    h1.start_bgpd()
    h0.add_block(LATER)
    wait_for(lambda: LATER in h1.bird_routes(), CONVERGE, "a new block of h0 on h1 after the start")
    assert h1.bird_routes()[FROM_H0] == [h0.address]
