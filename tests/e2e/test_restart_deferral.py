"""A restarting speaker defers its End-of-RIB (RFC 4724 §4.1; issue 10, case 2).

A reflector is killed (bgpd and ExaBGP, SIGKILL) and started again; client .11 comes back well after
client .10. Before the fix, the restarted reflector sent End-of-RIB to .10 about a second after it
started, with an empty table, so .10 dropped its stale copy of .11's routes and forwarded nowhere until
.11 was back, although .11 never went away. Now .10 keeps .11's routes all along.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from bgpd.lab.netns import wait_for
from tests.e2e.conftest import ASN, Host, Underlay

pytestmark = pytest.mark.e2e

CONVERGE = 30.0
CLUSTER = "1.0.0.1"
HOLD_BACK = 6.0  # seconds .11 is kept from reaching the restarted reflector (the case: 8 s)


def _peer(host: Host, address: str) -> dict[str, object]:
    (found,) = [p for p in host.ctl_json("show", "peers") if p["address"] == address]
    return found


def _has_table_of(host: Host, address: str) -> bool:
    """`host` has End-of-RIB from `address` (False while its bgpd is still starting)."""
    if host.ctl("show", "peers").returncode != 0:
        return False
    return _peer(host, address)["end_of_rib"] is True


def test_restarted_reflector_waits_for_every_client_before_end_of_rib(underlay: Underlay) -> None:
    rr = underlay.host("rr", 2)
    c10, c11 = underlay.host("c10", 10), underlay.host("c11", 11)
    rr.write_config(
        # a long restart time: the clients keep the reflector's routes while it is away
        bgp={"hold_time": 9, "graceful_restart": 60, "select_defer_time": 60},
        reflector={"cluster_id": CLUSTER, "clients": [c10.address, c11.address]},
    )
    rr.start_bgpd()
    for client in (c10, c11):
        client.write_config(
            bgp={"hold_time": 9, "graceful_restart": 60, "peers": [{"address": rr.address, "asn": ASN}]},
            kernel={"stale_timeout": 60},
        )
        client.start_bgpd()
    c10.add_block("10.20.10.0/26")
    c11.add_block("10.20.11.0/26")
    wait_for(lambda: c10.bird_routes().get("10.20.11.0/26") == [c11.address], CONVERGE, ".11's block on .10")
    wait_for(lambda: c11.bird_routes().get("10.20.10.0/26") == [c10.address], CONVERGE, ".10's block on .11")

    # kill the reflector: ExaBGP first (no NOTIFICATION is sent), then bgpd
    assert rr.bgpd is not None
    exabgp_pid = int((Path(rr.config["runtime"]["dir"]) / "exabgp.pid").read_text())
    os.kill(exabgp_pid, signal.SIGKILL)
    rr.bgpd.signal(signal.SIGKILL)
    wait_for(lambda: not rr.bgpd.alive(), CONVERGE, "reflector's bgpd gone")  # type: ignore[union-attr]
    # .11 cannot reach the reflector for a while: its session comes back later than .10's
    rr.ip("route", "add", "blackhole", f"{c11.address}/32", "proto", "static")
    rr.start_bgpd()
    wait_for(lambda: _has_table_of(rr, c10.address), CONVERGE, "reflector has .10's table")
    kernel = rr.ctl_json("show", "kernel")
    assert kernel["selection_deferral"]["waiting_for"] == [c11.address]
    assert "selection deferral: waiting for end-of-rib from " + c11.address in rr.ctl("show", "kernel").stdout

    # while .11 is away from the reflector, .10 keeps forwarding to .11 (its stale copy is kept)
    deadline = time.monotonic() + HOLD_BACK
    while time.monotonic() < deadline:
        assert c10.bird_routes().get("10.20.11.0/26") == [c11.address], ".10 dropped .11's route"
        assert _peer(c10, rr.address)["end_of_rib"] is False  # the reflector still defers it
        time.sleep(0.1)

    rr.ip("route", "del", "blackhole", f"{c11.address}/32", "proto", "static")
    wait_for(lambda: _has_table_of(rr, c11.address), CONVERGE, "reflector has .11's table")
    wait_for(lambda: _has_table_of(c10, rr.address), CONVERGE, "end-of-rib sent to .10")
    assert rr.ctl_json("show", "kernel")["selection_deferral"] == {
        "done": True,
        "how": "end-of-rib",
        "waiting_for": [],
        "stale_routes_wait_for": [],
    }
    assert c10.bird_routes().get("10.20.11.0/26") == [c11.address]
    assert c11.bird_routes().get("10.20.10.0/26") == [c10.address]
    assert _peer(c10, rr.address)["stale_routes"] == 0


def test_restarted_host_keeps_stale_kernel_routes_until_every_peer_is_back(underlay: Underlay) -> None:
    """A host speaker restarting: its kernel routes of the earlier run stay until the selection deferral
    ends, so a peer that comes back late does not lose its traffic meanwhile."""
    h0, h1, h2 = underlay.host("h0", 10), underlay.host("h1", 11), underlay.host("h2", 12)
    nodes = underlay.mesh_nodes()
    for host in (h0, h1, h2):
        host.write_config(bgp={"mesh": {"enabled": True, "nodes": nodes}, "select_defer_time": 60})
        host.start_bgpd()
    h0.add_block("10.20.0.0/26")
    h2.add_block("10.20.2.0/26")
    wanted = {"10.20.0.0/26": [h0.address], "10.20.2.0/26": [h2.address]}
    wait_for(lambda: h1.bird_routes() == wanted, CONVERGE, "both blocks on h1")
    assert h1.bgpd is not None and h1.bgpd.stop() == 0
    h1.ip("route", "add", "blackhole", f"{h2.address}/32", "proto", "static")  # h2 is late
    h1.start_bgpd()
    wait_for(lambda: _has_table_of(h1, h0.address), CONVERGE, "h0's table in")
    k = h1.ctl_json("show", "kernel")
    assert k["selection_deferral"]["waiting_for"] == [h2.address]
    assert "10.20.2.0/26" in k["stale_from_earlier_run"]
    # the route to h2's block is still there (h2 never went away)
    assert h1.bird_routes().get("10.20.2.0/26") == [h2.address]
    h1.ip("route", "del", "blackhole", f"{h2.address}/32", "proto", "static")
    wait_for(lambda: h1.ctl_json("show", "kernel")["selection_deferral"]["done"], CONVERGE, "deferral over")
    wait_for(lambda: h1.bird_routes() == wanted, CONVERGE, "both blocks on h1 after the deferral")
