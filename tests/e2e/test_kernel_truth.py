"""The kernel is the truth (issue 10, case 1): whatever bgpd wants in the kernel and is missing is put back,
whatever of its protocol it does not want is removed, and bgpctl and the metrics report what the kernel
holds. Each way a route of ours can vanish or change: `ip route del`, `ip route replace`, a route of our
protocol added by hand, the underlay device set down and up, its address removed and added."""

from __future__ import annotations

import re

import pytest

from bgpd.lab.netns import wait_for
from tests.e2e.conftest import Host, Underlay

pytestmark = pytest.mark.e2e

CONVERGE = 30.0
REPAIR = 10.0  # deadline for a repair (the notification path takes well under a second)
BLOCK = "10.30.0.0/26"


def _pair(underlay: Underlay, **overrides: object) -> tuple[Host, Host]:
    """The issue's setup: two hosts in a mesh, pool 10.0.0.0/8, host0 holds a block, host1 installed it."""
    h0, h1 = underlay.host("h0", 10), underlay.host("h1", 11)
    nodes = underlay.mesh_nodes()
    for host in (h0, h1):
        host.write_config(
            bgp={"mesh": {"enabled": True, "nodes": nodes}},
            pools=[{"cidr": "10.0.0.0/8"}],
            metrics={"listen": "127.0.0.1:9479"},
            **overrides,
        )
        host.start_bgpd()
    h0.add_block(BLOCK)
    wait_for(lambda: h1.bird_routes().get(BLOCK) == [h0.address], CONVERGE, "block installed on h1")
    return h0, h1


def _repairs(host: Host) -> dict[str, float]:
    status, body = host.http_get("http://127.0.0.1:9479/metrics")
    assert status == 200
    found = re.findall(r'^bgpd_kernel_repairs_total\{cause="(\w+)"\} (\S+)$', body, re.M)
    return {cause: float(value) for cause, value in found}


def _installed_metric(host: Host) -> float:
    _, body = host.http_get("http://127.0.0.1:9479/metrics")
    match = re.search(r"^bgpd_kernel_routes_installed\{afi=\"ipv4\"\} (\S+)$", body, re.M)
    assert match is not None
    return float(match.group(1))


def _owned(host: Host) -> dict[str, list[str]]:
    return {o["prefix"]: o["next_hops"] for o in host.ctl_json("show", "kernel")["owned"]}


def _peer_flaps(host: Host) -> int:
    return int(sum(p["flaps"] for p in host.ctl_json("show", "peers")))


def test_deleted_route_is_put_back_and_reports_follow_the_kernel(underlay: Underlay) -> None:
    """The issue's case: `ip route del 10.30.0.0/26 proto bird` on host1; BIRD 2 puts it back in 0.4 s."""
    h0, h1 = _pair(underlay)
    assert _repairs(h1)["deleted"] == 0
    h1.ip("route", "del", BLOCK, "proto", "bird")
    wait_for(lambda: h1.bird_routes().get(BLOCK) == [h0.address], REPAIR, "deleted route put back")
    wait_for(lambda: _repairs(h1)["deleted"] == 1, REPAIR, "repair counted as deleted")
    assert _owned(h1) == {BLOCK: [h0.address]} and _installed_metric(h1) == 1
    assert "repairs: deleted 1" in h1.ctl("show", "kernel").stdout
    log = (h1.workdir / "bgpd.log").read_text()
    assert "repairing" in log and BLOCK in log


