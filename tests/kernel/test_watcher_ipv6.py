"""RouteWatcher with IPv6 (`families`), against a real kernel, inside a throw-away dual-stack namespace, read
from an event loop in that namespace as bgpd reads it (`loop_thread6`, see conftest)."""

from __future__ import annotations

import socket
import threading
import time
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from pathlib import Path
from typing import Any

import pytest

from bgpd.kernel import LinkLost, RouteAdded, RouteEvent, RouteInstaller, RouteRemoved, RouteWatcher, Snapshot
from bgpd.model import KernelRoute

from .conftest import POLL_DEADLINE, LoopThread, Netns, View, poll_until

pytestmark = pytest.mark.kernel

MAIN = 254
BURST = 10_000
BOTH = (socket.AF_INET, socket.AF_INET6)


@pytest.fixture
def view() -> View:
    return View()


@pytest.fixture
def watcher(loop_thread6: LoopThread, view: View) -> RouteWatcher:
    return loop_thread6.start(RouteWatcher(MAIN, view, families=BOTH))  # stopped with the loop


def kernel_keys6(netns: Netns) -> set[tuple[str, int]]:
    """(prefix, metric) of the IPv6 routes of table main, link-local destinations left out."""
    keys = set()
    for route in netns.routes6("table", "main"):
        dst = route["dst"]
        prefix = ip_network("::/0" if dst == "default" else dst if "/" in dst else f"{dst}/128")
        if not prefix.is_link_local:
            keys.add((str(prefix), route.get("metric", 0)))
    return keys


def view_keys6(view: View) -> set[tuple[str, int]]:
    with view.lock:
        return {(str(r.prefix), r.priority) for r in view.routes.values() if r.prefix.version == 6}


def gateways_of(route: dict[str, Any]) -> list[str]:
    if "nexthops" in route:
        return sorted(nh["gateway"] for nh in route["nexthops"])
    return [route["gateway"]] if "gateway" in route else []


def test_start_snapshot_has_both_families(netns6: Netns, view: View, loop_thread6: LoopThread) -> None:
    ip = netns6.ip
    ip("-6", "route", "add", "fd00:9::/64", "via", "fd00:77::2", "proto", "static", "metric", "7")
    ip("-6", "route", "add", "fd00:a::/64", "via", "fe80::2", "dev", "up1", "proto", "static", "metric", "7")
    ip("-6", "route", "add", "fd00:20::1/128", "dev", "cali1234", "proto", "boot")
    ip("-6", "route", "add", "blackhole", "fd00:20::/122", "proto", "80")
    ip("route", "add", "10.9.0.0/16", "via", "192.168.77.2", "proto", "static", "metric", "7")
    w = RouteWatcher(MAIN, view, families=BOTH)
    loop_thread6.start(w)
    try:
        assert view.reasons == ["start"]
        (route,) = view.get("fd00:9::/64")
        assert route == KernelRoute(
            prefix=IPv6Network("fd00:9::/64"),  # type: ignore[arg-type]
            kind="unicast",
            protocol=4,
            table=MAIN,
            ifname="up0",
            gateways=(IPv6Address("fd00:77::2"),),  # type: ignore[arg-type]
            priority=7,
        )
        (link_local,) = view.get("fd00:a::/64")
        assert link_local.gateways == (IPv6Address("fe80::2%up1"),) and link_local.ifname == "up1"
        (workload,) = view.get("fd00:20::1/128")
        assert workload.ifname == "cali1234" and workload.protocol == 3 and workload.priority == 1024
        (block,) = view.get("fd00:20::/122")
        assert block.kind == "blackhole" and block.ifname is None and block.gateways == ()  # not `dev lo`
        (connected,) = view.get("fd00:77::/64")
        assert connected.protocol == 2 and connected.ifname == "up0" and connected.gateways == ()
        assert view.get("10.9.0.0/16") and view.get("192.168.77.0/24")  # IPv4 as before
        assert not any(r.prefix.version == 6 and r.prefix.is_link_local for r in view.routes.values())
        assert view_keys6(view) == kernel_keys6(netns6)
    finally:
        loop_thread6.stop(w)


