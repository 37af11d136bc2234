"""Dual stack end to end: IPv6 routes over IPv6 sessions beside IPv4 ones, between bgpd hosts and with
BIRD 2 (as a host peer and as a route reflector), and a bgpd reflector reflecting IPv6 to BIRD clients."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest

from bgpd.lab.netns import wait_for
from tests.e2e.conftest import ASN, Host, Underlay
from tests.e2e.test_bird import BIRD, bird_config, birdc, start_bird_text

pytestmark = pytest.mark.e2e

CONVERGE = 30.0
POOL6 = "fd00:10:20::/48"
HAS_BIRD = Path(BIRD).exists()


def _block6(i: int) -> str:
    """Host i's IPv6 block, as `ip -6 route` prints it."""
    return str(ip_network(f"fd00:10:20:0:{i}::/122"))


def _dual(host: Host, **bgp: object) -> None:
    host.write_config(
        node={"name": host.name, "address": host.address, "address6": host.address6, "asn": ASN},
        bgp={"hold_time": 9, "graceful_restart": 3, "select_defer_time": 10, **bgp},
        pools=[{"cidr": "10.20.0.0/16"}, {"cidr": POOL6}],
        metrics={"listen": "127.0.0.1:9479"},
    )


def _metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_three_host_dual_stack_mesh(underlay: Underlay) -> None:
    hosts = [underlay.host(f"h{i}", 10 + i, ipv6=True) for i in range(3)]
    for h in hosts:
        _dual(h, mesh={"enabled": True, "nodes": underlay.mesh_nodes()})
        h.start_bgpd()
    for i, h in enumerate(hosts):
        h.add_block(f"10.20.{i}.0/26")
        h.add_block(_block6(i))
        h.add_workload_route(f"fd00:10:20:1::{i + 1}/128")

    def complete() -> bool:
        for i, h in enumerate(hosts):
            others = [(j, o) for j, o in enumerate(hosts) if j != i]
            v6 = h.bird_routes(6)
            v4 = h.bird_routes(4)
            for j, o in others:
                if v6.get(_block6(j)) != [o.address6] or v6.get(f"fd00:10:20:1::{j + 1}") != [o.address6]:
                    return False
                if v4.get(f"10.20.{j}.0/26") != [o.address]:
                    return False
        return True

    wait_for(complete, CONVERGE, "every host has the others' IPv4 and IPv6 routes via their own family")
    # an IPv4 route never travels with an IPv6 next hop, nor the reverse
    assert not any(":" in hop for h in hosts for hops in h.bird_routes(4).values() for hop in hops)

    h0 = hosts[0]
    peers = h0.ctl_json("show", "peers")
    assert sorted((p["afi"], p["state"]) for p in peers) == [("ipv4", "up")] * 2 + [("ipv6", "up")] * 2
    assert all(p["advertised"] == 2 for p in peers if p["afi"] == "ipv6")  # the block and the /128
    assert all(p["advertised"] == 1 for p in peers if p["afi"] == "ipv4")
    six = h0.ctl_json("show", "routes", "-6")
    assert {r["afi"] for r in six} == {"ipv6"} and len(six) == 6
    four = h0.ctl_json("show", "routes", "-4")
    assert {r["prefix"] for r in four} == {f"10.20.{i}.0/26" for i in range(3)}
    wrong = h0.ctl("show", "routes", "-6", "10.20.1.0/26")
    assert (wrong.returncode, wrong.stderr) == (1, "bgpctl: 10.20.1.0/26 is an IPv4 prefix, not IPv6\n")
    one = h0.ctl_json("show", "routes", "-6", _block6(1))
    assert [r["prefix"] for r in one] == [_block6(1)]
    text = h0.ctl("show", "routes", "-6").stdout
    assert f"via {hosts[1].address6}" in text, text
    kernel6 = h0.ctl_json("show", "kernel", "-6")
    assert {o["prefix"] for o in kernel6["owned"]} == {
        _block6(1),
        _block6(2),
        "fd00:10:20:1::2/128",
        "fd00:10:20:1::3/128",
    }
    _, body = h0.http_get("http://127.0.0.1:9479/metrics")
    assert _metric(body, "bgpd_kernel_routes_installed", afi="ipv6") == 4
    assert _metric(body, "bgpd_kernel_routes_installed", afi="ipv4") == 2
    assert _metric(body, "bgp_peer_state", peer=hosts[1].address6, afi="ipv6") == 1

    # a withdrawal travels in its family
    hosts[1].ip("-6", "route", "del", "fd00:10:20:1::2/128", "dev", "cali0")
    wait_for(
        lambda: all("fd00:10:20:1::2" not in h.bird_routes(6) for h in (hosts[0], hosts[2])),
        CONVERGE,
        "IPv6 withdrawal on the other hosts",
    )
    assert hosts[0].bird_routes(4).get("10.20.1.0/26") == [hosts[1].address]


