"""RouteInstaller with IPv6 prefixes, against a real kernel, inside a throw-away dual-stack namespace."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

import pytest

from bgpd.kernel import OpResult, RouteInstaller

from .conftest import Netns

pytestmark = pytest.mark.kernel

PROTO = 12
MAIN = 254
BOTH = (socket.AF_INET, socket.AF_INET6)
GW1, GW2, GW3 = (IPv6Address(f"fd00:77::{i}") for i in (2, 3, 4))
GW_UP1 = IPv6Address("fd00:78::2")
LL_UP0, LL_UP1 = IPv6Address("fe80::2%up0"), IPv6Address("fe80::2%up1")
V4 = IPv4Address("192.168.77.2")


def net(text: str) -> IPv6Network:
    return IPv6Network(text)


@pytest.fixture
def installer(netns6: Netns) -> Iterator[RouteInstaller]:
    inst = RouteInstaller(PROTO, MAIN, netns=netns6.name)
    try:
        yield inst
    finally:
        inst.close()


def ours6(netns: Netns) -> dict[str, Any]:
    return {r["dst"]: r for r in netns.routes6("table", "main", "proto", str(PROTO))}


def hops(route: dict[str, Any]) -> list[str]:
    """`gateway%dev` for link-local next hops, `gateway` for the others, sorted."""
    nexthops = route.get("nexthops", [route])
    return sorted(
        f"{nh['gateway']}%{nh['dev']}" if nh["gateway"].startswith("fe80:") else nh["gateway"]
        for nh in nexthops
    )


def test_install_single_ecmp_and_link_local(netns6: Netns, installer: RouteInstaller) -> None:
    changes = [
        (net("fd00:50::/64"), (GW1,)),
        (net("fd00:50:1::/64"), (GW2, GW1)),  # ECMP through one device
        (net("fd00:50:2::/64"), (GW1, GW_UP1)),  # ECMP through two devices
        (net("fd00:50:3::/64"), (LL_UP1,)),  # link-local: RTA_OIF
        (net("fd00:50:4::/64"), (LL_UP0, LL_UP1, GW1)),  # link-local ECMP: rtnh_ifindex
        (net("fd00:50:5::1/128"), (GW1, GW1)),  # a duplicate is one next hop
    ]
    results = installer.apply(changes)
    assert results == [OpResult(prefix, ok=True) for prefix, _ in changes]
    routes = ours6(netns6)
    assert hops(routes["fd00:50::/64"]) == ["fd00:77::2"]
    assert routes["fd00:50::/64"]["metric"] == 32 and routes["fd00:50::/64"]["dev"] == "up0"
    assert hops(routes["fd00:50:1::/64"]) == ["fd00:77::2", "fd00:77::3"]
    assert hops(routes["fd00:50:2::/64"]) == ["fd00:77::2", "fd00:78::2"]
    assert hops(routes["fd00:50:3::/64"]) == ["fe80::2%up1"]
    assert hops(routes["fd00:50:4::/64"]) == ["fd00:77::2", "fe80::2%up0", "fe80::2%up1"]
    assert hops(routes["fd00:50:5::1"]) == ["fd00:77::2"]
    assert installer.dump_own(families=(socket.AF_INET6,)) == {
        net("fd00:50::/64"): (GW1,),
        net("fd00:50:1::/64"): (GW1, GW2),
        net("fd00:50:2::/64"): (GW1, GW_UP1),
        net("fd00:50:3::/64"): (LL_UP1,),
        net("fd00:50:4::/64"): (GW1, LL_UP0, LL_UP1),
        net("fd00:50:5::1/128"): (GW1,),
    }


def test_replace_own_route_and_delete(netns6: Netns, installer: RouteInstaller) -> None:
    installer.apply([(net("fd00:50::/64"), (GW1,)), (net("fd00:50:1::/64"), (GW1, GW2))])
    # single -> ECMP, ECMP -> single (create, EEXIST, ownership dump, replace)
    results = installer.apply([(net("fd00:50::/64"), (GW2, GW3)), (net("fd00:50:1::/64"), (LL_UP0,))])
    assert all(r.ok for r in results), results
    routes = ours6(netns6)
    assert hops(routes["fd00:50::/64"]) == ["fd00:77::3", "fd00:77::4"]
    assert hops(routes["fd00:50:1::/64"]) == ["fe80::2%up0"]
    assert len(netns6.routes6("fd00:50::/64")) == 1  # replaced, not appended as siblings
    # ECMP -> other ECMP, known to be ours (direct replace)
    results = installer.apply([(net("fd00:50::/64"), (GW1, GW_UP1))], ours={net("fd00:50::/64")})
    assert results[0].ok and hops(ours6(netns6)["fd00:50::/64"]) == ["fd00:77::2", "fd00:78::2"]
    results = installer.apply([(net("fd00:50::/64"), None), (net("fd00:50:1::/64"), None)])
    assert all(r.ok for r in results)
    assert ours6(netns6) == {}
    assert installer.apply([(net("fd00:50::/64"), None)]) == [OpResult(net("fd00:50::/64"), ok=True)]  # ESRCH


def test_foreign_route_is_a_collision_and_untouched(netns6: Netns, installer: RouteInstaller) -> None:
    netns6.ip("-6", "route", "add", "fd00:60::/64", "via", "fd00:77::9", "proto", "static", "metric", "32")
    netns6.ip(
        "-6", "route", "add", "fd00:60:1::/64", "proto", "static", "metric", "32",
        "nexthop", "via", "fd00:77::9", "nexthop", "via", "fd00:77::8",
    )  # fmt: skip
    before = netns6.routes6("table", "main")
    results = installer.apply([(net("fd00:60::/64"), (GW1,)), (net("fd00:60:1::/64"), (GW1, GW2))])
    assert all(r.collision and not r.ok for r in results), results
    assert installer.collisions == 2 and installer.errors == 0
    results = installer.apply([(net("fd00:60::/64"), None), (net("fd00:60:1::/64"), None)])  # not ours
    assert all(r.ok for r in results)
    assert netns6.routes6("table", "main") == before
    # the same prefix at another metric is another key: no collision
    netns6.ip("-6", "route", "add", "fd00:61::/64", "via", "fd00:77::9", "proto", "static", "metric", "100")
    assert installer.apply([(net("fd00:61::/64"), (GW1,))])[0].ok
    assert len(netns6.routes6("fd00:61::/64")) == 2


def test_replaced_by_foreign_route_is_not_overwritten(netns6: Netns, installer: RouteInstaller) -> None:
    installer.apply([(net("fd00:62::/64"), (GW1, GW2))])
    netns6.ip(
        "-6", "route", "replace", "fd00:62::/64", "via", "fd00:77::9", "proto", "static", "metric", "32"
    )
    (result,) = installer.apply([(net("fd00:62::/64"), (GW2,))])
    assert result.collision
    (route,) = netns6.routes6("fd00:62::/64")
    assert route["gateway"] == "fd00:77::9" and route["protocol"] == "static"


def test_mixed_batch_and_dump_own_families(netns6: Netns) -> None:
    """One call may mix IPv4 and IPv6; a restarted installer finds both families' routes of its own
    (EEXIST -> one ownership dump per family present -> replace); dump_own() stays IPv4-only."""
    netns6.ip("-6", "route", "add", "blackhole", "fd00:70:1::/64", "proto", str(PROTO), "metric", "32")
    netns6.ip("-6", "route", "add", "fd00:70:2::/64", "via", "fd00:77::9", "proto", "static", "metric", "32")
    v4 = IPv4Network("10.70.0.0/24")
    with RouteInstaller(PROTO, MAIN, netns=netns6.name) as first:
        results = first.apply([(v4, (V4,)), (net("fd00:70::/64"), (GW1, LL_UP1))])
        assert all(r.ok for r in results), results
    with RouteInstaller(PROTO, MAIN, netns=netns6.name) as second:
        assert second.dump_own() == {v4: (V4,)}  # the default: IPv4 only, as before
        assert second.dump_own(families=(socket.AF_INET6,)) == {
            net("fd00:70::/64"): (GW1, LL_UP1),
            net("fd00:70:1::/64"): (),
        }
        assert second.dump_own(families=BOTH) == {
            v4: (V4,),
            net("fd00:70::/64"): (GW1, LL_UP1),
            net("fd00:70:1::/64"): (),
        }
        with pytest.raises(ValueError):
            second.dump_own(families=(socket.AF_PACKET,))
        results = second.apply(
            [
                (v4, (IPv4Address("192.168.77.3"),)),
                (net("fd00:70::/64"), (GW2,)),
                (net("fd00:70:2::/64"), (GW2,)),
            ]
        )
        assert [(r.ok, r.collision) for r in results] == [(True, False), (True, False), (False, True)]
    assert hops(ours6(netns6)["fd00:70::/64"]) == ["fd00:77::3"]
    assert netns6.routes("10.70.0.0/24")[0]["gateway"] == "192.168.77.3"


def test_refused_next_hops(netns6: Netns, installer: RouteInstaller) -> None:
    results = installer.apply(
        [
            (net("fd00:80::/64"), (V4,)),  # IPv4 next hop for an IPv6 route (the kernel refuses RTA_VIA)
            (IPv4Network("10.80.0.0/24"), (GW1,)),  # and the reverse
            (net("fd00:80:1::/64"), (GW1, V4)),  # both families
            (net("fd00:80:2::/64"), (IPv6Address("fe80::2"),)),  # link-local without its device
            (net("fd00:80:3::/64"), ()),
            (net("fd00:80:4::/64"), (GW1,)),
        ]
    )
    assert [r.ok for r in results] == [False, False, False, False, False, True]
    assert all(r.error for r in results[:5]) and not any(r.collision for r in results)
    assert "link-local" in (results[3].error or "")
    assert installer.retried == 0  # refused before asking the kernel
    assert list(ours6(netns6)) == ["fd00:80:4::/64"]


def test_kernel_errors_are_reported(netns6: Netns, installer: RouteInstaller) -> None:
    results = installer.apply(
        [
            (net("fd00:81::/64"), (IPv6Address("fd00:99::1"),)),  # not on a connected network
            (net("fd00:81:1::/64"), (IPv6Address("fe80::2%nosuchdev"),)),  # unknown device
            (net("fd00:81:2::/64"), (GW1, IPv6Address("fd00:99::1"))),  # one bad next hop of two
            (net("fd00:81:3::/64"), (GW1,)),
        ]
    )
    assert [r.ok for r in results] == [False, False, False, True]
    assert "EHOSTUNREACH" in (results[0].error or "") and "ENODEV" in (results[1].error or "")
    assert installer.errors == 3 and installer.retried == 3 * installer.retries
    assert list(ours6(netns6)) == ["fd00:81:3::/64"]  # a failed ECMP create leaves nothing behind


def test_other_table(netns6: Netns) -> None:
    with RouteInstaller(PROTO, 100, netns=netns6.name) as inst:
        assert inst.dump_own(families=BOTH) == {}  # table 100 does not exist yet
        assert inst.apply([(net("fd00:90::/64"), (GW1,))])[0].ok
        assert [r["dst"] for r in netns6.routes6("table", "100")] == ["fd00:90::/64"]
        assert not netns6.routes6("fd00:90::/64")  # not in main
        assert inst.dump_own(families=(socket.AF_INET6,)) == {net("fd00:90::/64"): (GW1,)}


def test_10k_ipv6_batch(netns6: Netns, installer: RouteInstaller, capsys: pytest.CaptureFixture[str]) -> None:
    prefixes = [IPv6Network(f"fd00:100::{i:x}/128") for i in range(10_000)]
    started = time.perf_counter()
    results = installer.apply([(p, (GW1,) if i % 2 else (GW1, GW2)) for i, p in enumerate(prefixes)])
    installed = time.perf_counter()
    assert all(r.ok for r in results)
    assert len(ours6(netns6)) == 10_000
    replaced = installer.apply([(p, (LL_UP0,)) for p in prefixes])  # all EEXIST -> verified -> REPLACE
    replaced_at = time.perf_counter()
    assert all(r.ok for r in replaced)
    assert hops(ours6(netns6)["fd00:100::270f"]) == ["fe80::2%up0"]
    deleted = installer.apply([(p, None) for p in prefixes])
    deleted_at = time.perf_counter()
    assert all(r.ok for r in deleted)
    assert ours6(netns6) == {}
    with capsys.disabled():
        print(
            f"\n[installer] 10k IPv6: install {10_000 / (installed - started):,.0f}/s, "
            f"replace (EEXIST+dump+REPLACE) {10_000 / (replaced_at - installed):,.0f}/s, "
            f"delete {10_000 / (deleted_at - replaced_at):,.0f}/s"
        )
