"""RouteInstaller and RouteWatcher with next hops through a device, onlink (Calico's IP-in-IP:
`via G dev tunl0 onlink`), against a real kernel inside a throw-away namespace. This kernel has no ipip
module: a TUN device named `tunl0` (with the host's /32 tunnel address, as Felix would give it) stands in
for it."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from bgpd.kernel import OpResult, RouteInstaller, RouteWatcher
from bgpd.kernel import _netlink as nl
from bgpd.kernel.installer import Change
from bgpd.model import Hop, LinkUp

from .conftest import LoopThread, Netns, View, poll_until
from .test_installer import MAIN, PROTO, ours

pytestmark = pytest.mark.kernel

GW1, GW2 = IPv4Address("192.168.77.2"), IPv4Address("192.168.77.3")
FAR1, FAR2 = IPv4Address("192.168.200.2"), IPv4Address("192.168.201.2")  # behind a router: tunnel
P1, P2 = IPv4Network("10.20.5.0/26"), IPv4Network("10.20.6.0/26")


def tunl0(netns: Netns) -> None:
    netns.ip("tuntap", "add", "dev", "tunl0", "mode", "tun")
    netns.ip("link", "set", "tunl0", "up")
    netns.ip("addr", "add", "10.20.1.1/32", "dev", "tunl0")


@pytest.fixture
def installer(netns: Netns) -> Iterator[RouteInstaller]:
    inst = RouteInstaller(PROTO, MAIN, netns=netns.name, retries=1)
    try:
        yield inst
    finally:
        inst.close()


def sent(installer: RouteInstaller, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Record (nlmsg_type, nlmsg_flags) of every request the installer sends from now on."""
    messages: list[tuple[int, int]] = []
    real = installer._exchange

    def spy(chunk: list[bytes], by_seq: dict[int, int], answers: dict[int, tuple[int, str | None]]) -> None:
        for msg in chunk:
            _len, mtype, mflags, _seq, _pid = nl.NLMSGHDR.unpack_from(msg)
            messages.append((mtype, mflags))
        real(chunk, by_seq, answers)

    monkeypatch.setattr(installer, "_exchange", spy)
    return messages


def test_install_via_tunl0_onlink(netns: Netns, installer: RouteInstaller) -> None:
    tunl0(netns)
    assert installer.apply([(P1, (Hop(FAR1, "tunl0", onlink=True),))]) == [OpResult(P1, ok=True)]
    route = ours(netns)["10.20.5.0/26"]
    assert route["gateway"] == "192.168.200.2" and route["dev"] == "tunl0"
    assert "onlink" in route["flags"] and route["metric"] == 32
    (shown,) = netns.routes("10.20.5.0/26")
    assert shown["protocol"] == "bird"  # rtm_protocol 12 (RTPROT_BIRD), as Calico's BIRD installs them
    assert netns.ip("route", "show", "10.20.5.0/26").stdout.split()[:6] == [
        "10.20.5.0/26", "via", "192.168.200.2", "dev", "tunl0", "proto",
    ]  # fmt: skip
    assert installer.dump_own(hops=True) == {P1: (Hop(FAR1, "tunl0", onlink=True),)}
    assert installer.dump_own() == {P1: (FAR1,)}  # without hops=True: addresses, as before


def test_replace_plain_with_tunnel_and_back_in_one_message(
    netns: Netns, installer: RouteInstaller, monkeypatch: pytest.MonkeyPatch
) -> None:
    tunl0(netns)
    assert installer.apply([(P1, (GW1,))])[0].ok
    assert ours(netns)["10.20.5.0/26"]["dev"] == "up0"
    messages = sent(installer, monkeypatch)
    tunnel = (Hop(GW1, "tunl0", onlink=True),)
    assert installer.apply([(P1, tunnel)], ours={P1}) == [OpResult(P1, ok=True)]
    assert messages == [(nl.RTM_NEWROUTE, nl.NLM_F_REQUEST | nl.NLM_F_REPLACE)]  # no delete, no create
    (route,) = netns.routes("10.20.5.0/26")
    assert route["dev"] == "tunl0" and "onlink" in route["flags"] and route["gateway"] == "192.168.77.2"
    assert installer.dump_own(hops=True) == {P1: tunnel}
    messages.clear()
    assert installer.apply([(P1, (GW1,))], ours={P1}) == [OpResult(P1, ok=True)]
    assert messages == [(nl.RTM_NEWROUTE, nl.NLM_F_REQUEST | nl.NLM_F_REPLACE)]
    (route,) = netns.routes("10.20.5.0/26")
    assert route["dev"] == "up0" and "onlink" not in route.get("flags", [])
    assert installer.dump_own(hops=True) == {P1: (GW1,)}


def test_ecmp_tunnel_and_plain_hops(netns: Netns, installer: RouteInstaller) -> None:
    tunl0(netns)
    hops = (Hop(FAR2, "tunl0", onlink=True), GW1, Hop(FAR1, "tunl0", onlink=True))
    assert installer.apply([(P2, hops)]) == [OpResult(P2, ok=True)]
    route = ours(netns)["10.20.6.0/26"]
    nexthops = {nh["gateway"]: nh for nh in route["nexthops"]}
    assert set(nexthops) == {"192.168.77.2", "192.168.200.2", "192.168.201.2"}
    assert nexthops["192.168.77.2"]["dev"] == "up0" and "onlink" not in nexthops["192.168.77.2"]["flags"]
    for far in ("192.168.200.2", "192.168.201.2"):
        assert nexthops[far]["dev"] == "tunl0" and "onlink" in nexthops[far]["flags"]
    assert installer.dump_own(hops=True) == {
        P2: (GW1, Hop(FAR1, "tunl0", onlink=True), Hop(FAR2, "tunl0", onlink=True))
    }
    assert installer.dump_own() == {P2: (GW1, FAR1, FAR2)}
    # an ECMP route without a tunnel hop is read back as plain addresses
    assert installer.apply([(P2, (GW2, GW1))], ours={P2})[0].ok
    assert installer.dump_own(hops=True) == {P2: (GW1, GW2)}