@pytest.mark.skipif(not HAS_BIRD, reason="BIRD 2 (Debian bird2) not installed")
def test_bgpd_and_bird_exchange_ipv6_routes_both_ways(underlay: Underlay) -> None:
    h0 = underlay.host("h0", 10, ipv6=True)
    bird = underlay.host("bird", 20, ipv6=True)
    _dual(h0, peers=[{"address": bird.address6, "asn": ASN}])
    _, sock = start_bird_text(bird, bird_config(bird, [h0.address6], ["fd00:10:20:7::/122"], family=6))
    h0.start_bgpd()
    h0.add_block(_block6(1))
    h0.add_workload_route("fd00:10:20:9::9/128")
    h0.add_workload_route("fd00:99::1/128")  # outside every pool: never announced

    # BIRD -> bgpd: BIRD sends its global and its link-local address (RFC 2545): one path, via the global
    wait_for(
        lambda: h0.bird_routes(6).get("fd00:10:20:7::/122") == [bird.address6],
        CONVERGE,
        "BIRD's IPv6 route installed by bgpd via BIRD's global address",
    )

    def bird_has_ours() -> bool:
        got = bird.bird_routes(6)
        return got.get(_block6(1)) == [h0.address6] and got.get("fd00:10:20:9::9") == [h0.address6]

    wait_for(bird_has_ours, CONVERGE, "bgpd's IPv6 routes in BIRD's kernel table")
    shown = birdc(bird, sock, "show", "route", "protocol", "peer0")
    assert _block6(1) in shown and "fd00:99::1" not in shown
    rejected = h0.ctl_json("show", "peers")[0]["rejected"]
    assert rejected == {}, rejected

    h0.ip("-6", "route", "del", "fd00:10:20:9::9/128", "dev", "cali0")
    wait_for(lambda: "fd00:10:20:9::9" not in bird.bird_routes(6), CONVERGE, "IPv6 withdrawal in BIRD")


@pytest.mark.skipif(not HAS_BIRD, reason="BIRD 2 (Debian bird2) not installed")
def test_bgpd_clients_around_a_bird_ipv6_reflector(underlay: Underlay) -> None:
    rr = underlay.host("rr", 2, ipv6=True)
    clients = [underlay.host(f"h{i}", 10 + i, ipv6=True) for i in range(2)]
    start_bird_text(rr, bird_config(rr, [c.address6 for c in clients], [], family=6, reflector=True))
    for i, c in enumerate(clients):
        _dual(c, peers=[{"address": rr.address6, "asn": ASN}])
        c.start_bgpd()
        c.add_block(_block6(i))
    wait_for(
        lambda: (
            clients[0].bird_routes(6).get(_block6(1)) == [clients[1].address6]
            and clients[1].bird_routes(6).get(_block6(0)) == [clients[0].address6]
        ),
        CONVERGE,
        "each bgpd client has the other's IPv6 block via the BIRD reflector, next hop unchanged",
    )


@pytest.mark.skipif(not HAS_BIRD, reason="BIRD 2 (Debian bird2) not installed")
def test_bgpd_reflector_reflects_ipv6_to_bird_clients(underlay: Underlay) -> None:
    rr = underlay.host("rr", 2, ipv6=True)
    birds = [underlay.host(f"b{i}", 20 + i, ipv6=True) for i in range(2)]
    rr.write_config(
        node={"name": "rr", "address": rr.address, "address6": rr.address6, "asn": ASN},
        bgp={"hold_time": 9, "select_defer_time": 10},
        reflector={"cluster_id": "1.1.1.1", "clients": [b.address6 for b in birds]},
        pools=[{"cidr": "10.20.0.0/16"}, {"cidr": POOL6}],
        kernel={"install": False},
    )
    for i, b in enumerate(birds):
        start_bird_text(b, bird_config(b, [rr.address6], [_block6(i)], family=6))
    rr.start_bgpd()
    wait_for(
        lambda: (
            birds[0].bird_routes(6).get(_block6(1)) == [birds[1].address6]
            and birds[1].bird_routes(6).get(_block6(0)) == [birds[0].address6]
        ),
        CONVERGE,
        "each BIRD client has the other's IPv6 block through the bgpd reflector",
    )
    routes = rr.ctl_json("show", "routes", "-6")
    assert {r["prefix"] for r in routes} == {_block6(0), _block6(1)}
