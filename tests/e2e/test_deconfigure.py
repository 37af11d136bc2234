"""A peer removed from the config by a reload (issue 14, found by the soak run): the session ends with
NOTIFICATION Cease / Peer De-configured (RFC 4486 §4), as BIRD ends it, so the other side drops this host's
routes at once instead of keeping them for its graceful-restart time (ExaBGP closed the connection
silently, which the other side took for a graceful restart: launch change 12)."""

from __future__ import annotations

import json

import pytest

from bgpd.lab.netns import wait_for
from tests.e2e.conftest import Host, Underlay

pytestmark = pytest.mark.e2e

CONVERGE = 30.0
GRACEFUL_RESTART = 120  # what the other side would keep our routes for, had it taken this for a restart
PREFIX = "10.20.0.10/32"
ROUTE = "10.20.0.10"  # as iproute2 shows a /32


def peer(host: Host, address: str) -> dict[str, object] | None:
    result = host.ctl("show", "peers", "--json")
    if result.returncode != 0:
        return None
    return next((p for p in json.loads(result.stdout) if p["address"] == address), None)


def test_a_peer_removed_by_reload_gets_cease_peer_deconfigured(underlay: Underlay) -> None:
    h0, h1 = underlay.host("h0", 10), underlay.host("h1", 11)
    mesh = {"hold_time": 90, "graceful_restart": GRACEFUL_RESTART, "mesh": {"enabled": True}}
    for h in (h0, h1):
        h.write_config(bgp={**mesh, "mesh": {"enabled": True, "nodes": [h0.address, h1.address]}})
        h.start_bgpd()
    h0.add_workload_route(PREFIX)
    wait_for(lambda: ROUTE in h1.bird_routes(), CONVERGE, "h0's workload route on h1")
    graceful = peer(h1, h0.address)
    assert graceful is not None and graceful["graceful_restart_time"] == GRACEFUL_RESTART

    h0.write_config(bgp={**mesh, "mesh": {"enabled": False, "nodes": []}})
    reloaded = h0.ctl("reload")
    assert reloaded.returncode == 0, reloaded.stderr
    # far below the 120 s h1 would keep the route for after a silent close
    wait_for(lambda: ROUTE not in h1.bird_routes(), 15.0, "h0's route gone from h1 at once")
    seen = peer(h1, h0.address)
    assert seen is not None and seen["state"] != "up"
    assert "Cease / Peer De-configured (6/3)" in str(seen["last_error"]), seen
    assert seen["stale_routes"] == 0
