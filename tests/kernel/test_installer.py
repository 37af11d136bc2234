"""RouteInstaller against a real kernel, inside a throw-away network namespace."""

from __future__ import annotations

import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from bgpd.kernel import OpResult, RouteInstaller

from .conftest import Netns

pytestmark = pytest.mark.kernel

PROTO = 12
MAIN = 254
GW1, GW2, GW3 = (IPv4Address(f"192.168.77.{i}") for i in (2, 3, 4))


def net(text: str) -> IPv4Network:
    return IPv4Network(text)


@pytest.fixture
def installer(netns: Netns) -> Iterator[RouteInstaller]:
    inst = RouteInstaller(PROTO, MAIN, netns=netns.name)
    try:
        yield inst
    finally:
        inst.close()


def ours(netns: Netns) -> dict[str, Any]:
    return {r["dst"]: r for r in netns.routes("table", "main", "proto", str(PROTO))}


def gateways(route: dict[str, Any]) -> list[str]:
    if "nexthops" in route:
        return sorted(nh["gateway"] for nh in route["nexthops"])
    return [route["gateway"]]


def test_install_single_and_ecmp(netns: Netns, installer: RouteInstaller) -> None:
    results = installer.apply([(net("10.50.0.0/24"), (GW1,)), (net("10.50.1.0/24"), (GW2, GW1))])
    assert results == [OpResult(net("10.50.0.0/24"), ok=True), OpResult(net("10.50.1.0/24"), ok=True)]
    routes = ours(netns)
    assert gateways(routes["10.50.0.0/24"]) == ["192.168.77.2"]
    assert routes["10.50.0.0/24"]["metric"] == 32 and routes["10.50.0.0/24"]["dev"] == "up0"
    assert gateways(routes["10.50.1.0/24"]) == ["192.168.77.2", "192.168.77.3"]
    assert installer.dump_own() == {net("10.50.0.0/24"): (GW1,), net("10.50.1.0/24"): (GW1, GW2)}


def test_replace_own_route_and_delete(netns: Netns, installer: RouteInstaller) -> None:
    installer.apply([(net("10.50.0.0/24"), (GW1,)), (net("10.50.1.0/24"), (GW1, GW2))])
    results = installer.apply([(net("10.50.0.0/24"), (GW2, GW3)), (net("10.50.1.0/24"), (GW3,))])
    assert all(r.ok for r in results)
    routes = ours(netns)
    assert gateways(routes["10.50.0.0/24"]) == ["192.168.77.3", "192.168.77.4"]
    assert gateways(routes["10.50.1.0/24"]) == ["192.168.77.4"]
    assert len(netns.routes("10.50.0.0/24")) == 1  # replaced, not appended
    results = installer.apply([(net("10.50.0.0/24"), None), (net("10.50.1.0/24"), None)])
    assert all(r.ok for r in results)
    assert ours(netns) == {}
    assert installer.apply([(net("10.50.0.0/24"), None)]) == [OpResult(net("10.50.0.0/24"), ok=True)]  # ESRCH


def test_foreign_route_is_a_collision_and_untouched(netns: Netns, installer: RouteInstaller) -> None:
    netns.ip("route", "add", "10.60.0.0/24", "via", "192.168.77.9", "proto", "static", "metric", "32")
    before = netns.routes("10.60.0.0/24")
    (result,) = installer.apply([(net("10.60.0.0/24"), (GW1,))])
    assert result.collision and not result.ok
    assert installer.collisions == 1 and installer.errors == 0
    assert netns.routes("10.60.0.0/24") == before
    (result,) = installer.apply([(net("10.60.0.0/24"), None)])  # nothing of ours there: no-op
    assert result.ok
    assert netns.routes("10.60.0.0/24") == before
    # the same prefix at another metric is another key: no collision
    netns.ip("route", "add", "10.61.0.0/24", "via", "192.168.77.9", "proto", "static", "metric", "100")
    assert installer.apply([(net("10.61.0.0/24"), (GW1,))])[0].ok
    assert len(netns.routes("10.61.0.0/24")) == 2


def test_replaced_by_foreign_route_is_not_overwritten(netns: Netns, installer: RouteInstaller) -> None:
    installer.apply([(net("10.62.0.0/24"), (GW1,))])
    # someone else replaces our route behind our back; our memory still says "ours"
    netns.ip("route", "replace", "10.62.0.0/24", "via", "192.168.77.9", "proto", "static", "metric", "32")
    (result,) = installer.apply([(net("10.62.0.0/24"), (GW2,))])
    assert result.collision
    (route,) = netns.routes("10.62.0.0/24")
    assert route["gateway"] == "192.168.77.9" and route["protocol"] == "static"
    installer.apply([(net("10.62.0.0/24"), None)])
    assert len(netns.routes("10.62.0.0/24")) == 1


def test_dump_own_after_restart(netns: Netns) -> None:
    netns.ip("route", "add", "10.70.0.0/24", "via", "192.168.77.9", "proto", "static", "metric", "32")
    netns.ip("route", "add", "blackhole", "10.70.1.0/24", "proto", str(PROTO), "metric", "32")
    with RouteInstaller(PROTO, MAIN, netns=netns.name) as first:
        first.apply([(net("10.70.2.0/24"), (GW1,)), (net("10.70.3.0/24"), (GW3, GW2))])
    with RouteInstaller(PROTO, MAIN, netns=netns.name) as second:
        assert second.dump_own() == {
            net("10.70.1.0/24"): (),
            net("10.70.2.0/24"): (GW1,),
            net("10.70.3.0/24"): (GW2, GW3),
        }
    # a restarted installer replaces its predecessor's routes (EEXIST -> dump says ours -> REPLACE),
    # even when its owner did not call dump_own first
    with RouteInstaller(PROTO, MAIN, netns=netns.name) as third:
        (result,) = third.apply([(net("10.70.2.0/24"), (GW2,))])
        assert result.ok and not result.collision
    assert gateways(ours(netns)["10.70.2.0/24"]) == ["192.168.77.3"]