def test_default_watcher_reports_no_ipv6(netns6: Netns, view: View, loop_thread6: LoopThread) -> None:
    """Without `families`, the watcher is what it was: IPv4 only, even on a dual-stack host (the speaker's
    export code would misread IPv6 prefixes), and IPv4 networks only in LinkLost."""
    netns6.ip("-6", "route", "add", "fd00:9::/64", "via", "fd00:77::2", "proto", "boot")
    w = RouteWatcher(MAIN, view)
    loop_thread6.start(w)
    try:
        assert w.families == (socket.AF_INET,)
        assert view.get("192.168.77.0/24") and all(r.prefix.version == 4 for r in view.routes.values())
        netns6.ip("-6", "route", "add", "fd00:20::1/128", "dev", "cali1234", "proto", "boot")
        netns6.ip("-6", "route", "del", "fd00:9::/64")
        netns6.ip("route", "add", "10.20.1.2/32", "dev", "cali1234", "proto", "boot")  # marker
        poll_until(lambda: bool(view.get("10.20.1.2/32")), "IPv4 marker")
        netns6.ip("addr", "flush", "dev", "up0")  # both families' addresses leave
        poll_until(lambda: bool(view.lost), "LinkLost")
        with view.lock:
            events = list(view.events)
        for event in events:
            if isinstance(event, Snapshot):
                assert all(r.prefix.version == 4 for r in event.routes)
            elif isinstance(event, RouteAdded | RouteRemoved):
                assert event.route.prefix.version == 4, event
            elif isinstance(event, LinkLost):
                assert all(n.version == 4 for n in event.networks), event
                assert all(r.prefix.version == 4 for r in event.routes), event
        assert [str(n) for x in view.lost for n in x.networks] == ["192.168.77.0/24"]
    finally:
        loop_thread6.stop(w)


def test_families_are_checked() -> None:
    with pytest.raises(ValueError):
        RouteWatcher(MAIN, lambda events: None, families=())
    with pytest.raises(ValueError):
        RouteWatcher(MAIN, lambda events: None, families=(socket.AF_PACKET,))


def test_ipv6_only_watcher(netns6: Netns, view: View, loop_thread6: LoopThread) -> None:
    w = RouteWatcher(MAIN, view, families=(socket.AF_INET6,))
    loop_thread6.start(w)
    try:
        assert view.get("fd00:77::/64") and not view.get("192.168.77.0/24")
        netns6.ip("route", "add", "10.20.1.2/32", "dev", "cali1234", "proto", "boot")
        netns6.ip("-6", "route", "add", "fd00:20::1/128", "dev", "cali1234", "proto", "boot")
        poll_until(lambda: bool(view.get("fd00:20::1/128")), "IPv6 route")
        assert not view.get("10.20.1.2/32")
    finally:
        loop_thread6.stop(w)


def test_add_and_delete_ipv6_routes(netns6: Netns, view: View, watcher: RouteWatcher) -> None:
    netns6.ip("-6", "route", "add", "fd00:20::1/128", "dev", "cali1234", "proto", "boot")
    poll_until(lambda: bool(view.get("fd00:20::1/128")), "workload route added")
    (route,) = view.get("fd00:20::1/128")
    assert route.ifname == "cali1234" and route.kind == "unicast" and route.protocol == 3
    netns6.ip("-6", "route", "add", "blackhole", "fd00:20::/122", "proto", "80")
    poll_until(lambda: bool(view.get("fd00:20::/122")), "block added")
    assert view.get("fd00:20::/122")[0].kind == "blackhole"
    netns6.ip("-6", "route", "del", "fd00:20::1/128", "dev", "cali1234")
    poll_until(lambda: view.has_event(RouteRemoved, "fd00:20::1/128"), "workload route removed")
    assert not view.get("fd00:20::1/128")
    # the same prefix at another metric is another key
    netns6.ip("-6", "route", "add", "fd00:21::/64", "via", "fd00:77::2", "metric", "10")
    netns6.ip("-6", "route", "add", "fd00:21::/64", "via", "fd00:77::3", "metric", "20")
    poll_until(lambda: len(view.get("fd00:21::/64")) == 2, "two metrics")
    netns6.ip("-6", "route", "del", "fd00:21::/64", "metric", "10")
    poll_until(lambda: len(view.get("fd00:21::/64")) == 1, "one left")
    assert view.get("fd00:21::/64")[0].priority == 20
    assert view_keys6(view) == kernel_keys6(netns6)