def test_missing_device_is_an_error_then_installed_when_it_appears(
    netns: Netns, installer: RouteInstaller
) -> None:
    change: list[Change] = [(P1, (Hop(FAR1, "tunl0", onlink=True),)), (P2, (GW1,))]
    missing, plain = installer.apply(change)
    assert not missing.ok and not missing.collision and missing.error is not None
    assert "ENODEV" in missing.error and "no device tunl0 for next hop 192.168.200.2" in missing.error
    assert missing.device == "tunl0"  # the change waits for that device: no retries
    assert installer.retried == 0
    assert plain.ok
    assert list(ours(netns)) == ["10.20.6.0/26"]  # nothing installed with a wrong device
    assert installer.errors == 1
    tunl0(netns)
    assert installer.apply(change[:1]) == [OpResult(P1, ok=True)]
    assert ours(netns)["10.20.5.0/26"]["dev"] == "tunl0"


def test_device_down_is_an_error(netns: Netns, installer: RouteInstaller) -> None:
    tunl0(netns)
    netns.ip("link", "set", "tunl0", "down")
    (result,) = installer.apply([(P1, (Hop(FAR1, "tunl0", onlink=True),))])
    assert not result.ok and result.error is not None and "ENETDOWN" in result.error
    assert result.device == "tunl0" and installer.retried == 0
    netns.ip("link", "set", "tunl0", "up")
    assert installer.apply([(P1, (Hop(FAR1, "tunl0", onlink=True),))])[0].ok


def test_refused_forms(netns: Netns, installer: RouteInstaller) -> None:
    v6 = IPv6Network("fd00:50::/64")
    results = installer.apply(
        [
            (P1, (Hop(FAR1, "tunl0"),)),  # a device without onlink
            (P2, (Hop(FAR1, onlink=True),)),  # onlink without a device
            (v6, (Hop(FAR1, "tunl0", onlink=True),)),  # IPv6 route
            (IPv4Network("10.20.7.0/26"), (Hop(GW1, "tunl0", onlink=True), IPv6Address("fd00::1"))),
        ]
    )
    assert [r.ok for r in results] == [False] * 4
    assert [r.error for r in results] == [
        "next hop 192.168.200.2 dev tunl0 without onlink (only onlink hops name one)",
        "onlink next hop 192.168.200.2 without its device",
        "next hop with a device (Hop) for an IPv6 route: IPv4 only",
        "IPv6 next hop for an IPv4 route",
    ]
    assert ours(netns) == {}
    # Hop(G) is plain G
    assert installer.apply([(P1, (Hop(GW1), GW1))])[0].ok
    assert installer.dump_own(hops=True) == {P1: (GW1,)}


def test_watcher_reports_onlink_routes_as_hops_and_tunl0_coming_up(
    netns: Netns, installer: RouteInstaller, loop_thread: LoopThread
) -> None:
    """What the engine compares with what it wants: our tunnel routes come back in the installer's form
    (single path and ECMP), whoever wrote them; tunl0 appearing and coming up are LinkUp events by name."""
    view = View()
    watcher = loop_thread.start(RouteWatcher(MAIN, view))
    try:
        tunl0(netns)
        poll_until(lambda: any(isinstance(e, LinkUp) and e.name == "tunl0" for e in view.events), "LinkUp")
        netns.ip("link", "set", "tunl0", "down")
        view.events.clear()
        netns.ip("link", "set", "tunl0", "up")
        poll_until(lambda: any(isinstance(e, LinkUp) and e.name == "tunl0" for e in view.events), "up again")
        single = (Hop(FAR1, "tunl0", onlink=True),)
        mixed = (GW1, Hop(FAR1, "tunl0", onlink=True), Hop(FAR2, "tunl0", onlink=True))
        assert installer.apply([(P1, single), (P2, mixed)]) == [OpResult(P1, ok=True), OpResult(P2, ok=True)]
        # written by somebody else (the installer's own writes are not filtered in this watcher)
        netns.ip(
            "route", "add", "10.20.7.0/26", "via", "192.168.200.9", "dev", "tunl0", "onlink", "proto", "80"
        )
        poll_until(
            lambda: bool(view.get(str(P1)) and view.get(str(P2)) and view.get("10.20.7.0/26")), "routes"
        )
        (r1,) = view.get(str(P1))
        assert r1.gateways == single and r1.ifname == "tunl0"
        (r2,) = view.get(str(P2))
        assert r2.gateways == mixed and r2.ifname is None  # two devices
        (felix,) = view.get("10.20.7.0/26")
        assert felix.gateways == (Hop(IPv4Address("192.168.200.9"), "tunl0", onlink=True),)
        assert felix.protocol == 80
    finally:
        loop_thread.stop(watcher)