def test_unreachable_gateway_is_an_error_not_an_exception(netns: Netns, installer: RouteInstaller) -> None:
    results = installer.apply(
        [(net("10.80.0.0/24"), (IPv4Address("203.0.113.1"),)), (net("10.80.1.0/24"), (GW1,))]
    )
    assert not results[0].ok and not results[0].collision
    assert results[0].error is not None and "ENETUNREACH" in results[0].error
    assert results[1].ok
    assert installer.errors == 1 and installer.retried == installer.retries
    assert list(ours(netns)) == ["10.80.1.0/24"]
    (empty,) = installer.apply([(net("10.80.2.0/24"), ())])
    assert not empty.ok and empty.error == "no next hop"


def test_other_table(netns: Netns) -> None:
    with RouteInstaller(PROTO, 100, netns=netns.name) as inst:
        assert inst.dump_own() == {}  # table 100 does not exist yet
        assert inst.apply([(net("10.90.0.0/24"), (GW1,))])[0].ok
        assert [r["dst"] for r in netns.routes("table", "100")] == ["10.90.0.0/24"]
        assert not netns.routes("10.90.0.0/24")  # not in main
        assert inst.dump_own() == {net("10.90.0.0/24"): (GW1,)}


def test_10k_batch(netns: Netns, installer: RouteInstaller, capsys: pytest.CaptureFixture[str]) -> None:
    prefixes = [IPv4Network(f"10.{100 + i // 65536}.{(i // 256) % 256}.{i % 256}/32") for i in range(10_000)]
    started = time.perf_counter()
    results = installer.apply([(p, (GW1,) if i % 2 else (GW1, GW2)) for i, p in enumerate(prefixes)])
    installed = time.perf_counter()
    assert all(r.ok for r in results)
    assert len(netns.routes("table", "main", "proto", str(PROTO))) == 10_000
    replaced = installer.apply([(p, (GW3,)) for p in prefixes])  # all EEXIST -> verified -> REPLACE
    replaced_at = time.perf_counter()
    assert all(r.ok for r in replaced)
    deleted = installer.apply([(p, None) for p in prefixes])
    deleted_at = time.perf_counter()
    assert all(r.ok for r in deleted)
    assert ours(netns) == {}
    with capsys.disabled():
        print(
            f"\n[installer] 10k: install {10_000 / (installed - started):,.0f}/s, "
            f"replace (EEXIST+dump+REPLACE) {10_000 / (replaced_at - installed):,.0f}/s, "
            f"delete {10_000 / (deleted_at - replaced_at):,.0f}/s"
        )


def test_failures_inside_a_large_batch_are_attributed_to_their_operations(
    netns: Netns, installer: RouteInstaller
) -> None:
    """Only failing requests are answered by the kernel (no ACK per route): every 97th route has an
    unreachable gateway, every 101st deletes a route that does not exist (ESRCH counts as done)."""
    bad_gw = IPv4Address("203.0.113.1")
    prefixes = [IPv4Network(f"10.{110 + i // 65536}.{(i // 256) % 256}.{i % 256}/32") for i in range(5_000)]
    ops: list[tuple[IPv4Network, tuple[IPv4Address, ...] | None]] = []
    for i, p in enumerate(prefixes):
        ops.append((p, None) if i % 101 == 0 else (p, (bad_gw,) if i % 97 == 0 else (GW1,)))
    results = installer.apply(ops)
    for i, (op, result) in enumerate(zip(ops, results, strict=True)):
        assert result.prefix == op[0]
        if i % 101 == 0:
            assert result.ok, result
        elif i % 97 == 0:
            assert not result.ok and result.error and not result.collision, result
        else:
            assert result.ok, result
    installed = ours(netns)
    expected = {str(p) for i, p in enumerate(prefixes) if i % 101 and i % 97}
    assert {k if "/" in k else f"{k}/32" for k in installed} == expected


def test_known_own_route_is_replaced_without_an_ownership_dump(
    netns: Netns, installer: RouteInstaller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ours`: the caller's view of the kernel (kept by the kernel's notifications) says the route is ours,
    so a change is one replace, not create + EEXIST + a dump of every route of ours."""
    installer.apply([(net("10.63.0.0/24"), (GW1,))])
    dumps: list[int] = []
    real_dump = installer.dump_own
    monkeypatch.setattr(installer, "dump_own", lambda **kw: dumps.append(1) or real_dump(**kw))
    changes = [(net("10.63.0.0/24"), (GW2, GW3)), (net("10.63.1.0/24"), (GW1,))]  # the second is not there
    results = installer.apply(changes, ours={net("10.63.0.0/24"), net("10.63.1.0/24")})
    assert all(r.ok for r in results) and dumps == []
    assert gateways(ours(netns)["10.63.0.0/24"]) == ["192.168.77.3", "192.168.77.4"]
    assert gateways(ours(netns)["10.63.1.0/24"]) == ["192.168.77.2"]  # vanished: created instead