def test_ecmp_next_hop_removal_keeps_the_others(netns6: Netns, view: View, watcher: RouteWatcher) -> None:
    """The kernel announces the removal of one next hop of an IPv6 ECMP route as an RTM_DELROUTE of that
    next hop alone; the watcher reports the route that is left, not its removal."""
    ip = netns6.ip
    ip(
        "-6", "route", "add", "fd00:30::/64", "proto", "static", "metric", "32",
        "nexthop", "via", "fd00:77::2", "nexthop", "via", "fd00:78::3",
        "nexthop", "via", "fe80::4", "dev", "up0",
    )  # fmt: skip
    poll_until(lambda: bool(view.get("fd00:30::/64")), "ECMP route added")
    (ecmp,) = view.get("fd00:30::/64")
    assert ecmp.gateways == (
        IPv6Address("fd00:77::2"),
        IPv6Address("fd00:78::3"),
        IPv6Address("fe80::4%up0"),
    )
    assert ecmp.ifname is None and ecmp.priority == 32
    ip("-6", "route", "del", "fd00:30::/64", "via", "fd00:78::3", "metric", "32")
    poll_until(lambda: len(view.get("fd00:30::/64")[0].gateways) == 2, "one next hop removed")
    (left,) = view.get("fd00:30::/64")
    assert left.gateways == (IPv6Address("fd00:77::2"), IPv6Address("fe80::4%up0"))
    assert left.ifname == "up0"  # both left go through up0
    assert not view.has_event(RouteRemoved, "fd00:30::/64")
    ip("-6", "route", "append", "fd00:30::/64", "via", "fd00:78::5", "proto", "static", "metric", "32")
    poll_until(lambda: len(view.get("fd00:30::/64")[0].gateways) == 3, "next hop appended")
    assert IPv6Address("fd00:78::5") in view.get("fd00:30::/64")[0].gateways
    # a flush deletes next hop by next hop: the route is gone only after the last one
    ip("-6", "route", "flush", "proto", "static")
    poll_until(lambda: not view.get("fd00:30::/64"), "ECMP route flushed")
    removals = [
        e for e in view.events if isinstance(e, RouteRemoved) and str(e.route.prefix) == "fd00:30::/64"
    ]
    assert len(removals) == 1
    # a whole ECMP route deleted at once: one removal
    ip(
        "-6", "route", "add", "fd00:31::/64", "proto", "static",
        "nexthop", "via", "fd00:77::2", "nexthop", "via", "fd00:77::3",
    )  # fmt: skip
    poll_until(lambda: bool(view.get("fd00:31::/64")), "second ECMP route")
    ip("-6", "route", "del", "fd00:31::/64")
    poll_until(lambda: not view.get("fd00:31::/64"), "second ECMP route deleted")
    assert view_keys6(view) == kernel_keys6(netns6)


