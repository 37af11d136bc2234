"""bgpd's reactor changes to ExaBGP (bgpd.exabgp.launch) change nothing a peer can see: the same workload
through a reflector gives the same routes and attributes with ExaBGP patched and unpatched, in IPv4 and in
IPv6 (where the patched ExaBGPs send many routes an UPDATE instead of one: change 9)."""

from __future__ import annotations

import pytest

from bgpd.lab.netns import wait_for
from tests.e2e.conftest import ASN, Host, Underlay

pytestmark = pytest.mark.e2e

CONVERGE = 60.0


def _reflected(host: Host, prefix: str) -> tuple[object, ...]:
    """The one path `host` holds for `prefix`: (from, next hop, originator id, cluster list, local pref)."""
    [shown] = host.ctl_json("show", "routes", prefix)
    [path] = shown["paths"]
    return (path["from"], path["next_hop"], path["originator_id"], path["cluster_list"], path["local_pref"])


@pytest.mark.parametrize("unpatched", [False, True], ids=["patched", "unpatched"])
def test_reflected_bulk_announce_and_withdraw(underlay: Underlay, unpatched: bool) -> None:
    env = {"BGPD_EXABGP_UNPATCHED": "1" if unpatched else "0"}
    rr = underlay.host("rr", 2)
    h0, h1 = underlay.host("h0", 10), underlay.host("h1", 11)
    rr.write_config(
        bgp={"hold_time": 9}, reflector={"cluster_id": "1.0.0.1", "clients": [h0.address, h1.address]}
    )
    for h in (h0, h1):
        h.write_config(bgp={"hold_time": 9, "peers": [{"address": rr.address, "asn": ASN}]})
    for h in (rr, h0, h1):
        h.start_bgpd(env)
    routes = [f"10.20.{i // 250}.{i % 250 + 1}/32" for i in range(600)]
    batch = h0.workdir / "add.batch"
    batch.write_text("".join(f"route add {r} dev cali0 proto boot scope link\n" for r in routes))
    h0.ip("-batch", str(batch))
    h0.add_block("10.20.100.0/24")
    expected = {r.removesuffix("/32") for r in routes} | {"10.20.100.0/24"}
    wait_for(lambda: set(h1.bird_routes()) == expected, CONVERGE, "every route on h1")
    assert all(hops == [h0.address] for hops in h1.bird_routes().values())
    assert _reflected(h1, "10.20.0.1/32") == (rr.address, h0.address, h0.address, ["1.0.0.1"], 100)
    # withdraw a third, then the block
    gone = routes[::3]
    batch.write_text("".join(f"route del {r} dev cali0 proto boot scope link\n" for r in gone))
    h0.ip("-batch", str(batch))
    h0.ip("route", "del", "blackhole", "10.20.100.0/24")
    left = expected - {r.removesuffix("/32") for r in gone} - {"10.20.100.0/24"}
    wait_for(lambda: set(h1.bird_routes()) == left, CONVERGE, "withdrawals on h1")
    [peer] = h1.ctl_json("show", "peers")
    assert peer["received"] == len(routes) + 1 and peer["rejected"] == {}


@pytest.mark.parametrize("unpatched", [False, True], ids=["patched", "unpatched"])
def test_reflected_ipv6_bulk_announce_and_withdraw(underlay: Underlay, unpatched: bool) -> None:
    env = {"BGPD_EXABGP_UNPATCHED": "1" if unpatched else "0"}
    rr = underlay.host("rr", 2, ipv6=True)
    h0, h1 = underlay.host("h0", 10, ipv6=True), underlay.host("h1", 11, ipv6=True)
    pools = [{"cidr": "10.20.0.0/16"}, {"cidr": "fd00:10:20::/48"}]
    rr.write_config(
        node={"name": "rr", "address": rr.address, "address6": rr.address6, "asn": ASN},
        bgp={"hold_time": 9},
        reflector={"cluster_id": "1.0.0.1", "clients": [h0.address6, h1.address6]},
        pools=pools,
    )
    for h in (h0, h1):
        h.write_config(
            node={"name": h.name, "address": h.address, "address6": h.address6, "asn": ASN},
            bgp={"hold_time": 9, "peers": [{"address": rr.address6, "asn": ASN}]},
            pools=pools,
        )
    for h in (rr, h0, h1):
        h.start_bgpd(env)
    routes = [f"fd00:10:20:1::{i + 1:x}/128" for i in range(600)]
    batch = h0.workdir / "add.batch"
    batch.write_text("".join(f"route add {r} dev cali0 proto boot\n" for r in routes))
    h0.ip("-6", "-batch", str(batch))
    h0.add_block("fd00:10:20:100::/120")
    expected = {r.removesuffix("/128") for r in routes} | {"fd00:10:20:100::/120"}
    wait_for(lambda: set(h1.bird_routes(6)) == expected, CONVERGE, "every IPv6 route on h1")
    assert all(hops == [h0.address6] for hops in h1.bird_routes(6).values())
    reflected = _reflected(h1, "fd00:10:20:1::1/128")
    assert reflected == (rr.address6, h0.address6, h0.address, ["1.0.0.1"], 100)
    # withdraw a third, then the block
    gone = routes[::3]
    batch.write_text("".join(f"route del {r} dev cali0 proto boot\n" for r in gone))
    h0.ip("-6", "-batch", str(batch))
    h0.ip("-6", "route", "del", "blackhole", "fd00:10:20:100::/120")
    left = expected - {r.removesuffix("/128") for r in gone} - {"fd00:10:20:100::/120"}
    wait_for(lambda: set(h1.bird_routes(6)) == left, CONVERGE, "IPv6 withdrawals on h1")
    [peer] = h1.ctl_json("show", "peers")
    assert peer["received"] == len(routes) + 1 and peer["rejected"] == {}
    # unpatched ExaBGP sends one UPDATE per IPv6 route; patched, routes of one attribute set go together
    if unpatched:
        assert peer["updates_received"] == len(routes) + 1 + len(gone) + 1
    else:
        assert peer["updates_received"] <= 40, peer["updates_received"]
