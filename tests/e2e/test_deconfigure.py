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


def test_a_route_withdrawn_while_the_peer_was_removed_does_not_come_back(underlay: Underlay) -> None:
    """Found by the 30-minute soak: ExaBGP keeps a neighbor's Adj-RIB-Out in a cache by name across reloads,
    so a peer removed and re-added got its old one back, without the withdrawals made meanwhile, and was
    sent a route this host no longer had. Removed, the neighbor's Adj-RIB-Out leaves that cache (change
    12)."""
    h0, h1 = underlay.host("h0", 10), underlay.host("h1", 11)
    both = {"hold_time": 9, "mesh": {"enabled": True, "nodes": [h0.address, h1.address]}}
    for h in (h0, h1):
        h.write_config(bgp=both)
        h.start_bgpd()
    kept, gone = ["10.20.0.3", "10.20.0.4"], ["10.20.0.1", "10.20.0.2"]
    for address in gone + kept:
        h0.add_workload_route(f"{address}/32")
    wait_for(lambda: set(gone + kept) <= set(h1.bird_routes()), CONVERGE, "h0's routes on h1")
    h0.write_config(bgp={**both, "mesh": {"enabled": False, "nodes": []}})
    assert h0.ctl("reload").returncode == 0
    wait_for(lambda: not set(gone + kept) & set(h1.bird_routes()), CONVERGE, "h1 dropped them (Cease)")
    for address in gone:
        h0.ip("route", "del", f"{address}/32")
    withdrawn = {f"{address}/32" for address in gone}
    wait_for(lambda: not withdrawn & set(h0.ctl_json("show", "kernel")["announced"]), CONVERGE, "withdrawn")
    h0.write_config(bgp=both)
    assert h0.ctl("reload").returncode == 0

    def back() -> bool:
        shown = peer(h1, h0.address)
        return shown is not None and shown["state"] == "up" and bool(shown["end_of_rib"])

    wait_for(back, CONVERGE, "the session back, h0's whole table sent (End-of-RIB)")
    wait_for(lambda: set(kept) <= set(h1.bird_routes()), CONVERGE, "the kept routes on h1 again")
    assert not set(gone) & set(h1.bird_routes()), h1.bird_routes()


BULK = 30_000


def test_a_peer_added_while_routes_are_queued_is_run(underlay: Underlay) -> None:
    """ExaBGP 5.0.15 dropped a reload (SIGUSR1) that came while any Adj-RIB-Out still had routes queued, so
    a neighbor added by a reload (or by the datastore) during a burst of announcements never ran (launch
    change 13). h0 announces 30,000 blocks to h1 and, while they are on their way, a reload adds h2."""
    h0, h1, h2 = underlay.host("h0", 10), underlay.host("h1", 11), underlay.host("h2", 12)
    two = [h0.address, h1.address]
    three = [*two, h2.address]
    h0.write_config(bgp={"hold_time": 9, "mesh": {"enabled": True, "nodes": two}})
    h1.write_config(bgp={"hold_time": 9, "mesh": {"enabled": True, "nodes": two}})
    h2.write_config(bgp={"hold_time": 9, "mesh": {"enabled": True, "nodes": three}})
    for h in (h0, h1, h2):
        h.start_bgpd()
    wait_for(lambda: (peer(h0, h1.address) or {}).get("state") == "up", CONVERGE, "h0-h1 up")
    batch = underlay.workdir / "bulk.batch"
    batch.write_text(
        "".join(
            f"route add blackhole 10.{20 + i // 65536}.{i // 256 % 256}.{i % 256}/32 proto 80\n"
            for i in range(BULK)
        )
    )
    h0.ip("-batch", str(batch))

    def received() -> int:
        seen = peer(h1, h0.address)
        return int(seen["received"]) if seen else 0  # type: ignore[call-overload]

    wait_for(lambda: received() > 0, CONVERGE, "the burst reaching h1")
    h0.write_config(bgp={"hold_time": 9, "mesh": {"enabled": True, "nodes": three}})
    reloaded = h0.ctl("reload")
    assert reloaded.returncode == 0, reloaded.stderr
    assert received() < BULK, "the burst was over before the reload: nothing tested"
    wait_for(
        lambda: (peer(h0, h2.address) or {}).get("state") == "up", CONVERGE, "h0-h2 up (added mid-burst)"
    )
    wait_for(lambda: received() == BULK, 60.0, "the whole burst on h1")