def test_replaced_route_is_restored_and_unwanted_route_of_our_protocol_removed(underlay: Underlay) -> None:
    h0, h1 = _pair(underlay)
    # somebody points our route elsewhere: bgpd writes back what it selected
    h1.ip("route", "replace", BLOCK, "via", "192.168.100.99", "proto", "bird", "metric", "32")
    wait_for(lambda: h1.bird_routes().get(BLOCK) == [h0.address], REPAIR, "replaced route restored")
    wait_for(lambda: _repairs(h1)["changed"] == 1, REPAIR, "repair counted as changed")
    # a route of bgpd's protocol nobody announced: bgpd owns the protocol, so it goes
    h1.ip("route", "add", "10.40.0.0/24", "via", h0.address, "proto", "bird", "metric", "32")
    wait_for(lambda: "10.40.0.0/24" not in h1.bird_routes(), REPAIR, "unwanted route of ours removed")
    wait_for(lambda: _repairs(h1)["unwanted"] == 1, REPAIR, "repair counted as unwanted")
    # another protocol's route, and ours at another metric, are not ours: left alone
    h1.ip("route", "add", "10.41.0.0/24", "via", h0.address, "proto", "static")
    h1.ip("route", "add", "10.42.0.0/24", "via", h0.address, "proto", "bird", "metric", "50")
    h0.add_block("10.30.1.0/26")  # a marker: once it is installed, the two routes above were seen
    wait_for(lambda: "10.30.1.0/26" in h1.bird_routes(), CONVERGE, "marker block on h1")
    assert {r["dst"] for r in h1.routes("proto", "static")} == {"10.41.0.0/24"}
    assert "10.42.0.0/24" in h1.bird_routes()
    assert _owned(h1) == {BLOCK: [h0.address], "10.30.1.0/26": [h0.address]}


def test_underlay_down_and_up_flushes_silently_and_routes_come_back(underlay: Underlay) -> None:
    """Linux flushes the routes through a device that goes down without any RTM_DELROUTE; the session
    survives a short outage (hold time 9 s), so nothing but bgpd can put the routes back."""
    h0, h1 = _pair(underlay)
    flaps = _peer_flaps(h1)
    h1.ip("link", "set", "eth0", "down")
    wait_for(lambda: BLOCK not in h1.bird_routes(), REPAIR, "kernel flushed the route")
    h1.ip("link", "set", "eth0", "up")
    wait_for(lambda: h1.bird_routes().get(BLOCK) == [h0.address], REPAIR, "route back after link up")
    assert _repairs(h1)["link"] >= 1
    assert _owned(h1) == {BLOCK: [h0.address]}
    assert _peer_flaps(h1) == flaps, "the session should have survived the short outage"


def test_address_removed_and_added_routes_come_back(underlay: Underlay) -> None:
    h0, h1 = _pair(underlay)
    h1.ip("addr", "del", f"{h1.address}/24", "dev", "eth0")
    wait_for(lambda: BLOCK not in h1.bird_routes(), REPAIR, "kernel flushed the route")
    wait_for(lambda: _owned(h1) == {}, REPAIR, "bgpctl shows it is not installed")
    reason = (
        "the kernel refused it: ENETUNREACH (Network is unreachable): Nexthop has invalid gateway; retried"
    )
    refused = [{"prefix": BLOCK, "next_hops": [h0.address], "reason": reason}]
    wait_for(lambda: h1.ctl_json("show", "kernel")["not_installed"] == refused, REPAIR, "shown as refused")
    h1.ip("addr", "add", f"{h1.address}/24", "dev", "eth0")
    wait_for(lambda: h1.bird_routes().get(BLOCK) == [h0.address], REPAIR, "route back after address")
    wait_for(lambda: _owned(h1) == {BLOCK: [h0.address]}, REPAIR, "bgpctl shows it installed again")


def test_workload_device_removal_does_not_reread_our_routes(underlay: Underlay) -> None:
    """A workload's veth going away (every pod deletion) re-reads only that device's routes: our learned
    routes are not re-read, so the cost does not grow with the table."""
    h0, h1 = _pair(underlay)
    h1.add_workload_route("10.50.0.5/32")
    wait_for(lambda: "10.50.0.5" in h0.bird_routes(), CONVERGE, "workload route on h0")  # ip prints no /32
    before = h1.ctl_json("show", "status")
    h1.ip("link", "del", "cali0")
    wait_for(lambda: "10.50.0.5" not in h0.bird_routes(), CONVERGE, "withdrawn after the veth went")
    after = h1.ctl_json("show", "status")
    assert after["kernel"]["audits"] == before["kernel"]["audits"]
    assert h1.bird_routes().get(BLOCK) == [h0.address]
