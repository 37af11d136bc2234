"""Route ownership end to end: foreign routes are never touched, an earlier run's routes are reconciled
after End-of-RIB, and routes stay installed while ExaBGP is restarted."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from bgpd.lab.netns import wait_for
from tests.e2e.conftest import Host, Underlay

pytestmark = pytest.mark.e2e

CONVERGE = 30.0


def _pair(underlay: Underlay, **overrides: object) -> tuple[Host, Host]:
    h0, h1 = underlay.host("h0", 10), underlay.host("h1", 11)
    nodes = underlay.mesh_nodes()
    for host in (h0, h1):
        host.write_config(bgp={"hold_time": 9, "mesh": {"enabled": True, "nodes": nodes}}, **overrides)
        host.start_bgpd()
    return h0, h1


def test_foreign_route_at_a_learned_prefix_is_left_alone(underlay: Underlay) -> None:
    h0, h1 = _pair(underlay)
    # h1 already has a static route (another protocol) for the prefix h0 will announce
    h1.ip("route", "add", "10.20.3.0/26", "via", h0.address, "proto", "static")
    h0.add_block("10.20.3.0/26")
    h0.add_block("10.20.4.0/26")
    wait_for(lambda: "10.20.4.0/26" in h1.bird_routes(), CONVERGE, "the other block on h1")
    assert "10.20.3.0/26" not in h1.bird_routes()
    static = h1.routes("proto", "static")
    assert [r["dst"] for r in static] == ["10.20.3.0/26"]
    # the foreign route goes away: bgpd may now install the learned one
    h1.ip("route", "del", "10.20.3.0/26", "proto", "static")
    wait_for(lambda: h1.bird_routes().get("10.20.3.0/26") == [h0.address], CONVERGE, "install after release")
    # a foreign route arriving later is not replaced or deleted either
    h0.add_block("10.20.6.0/26")
    wait_for(lambda: "10.20.6.0/26" in h1.bird_routes(), CONVERGE, "third block on h1")
    h1.ip("route", "add", "10.20.6.0/26", "via", h0.address, "proto", "static", "metric", "5")
    h0.ip("route", "del", "blackhole", "10.20.6.0/26")
    wait_for(lambda: "10.20.6.0/26" not in h1.bird_routes(), CONVERGE, "withdrawal on h1")
    assert [r["dst"] for r in h1.routes("proto", "static")] == ["10.20.6.0/26"]


def test_restart_keeps_routes_until_end_of_rib_then_removes_stale_ones(underlay: Underlay) -> None:
    h0, h1 = _pair(underlay)
    h0.add_block("10.20.1.0/26")
    h0.add_block("10.20.2.0/26")
    wait_for(lambda: len(h1.bird_routes()) == 2, CONVERGE, "two blocks on h1")
    assert h1.bgpd is not None
    assert h1.bgpd.stop() == 0
    # while h1's bgpd is down: one route is withdrawn at the source, and a left-over route of ours appears
    h0.ip("route", "del", "blackhole", "10.20.2.0/26")
    h1.ip("route", "add", "10.20.99.0/24", "via", h0.address, "proto", "bird", "metric", "32")
    h1.ip("route", "add", "10.20.98.0/24", "via", h0.address, "proto", "static")
    assert set(h1.bird_routes()) == {"10.20.1.0/26", "10.20.2.0/26", "10.20.99.0/24"}
    h1.start_bgpd()
    wait_for(lambda: set(h1.bird_routes()) == {"10.20.1.0/26"}, CONVERGE, "stale routes reconciled")
    assert [r["dst"] for r in h1.routes("proto", "static")] == ["10.20.98.0/24"]


def test_exabgp_death_keeps_kernel_routes_and_sessions_return(underlay: Underlay) -> None:
    h0, h1 = _pair(underlay)
    h0.add_block("10.20.1.0/26")
    wait_for(lambda: "10.20.1.0/26" in h1.bird_routes(), CONVERGE, "block on h1")
    pid_file = Path(h1.config["runtime"]["dir"]) / "exabgp.pid"
    old_pid = int(pid_file.read_text())
    os.kill(old_pid, signal.SIGKILL)  # the ExaBGP child that bgpd started on h1

    samples: list[bool] = []

    def restarted() -> bool:
        samples.append("10.20.1.0/26" in h1.bird_routes())
        try:
            return int(pid_file.read_text()) != old_pid
        except (OSError, ValueError):
            return False

    wait_for(restarted, CONVERGE, "ExaBGP restarted by bgpd", interval=0.05)
    # sessions come back and carry new routes
    h0.add_block("10.20.2.0/26")
    wait_for(
        lambda: samples.append("10.20.1.0/26" in h1.bird_routes()) or "10.20.2.0/26" in h1.bird_routes(),
        CONVERGE,
        "new route after the restart",
        interval=0.05,
    )
    assert all(samples), "the learned route disappeared from the kernel while ExaBGP restarted"
    assert h1.bgpd is not None and h1.bgpd.alive()


def test_peer_restart_keeps_its_routes_on_the_other_hosts(underlay: Underlay) -> None:
    """Graceful restart helper (RFC 4724 §4.2): h0's ExaBGP dies and bgpd restarts it; h1 keeps h0's routes
    in the kernel all along, and drops only the one h0 no longer announces once h0 sent End-of-RIB."""
    h0, h1 = underlay.host("h0", 10), underlay.host("h1", 11)
    nodes = underlay.mesh_nodes()
    for host in (h0, h1):
        mesh = {"enabled": True, "nodes": nodes}
        host.write_config(bgp={"hold_time": 9, "graceful_restart": 60, "mesh": mesh})
        host.start_bgpd()
    h0.add_block("10.20.1.0/26")
    h0.add_block("10.20.2.0/26")
    wait_for(lambda: len(h1.bird_routes()) == 2, CONVERGE, "two blocks on h1")
    pid_file = Path(h0.config["runtime"]["dir"]) / "exabgp.pid"
    old_pid = int(pid_file.read_text())
    os.kill(old_pid, signal.SIGKILL)  # h0's session to h1 ends without a NOTIFICATION
    h0.ip("route", "del", "blackhole", "10.20.2.0/26")  # withdrawn at the source while the session is down
    samples: list[bool] = []

    def settled() -> bool:
        samples.append("10.20.1.0/26" in h1.bird_routes())
        return set(h1.bird_routes()) == {"10.20.1.0/26"}

    wait_for(settled, CONVERGE, "h0 back, End-of-RIB, stale block removed on h1", interval=0.05)
    assert all(samples), "h0's route disappeared from h1's kernel while h0 restarted"
    assert int(pid_file.read_text()) != old_pid
    log = (h1.workdir / "bgpd.log").read_text()
    assert "graceful restart: keeping the peer's routes" in log and "stale routes withdrawn" not in log
    (peer,) = h1.ctl_json("show", "peers")
    assert peer["graceful_restart_time"] == 60 and peer["stale_routes"] == 0
