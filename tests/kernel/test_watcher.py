"""RouteWatcher against a real kernel, inside a throw-away network namespace, read from an event loop in that
namespace as bgpd reads it (`loop_thread`, see conftest)."""

from __future__ import annotations

import threading
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from bgpd.kernel import RouteAdded, RouteEvent, RouteRemoved, RouteWatcher
from bgpd.model import KernelRoute

from .conftest import POLL_DEADLINE, LoopThread, Netns, View, poll_until

pytestmark = pytest.mark.kernel

MAIN = 254
BURST = 10_000


@pytest.fixture
def view() -> View:
    return View()


@pytest.fixture
def watcher(loop_thread: LoopThread, view: View) -> RouteWatcher:
    return loop_thread.start(RouteWatcher(MAIN, view))  # stopped with the loop


def _burst_file(tmp_path: Path, verb: str, count: int, extra: str = "dev cali1234 proto boot") -> Path:
    path = tmp_path / f"{verb}.batch"
    lines = [f"route {verb} 10.100.{i // 256}.{i % 256}/32 {extra}" for i in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_start_snapshot_has_existing_routes(netns: Netns, view: View, loop_thread: LoopThread) -> None:
    netns.ip("route", "add", "10.9.0.0/16", "via", "192.168.77.2", "proto", "static", "metric", "7")
    w = RouteWatcher(MAIN, view)
    loop_thread.start(w)
    try:
        assert view.reasons == ["start"]  # delivered before start() returns
        (route,) = view.get("10.9.0.0/16")
        assert route == KernelRoute(
            prefix=IPv4Network("10.9.0.0/16"),
            kind="unicast",
            protocol=4,
            table=MAIN,
            ifname="up0",
            gateways=(IPv4Address("192.168.77.2"),),
            priority=7,
        )
        (connected,) = view.get("192.168.77.0/24")
        assert connected.protocol == 2 and connected.ifname == "up0" and connected.gateways == ()
        assert not view.get("192.168.77.1/32")  # the local route lives in table local, not main
    finally:
        loop_thread.stop(w)
        loop_thread.stop(w)  # idempotent
    assert not w.running


def test_add_and_delete_interface_route(netns: Netns, view: View, watcher: RouteWatcher) -> None:
    netns.ip("route", "add", "10.20.1.2/32", "dev", "cali1234", "proto", "boot")
    poll_until(lambda: bool(view.get("10.20.1.2/32")), "10.20.1.2/32 added")
    (route,) = view.get("10.20.1.2/32")
    assert route.ifname == "cali1234" and route.protocol == 3 and route.kind == "unicast"
    assert view.has_event(RouteAdded, "10.20.1.2/32")
    netns.ip("route", "del", "10.20.1.2/32", "dev", "cali1234", "proto", "boot")
    poll_until(lambda: view.has_event(RouteRemoved, "10.20.1.2/32"), "10.20.1.2/32 removed")
    assert not view.get("10.20.1.2/32")


def test_blackhole_and_multipath(netns: Netns, view: View, watcher: RouteWatcher) -> None:
    netns.ip("route", "add", "blackhole", "10.20.1.0/26", "proto", "80")
    netns.ip(
        "route", "add", "10.30.0.0/24", "proto", "12", "metric", "32",
        "nexthop", "via", "192.168.77.3", "nexthop", "via", "192.168.77.2",
    )  # fmt: skip
    poll_until(lambda: bool(view.get("10.20.1.0/26") and view.get("10.30.0.0/24")), "routes added")
    (blackhole,) = view.get("10.20.1.0/26")
    assert blackhole.kind == "blackhole" and blackhole.protocol == 80 and blackhole.ifname is None
    (ecmp,) = view.get("10.30.0.0/24")
    assert ecmp.gateways == (IPv4Address("192.168.77.2"), IPv4Address("192.168.77.3"))
    assert ecmp.ifname == "up0" and ecmp.priority == 32  # both next hops leave through up0


def test_other_tables_not_reported(netns: Netns, view: View, watcher: RouteWatcher) -> None:
    netns.ip("route", "add", "10.40.0.0/24", "dev", "cali1234", "table", "100")
    netns.ip("route", "add", "10.40.1.0/24", "dev", "cali1234")  # marker in main, added after
    poll_until(lambda: bool(view.get("10.40.1.0/24")), "marker route in main")
    assert not view.get("10.40.0.0/24")
    with view.lock:
        assert all(route.table == MAIN for route in view.routes.values())


def test_watch_non_main_table(netns: Netns, view: View, loop_thread: LoopThread) -> None:
    w = RouteWatcher(100, view)  # table 100 does not exist yet: empty snapshot
    loop_thread.start(w)
    try:
        assert view.reasons == ["start"] and not view.routes
        netns.ip("route", "add", "10.41.0.0/24", "dev", "cali1234", "table", "100")
        poll_until(lambda: bool(view.get("10.41.0.0/24")), "route in table 100")
        assert view.get("10.41.0.0/24")[0].table == 100
    finally:
        loop_thread.stop(w)


def test_burst_of_10k_then_flush(
    netns: Netns, view: View, watcher: RouteWatcher, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _burst_file(tmp_path, "add", BURST)
    started = time.monotonic()
    netns.batch(path)
    batch_done = time.monotonic()
    poll_until(lambda: view.count(3) == BURST, f"{BURST} routes seen")
    seen = time.monotonic()
    with capsys.disabled():
        print(
            f"\n[watcher] {BURST} routes: ip -batch took {batch_done - started:.3f}s, all delivered "
            f"{seen - started:.3f}s after start (resyncs={watcher.resyncs})"
        )
    (sample,) = view.get("10.100.39.15/32")
    assert sample.ifname == "cali1234"
    netns.ip("route", "flush", "proto", "boot")
    poll_until(lambda: view.count(3) == 0, "flushed routes gone")
    assert view.get("192.168.77.0/24")  # the others stay


def test_link_delete_rereads_that_link(netns: Netns, view: View, watcher: RouteWatcher) -> None:
    netns.ip("route", "add", "10.20.1.2/32", "dev", "cali1234", "proto", "boot")
    netns.ip("route", "add", "10.20.9.0/24", "via", "192.168.77.9", "proto", "boot")
    poll_until(lambda: bool(view.get("10.20.1.2/32") and view.get("10.20.9.0/24")), "routes added")
    netns.ip("link", "del", "cali1234")  # the kernel flushes 10.20.1.2/32 without RTM_DELROUTE
    poll_until(lambda: not view.get("10.20.1.2/32"), "route of deleted link gone")
    poll_until(lambda: any(x.name == "cali1234" for x in view.lost), "LinkLost reported")
    assert watcher.resyncs >= 1 and view.reasons == ["start"]  # no whole-table dump
    lost = [x for x in view.lost if x.name == "cali1234"]  # down, then deleted (its veth peer goes too)
    assert any([str(r.prefix) for r in x.routes] == ["10.20.1.2/32"] for x in lost)
    assert all(x.flushed for x in lost)
    assert view.get("10.20.9.0/24")


def test_link_down_resyncs(netns: Netns, view: View, watcher: RouteWatcher) -> None:
    netns.ip("route", "add", "10.20.9.0/24", "via", "192.168.77.9", "proto", "boot")
    netns.ip("route", "add", "10.20.1.2/32", "dev", "cali1234", "proto", "boot")
    poll_until(lambda: bool(view.get("10.20.9.0/24") and view.get("10.20.1.2/32")), "routes added")
    netns.ip("link", "set", "up0", "down")  # flushes the connected and the gateway route silently
    poll_until(lambda: not view.get("10.20.9.0/24"), "routes through the downed link gone")
    assert not view.get("192.168.77.0/24") and view.get("10.20.1.2/32")
    poll_until(lambda: bool(view.lost), "LinkLost reported")
    assert view.reasons == ["start"]
    carried = {str(r.prefix) for lost in view.lost for r in lost.routes}
    assert {"192.168.77.0/24", "10.20.9.0/24"} <= carried and "10.20.1.2/32" not in carried
    (lost,) = [x for x in view.lost if x.name == "up0"]
    assert lost.flushed and [str(n) for n in lost.networks] == ["192.168.77.0/24"]


def test_link_rename_reports_new_device_name(netns: Netns, view: View, watcher: RouteWatcher) -> None:
    netns.ip("route", "add", "10.20.1.2/32", "dev", "cali1234", "proto", "boot")
    poll_until(lambda: bool(view.get("10.20.1.2/32")), "route added")
    netns.ip("link", "set", "cali1234", "down")
    netns.ip("link", "set", "cali1234", "name", "cali9")
    netns.ip("link", "set", "cali9", "up")
    poll_until(lambda: not view.get("10.20.1.2/32"), "route flushed with the link down")
    netns.ip("route", "add", "10.20.1.3/32", "dev", "cali9", "proto", "boot")
    poll_until(lambda: [r.ifname for r in view.get("10.20.1.3/32")] == ["cali9"], "renamed device")


def test_address_removal_rereads_that_link(netns: Netns, view: View, watcher: RouteWatcher) -> None:
    netns.ip("route", "add", "10.20.9.0/24", "via", "192.168.77.9", "proto", "boot")
    poll_until(lambda: bool(view.get("10.20.9.0/24")), "route added")
    netns.ip("addr", "flush", "dev", "up0")  # the gateway route goes without RTM_DELROUTE
    poll_until(lambda: not view.get("10.20.9.0/24"), "gateway route gone")
    poll_until(lambda: any(x.flushed for x in view.lost), "LinkLost(flushed) reported")
    assert view.reasons == ["start"]
    assert [str(n) for x in view.lost for n in x.networks] == ["192.168.77.0/24"]


def test_removing_one_of_two_addresses_flushes_nothing(
    netns: Netns, view: View, watcher: RouteWatcher
) -> None:
    """Linux flushes a device's routes when it loses its last IPv4 address, not when a second one (a VIP)
    goes: LinkLost says so, and a daemon need not re-read its routes for every VIP move."""
    netns.ip("addr", "add", "192.168.78.1/24", "dev", "up0")
    netns.ip("route", "add", "10.20.9.0/24", "via", "192.168.77.9", "proto", "boot")
    poll_until(lambda: bool(view.get("10.20.9.0/24")), "route added")
    netns.ip("addr", "del", "192.168.78.1/24", "dev", "up0")
    poll_until(lambda: bool(view.lost), "LinkLost reported")
    (lost,) = view.lost
    assert not lost.flushed and "192.168.78.0/24" in [str(n) for n in lost.networks]
    assert view.get("10.20.9.0/24") and netns.routes("10.20.9.0/24")


def test_own_writes_are_not_reported_but_others_changes_to_them_are(
    netns: Netns, view: View, loop_thread: LoopThread
) -> None:
    """ignore_sender: the installer's own adds and deletes never reach the watcher (kernel-side filter);
    `ip route del` of one of its routes, or a route of its protocol added by someone else, does."""
    from bgpd.kernel import RouteInstaller

    with RouteInstaller(12, MAIN, netns=netns.name) as installer:
        w = RouteWatcher(MAIN, view, ignore_sender=installer.portid)
        loop_thread.start(w)
        try:
            assert w._sender_filtered  # the kernel drops them: bgpd's process is not even woken
            gw = (IPv4Address("192.168.77.2"),)
            results = installer.apply([(IPv4Network("10.60.0.1/32"), gw), (IPv4Network("10.60.0.2/32"), gw)])
            assert all(r.ok for r in results)
            netns.ip("route", "add", "10.60.0.9/32", "dev", "cali1234", "proto", "boot")  # marker
            poll_until(lambda: bool(view.get("10.60.0.9/32")), "marker route")
            assert not view.has_event(RouteAdded, "10.60.0.1/32")
            assert installer.apply([(IPv4Network("10.60.0.2/32"), None)])[0].ok
            netns.ip("route", "del", "10.60.0.1/32", "proto", "12", "metric", "32")  # by somebody else
            poll_until(lambda: view.has_event(RouteRemoved, "10.60.0.1/32"), "foreign delete of ours")
            netns.ip("route", "add", "10.60.0.3/32", "via", "192.168.77.3", "proto", "12")
            poll_until(lambda: view.has_event(RouteAdded, "10.60.0.3/32"), "our protocol, other writer")
            assert not view.has_event(RouteRemoved, "10.60.0.2/32")
        finally:
            loop_thread.stop(w)


def test_overflow_resyncs_and_view_stays_complete(
    netns: Netns, loop_thread: LoopThread, tmp_path: Path
) -> None:
    gate = threading.Event()
    view = View()

    def stalling_consumer(events: list[RouteEvent]) -> None:
        # Stall the loop on the first event batch after the start, so the burst overflows the tiny buffer.
        if view.reasons:
            gate.wait(POLL_DEADLINE)
        view(events)

    w = RouteWatcher(MAIN, stalling_consumer, rcvbuf=4096)
    loop_thread.start(w)
    try:
        netns.ip("route", "add", "10.20.1.2/32", "dev", "cali1234", "proto", "boot")
        netns.batch(_burst_file(tmp_path, "add", 3000))
        gate.set()
        poll_until(lambda: view.count(3) == 3001, "3001 routes seen")
        assert "overflow" in view.reasons and w.resyncs >= 1 and w.overflows >= 1
        netns.batch(_burst_file(tmp_path, "del", 3000))
        poll_until(lambda: view.count(3) == 1, "3000 routes gone")
        expected = {r["dst"] for r in netns.routes()}
        with view.lock:
            assert {str(route.prefix) for route in view.routes.values()} == {
                d if "/" in d else f"{d}/32" for d in expected
            }
    finally:
        gate.set()
        loop_thread.stop(w)


def test_own_protocol_is_not_reported_other_protocols_are(
    netns: Netns, view: View, loop_thread: LoopThread
) -> None:
    w = RouteWatcher(MAIN, view, ignore_protocol=12)
    loop_thread.start(w)
    try:
        netns.ip("route", "add", "10.50.0.1/32", "dev", "cali1234", "proto", "12")  # bgpd's own
        netns.ip("route", "add", "10.50.0.2/32", "dev", "cali1234", "proto", "boot")  # then a marker
        poll_until(lambda: bool(view.get("10.50.0.2/32")), "marker route")
        assert not view.get("10.50.0.1/32") and not view.has_event(RouteAdded, "10.50.0.1/32")
    finally:
        loop_thread.stop(w)


def test_kernel_side_filter_drops_only_that_protocols_route_notifications(netns: Netns) -> None:
    """The BPF program attached to the watcher's subscription socket: proto 12 route messages never reach
    the socket; other protocols' routes and link messages do."""
    import socket

    from bgpd.kernel import _netlink as nl

    received: list[tuple[int, int]] = []  # (message type, rtm_protocol or -1)

    def listen() -> None:
        from bgpd.kernel._netlink import enter_netns

        enter_netns(netns.name)
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nl.NETLINK_ROUTE)
        nl.drop_protocol_filter(s, 12)
        s.bind((0, nl.RTMGRP_IPV4_ROUTE | nl.RTMGRP_LINK))
        s.settimeout(POLL_DEADLINE)
        ready.set()
        try:
            while True:
                data = s.recv(65536)
                for mtype, _f, _s, _pid, off, _end in nl.iter_messages(memoryview(data), len(data)):
                    proto = data[off + 5] if mtype in (nl.RTM_NEWROUTE, nl.RTM_DELROUTE) else -1
                    received.append((mtype, proto))
                    if mtype == nl.RTM_NEWROUTE and proto == 3:
                        return  # the marker: everything sent before it has been seen
        finally:
            s.close()

    ready = threading.Event()
    thread = threading.Thread(target=listen)
    thread.start()
    assert ready.wait(POLL_DEADLINE)
    netns.ip("route", "add", "10.51.0.1/32", "dev", "cali1234", "proto", "12")
    netns.ip("route", "del", "10.51.0.1/32", "dev", "cali1234", "proto", "12")
    netns.ip("route", "add", "10.51.0.2/32", "dev", "cali1234", "proto", "4")
    netns.ip("link", "set", "cali1234", "mtu", "1400")  # a link message passes too
    netns.ip("route", "add", "10.51.0.3/32", "dev", "cali1234", "proto", "boot")  # marker
    thread.join(POLL_DEADLINE)
    assert not thread.is_alive()
    protocols = [proto for mtype, proto in received if mtype in (nl.RTM_NEWROUTE, nl.RTM_DELROUTE)]
    assert 12 not in protocols and 4 in protocols and protocols[-1] == 3
    assert any(mtype == nl.RTM_NEWLINK for mtype, _ in received)