def test_burst_of_10k_ipv6_then_flush(
    netns6: Netns, view: View, watcher: RouteWatcher, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "add6.batch"
    path.write_text("".join(f"route add fd00:100::{i:x}/128 dev cali1234 proto boot\n" for i in range(BURST)))
    started = time.monotonic()
    netns6.ip("-6", "-batch", str(path))
    batch_done = time.monotonic()
    poll_until(lambda: view.count(3) == BURST, f"{BURST} IPv6 routes seen")
    seen = time.monotonic()
    with capsys.disabled():
        print(
            f"\n[watcher] {BURST} IPv6 routes: ip -6 -batch took {batch_done - started:.3f}s, all delivered "
            f"{seen - started:.3f}s after start (resyncs={watcher.resyncs})"
        )
    assert view.reasons == ["start"]  # nothing lost: no resync needed
    (sample,) = view.get("fd00:100::270f/128")
    assert sample.ifname == "cali1234" and sample.prefix == IPv6Network("fd00:100::270f/128")
    assert view_keys6(view) == kernel_keys6(netns6)
    netns6.ip("-6", "route", "flush", "proto", "boot")
    poll_until(lambda: view.count(3) == 0, "flushed routes gone")
    assert view.get("fd00:77::/64")


def test_link_down_rereads_both_families(netns6: Netns, view: View, watcher: RouteWatcher) -> None:
    ip = netns6.ip
    ip("-6", "route", "add", "fd00:9::/64", "via", "fd00:77::9", "proto", "boot")
    ip("route", "add", "10.20.9.0/24", "via", "192.168.77.9", "proto", "boot")
    ip("-6", "route", "add", "fd00:20::1/128", "dev", "cali1234", "proto", "boot")
    poll_until(lambda: bool(view.get("fd00:9::/64") and view.get("10.20.9.0/24")), "routes added")
    ip("link", "set", "up0", "down")
    poll_until(
        lambda: not view.get("fd00:9::/64") and not view.get("10.20.9.0/24"), "routes through up0 gone"
    )
    poll_until(lambda: any(x.name == "up0" for x in view.lost), "LinkLost(up0)")
    assert view.reasons == ["start"] and watcher.resyncs >= 1  # that device re-read, not the table
    assert not view.get("fd00:77::/64") and view.get("fd00:20::1/128") and view.get("fd00:78::/64")
    lost = [x for x in view.lost if x.name == "up0"]
    assert all(x.flushed for x in lost)
    networks = {str(n) for x in lost for n in x.networks}
    assert {"192.168.77.0/24", "fd00:77::/64"} <= networks
    assert "fd00:9::/64" in {str(r.prefix) for x in lost for r in x.routes}
    assert view_keys6(view) == kernel_keys6(netns6)


def test_link_delete_rereads_that_link(netns6: Netns, view: View, watcher: RouteWatcher) -> None:
    netns6.ip("-6", "route", "add", "fd00:20::1/128", "dev", "cali1234", "proto", "boot")
    netns6.ip("-6", "route", "add", "fd00:9::/64", "via", "fd00:77::9", "proto", "boot")
    poll_until(lambda: bool(view.get("fd00:20::1/128") and view.get("fd00:9::/64")), "routes added")
    netns6.ip("link", "del", "cali1234")
    poll_until(lambda: not view.get("fd00:20::1/128"), "route of deleted link gone")
    poll_until(lambda: any(x.name == "cali1234" for x in view.lost), "LinkLost reported")
    assert view.reasons == ["start"] and view.get("fd00:9::/64")
    assert any("fd00:20::1/128" in [str(r.prefix) for r in x.routes] for x in view.lost)
    assert view_keys6(view) == kernel_keys6(netns6)


def test_ipv6_address_removal_rereads_that_link(netns6: Netns, view: View, watcher: RouteWatcher) -> None:
    """An IPv6 address leaving takes its prefix route (announced) and flushes nothing else: LinkLost
    names its network, not flushed; a route through a gateway of that network stays, as in the kernel."""
    netns6.ip("-6", "route", "add", "fd00:9::/64", "via", "fd00:77::9", "proto", "boot")
    poll_until(lambda: bool(view.get("fd00:9::/64")), "route added")
    netns6.ip("-6", "addr", "del", "fd00:77::1/64", "dev", "up0")
    poll_until(lambda: bool(view.lost), "LinkLost reported")
    poll_until(lambda: not view.get("fd00:77::/64"), "prefix route gone")
    (lost,) = view.lost
    assert lost.name == "up0" and not lost.flushed
    assert "fd00:77::/64" in [str(n) for n in lost.networks]
    assert "192.168.77.0/24" in [str(n) for n in lost.networks]  # the device's networks, both families
    assert view.reasons == ["start"] and watcher.resyncs == 1  # up0 re-read (it carries fd00:9::/64)
    assert bool(view.get("fd00:9::/64")) == bool(netns6.routes6("fd00:9::/64"))
    assert view_keys6(view) == kernel_keys6(netns6)
    # the address comes back: a LinkUp, and its network is known again for the next loss
    netns6.ip("-6", "addr", "add", "fd00:77::1/64", "dev", "up0", "nodad")
    poll_until(lambda: bool(view.get("fd00:77::/64")), "prefix route back")


def test_own_ipv6_writes_are_not_reported_but_others_changes_are(
    netns6: Netns, view: View, loop_thread6: LoopThread
) -> None:
    """The kernel-side sender filter works for IPv6 notifications too."""
    with RouteInstaller(12, MAIN, netns=netns6.name) as installer:
        w = RouteWatcher(MAIN, view, ignore_sender=installer.portid, own_protocol=12, families=BOTH)
        loop_thread6.start(w)
        try:
            assert w._sender_filtered
            gw = (IPv6Address("fd00:77::2"),)
            ecmp = (IPv6Address("fd00:77::3"), IPv6Address("fe80::3%up1"))
            results = installer.apply(
                [
                    (IPv6Network("fd00:60::1/128"), gw),
                    (IPv6Network("fd00:60::2/128"), ecmp),
                    (IPv4Network("10.60.0.1/32"), (IPv4Address("192.168.77.2"),)),
                ]
            )
            assert all(r.ok for r in results), results
            netns6.ip("-6", "route", "add", "fd00:60::9/128", "dev", "cali1234", "proto", "boot")  # marker
            poll_until(lambda: bool(view.get("fd00:60::9/128")), "marker route")
            assert not view.get("fd00:60::1/128") and not view.get("fd00:60::2/128")
            assert not view.get("10.60.0.1/32")
            assert installer.apply([(IPv6Network("fd00:60::1/128"), None)])[0].ok
            netns6.ip("-6", "route", "del", "fd00:60::2/128", "proto", "12", "metric", "32")  # somebody else
            poll_until(lambda: view.has_event(RouteRemoved, "fd00:60::2/128"), "foreign delete of ours")
            netns6.ip("-6", "route", "add", "fd00:60::3/128", "via", "fd00:77::3", "proto", "12")
            poll_until(lambda: view.has_event(RouteAdded, "fd00:60::3/128"), "our protocol, other writer")
            assert not view.has_event(RouteRemoved, "fd00:60::1/128")
        finally:
            loop_thread6.stop(w)


def test_ignored_protocol_is_dropped_for_ipv6_too(
    netns6: Netns, view: View, loop_thread6: LoopThread
) -> None:
    """The kernel-side protocol filter (a daemon that installs nothing) reads the same rtmsg byte in IPv6
    route notifications."""
    w = RouteWatcher(MAIN, view, ignore_protocol=12, families=BOTH)
    loop_thread6.start(w)
    try:
        netns6.ip("-6", "route", "add", "fd00:50::1/128", "dev", "cali1234", "proto", "12")
        netns6.ip("-6", "route", "add", "fd00:50::2/128", "dev", "cali1234", "proto", "boot")  # marker
        poll_until(lambda: bool(view.get("fd00:50::2/128")), "marker route")
        assert not view.get("fd00:50::1/128") and not view.has_event(RouteAdded, "fd00:50::1/128")
    finally:
        loop_thread6.stop(w)


def test_overflow_resyncs_both_families(netns6: Netns, loop_thread6: LoopThread, tmp_path: Path) -> None:
    gate = threading.Event()
    view = View()

    def stalling_consumer(events: list[RouteEvent]) -> None:
        if view.reasons:
            gate.wait(POLL_DEADLINE)
        view(events)

    w = RouteWatcher(MAIN, stalling_consumer, rcvbuf=4096, families=BOTH)
    loop_thread6.start(w)
    try:
        netns6.ip("route", "add", "10.20.1.2/32", "dev", "cali1234", "proto", "boot")
        path = tmp_path / "add6.batch"
        path.write_text(
            "".join(f"route add fd00:100::{i:x}/128 dev cali1234 proto boot\n" for i in range(3000))
        )
        netns6.ip("-6", "-batch", str(path))
        gate.set()
        poll_until(lambda: view.count(3) == 3001, "3001 routes seen")
        assert "overflow" in view.reasons and w.overflows >= 1
        assert view.get("10.20.1.2/32") and view_keys6(view) == kernel_keys6(netns6)
    finally:
        gate.set()
        loop_thread6.stop(w)
