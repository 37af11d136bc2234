"""bgpd's reactor changes to ExaBGP (bgpd.exabgp.launch) change nothing a peer can see: the same workload
through a reflector gives the same routes and attributes with ExaBGP patched and unpatched."""

from __future__ import annotations

import pytest

from bgpd.lab.netns import wait_for
from tests.e2e.conftest import ASN, Underlay

pytestmark = pytest.mark.e2e

CONVERGE = 60.0


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
    [shown] = h1.ctl_json("show", "routes", "10.20.0.1/32")
    [path] = shown["paths"]
    assert (
        path["from"],
        path["next_hop"],
        path["originator_id"],
        path["cluster_list"],
        path["local_pref"],
    ) == (
        rr.address,
        h0.address,
        h0.address,
        ["1.0.0.1"],
        100,
    )
    # withdraw a third, then the block
    gone = routes[::3]
    batch.write_text("".join(f"route del {r} dev cali0 proto boot scope link\n" for r in gone))
    h0.ip("-batch", str(batch))
    h0.ip("route", "del", "blackhole", "10.20.100.0/24")
    left = expected - {r.removesuffix("/32") for r in gone} - {"10.20.100.0/24"}
    wait_for(lambda: set(h1.bird_routes()) == left, CONVERGE, "withdrawals on h1")
    [peer] = h1.ctl_json("show", "peers")
    assert peer["received"] == len(routes) + 1 and peer["rejected"] == {}
