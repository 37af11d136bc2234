"""Tests for IPv6 unicast in bgpd.exabgp.codec (issue 11): decoding with `families`, encoding IPv6 routes.

The captured lines below were written by ExaBGP 5.0.15 (started as bgpd starts it, config from
bgpd.exabgp.confgen with `families=(4, 6)`) on host B (fd00:100::2) of three network namespaces on one
bridge, for two peers: host A (fd00:100::1, ExaBGP, iBGP) whose API helper sent the command lines
`announce_lines` / `withdraw_lines` / `eor_line` / `route_refresh_line` build (all acked "done"), and host
C (fd00:100::3, BIRD 2.0.12, eBGP AS 65003, directly connected), which sends a 32-octet next hop: global
plus link-local (RFC 2545 §3).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.exabgp.codec import (
    DUAL_STACK,
    IPV4_ONLY,
    Announced,
    AnyAddress,
    AnyPrefix,
    DecodeError,
    EndOfRib,
    Notification,
    PeerOpen,
    PeerState,
    Update,
    announce_lines,
    decode,
    eor_line,
    route_refresh_line,
    withdraw_lines,
)
from bgpd.model import Attributes, Origin
from bgpd.prefix import Address, Address6, Prefix, Prefix6

# ------------------------------------------------------------------ captured from ExaBGP 5.0.15

OPEN_EXABGP = (
    '{ "exabgp": "5.0.0", "time": 1796009185.9773064, "host" : "vm", "pid" : 27948, "ppid" : 27910, '
    '"counter": 2, "type": "open", "neighbor": { "address": { "local": "fd00:100::2", '
    '"peer": "fd00:100::1" }, "asn": { "local": 64512, "peer": 64512 }, "router-id": "192.168.100.2" , '
    '"direction": "receive", "open": { "version": 4, "asn": 64512, "hold_time": 90, '
    '"router_id": "192.168.100.1", "capabilities": { "1": { "name": "multiprotocol", '
    '"families": [ "ipv4/unicast", "ipv6/unicast" ] }, "65": { "name": "asn4", "asn4": 64512 }, '
    '"64": { "name": "graceful restart", "time": 120, '
    '"address-family-flags": { "ipv4/unicast": [ "restart" ] , "ipv6/unicast": [ "restart" ] }, '
    '"restart-flags": [ "forwarding" ]  }, "2": { "name": "route-refresh", "variant": "RFC" }, '
    '"70": { "name": "enhanced-route-refresh" }, "6": { "name": "extended-message", '
    '"size": 65535 } } } } }'
)
STATE_UP = (
    '{ "exabgp": "5.0.0", "time": 1796009185.9805593, "host" : "vm", "pid" : 27948, "ppid" : 27910, '
    '"counter": 3, "type": "state", "neighbor": { "address": { "local": "fd00:100::2", '
    '"peer": "fd00:100::1" }, "asn": { "local": 64512, "peer": 64512 }, "router-id": "192.168.100.2" , '
    '"state": "up" } }'
)
UPDATE = (
    '{ "exabgp": "5.0.0", "time": 1796009186.9836512, "host" : "vm", "pid" : 27948, "ppid" : 27910, '
    '"counter": 4, "type": "update", "neighbor": { "address": { "local": "fd00:100::2", '
    '"peer": "fd00:100::1" }, "asn": { "local": 64512, "peer": 64512 }, "router-id": "192.168.100.2" , '
    '"direction": "receive", "message": { "update": { "attribute": { "origin": "igp", "med": 5, '
    '"local-preference": 100, "community": [ [ 64512, 1 ] ], "large-community": [ [ 64512, 1 , 2 ] ] }, '
    '"announce": { "ipv6 unicast": { "fd00:100::1": [ { "nlri": "fd00:10:20::/122" } ] } } } } } }'
)
UPDATE_IPV4_ON_IPV6_SESSION = (
    '{ "exabgp": "5.0.0", "time": 1796009187.282602, "host" : "vm", "pid" : 27948, "ppid" : 27910, '
    '"counter": 6, "type": "update", "neighbor": { "address": { "local": "fd00:100::2", '
    '"peer": "fd00:100::1" }, "asn": { "local": 64512, "peer": 64512 }, "router-id": "192.168.100.2" , '
    '"direction": "receive", "message": { "update": { "attribute": { "origin": "igp", "med": 5, '
    '"local-preference": 100, "community": [ [ 64512, 1 ] ], "large-community": [ [ 64512, 1 , 2 ] ] }, '
    '"announce": { "ipv4 unicast": { "192.168.100.1": [ { "nlri": "10.20.1.0/26" } ] } } } } } }'
)
UPDATE_TARGETED = (
    '{ "exabgp": "5.0.0", "time": 1796009187.5830774, "host" : "vm", "pid" : 27948, "ppid" : 27910, '
    '"counter": 7, "type": "update", "neighbor": { "address": { "local": "fd00:100::2", '
    '"peer": "fd00:100::1" }, "asn": { "local": 64512, "peer": 64512 }, "router-id": "192.168.100.2" , '
    '"direction": "receive", "message": { "update": { "attribute": { "origin": "igp", '
    '"local-preference": 100 }, "announce": { "ipv6 unicast": { "fd00:100::1": [ { "nlri": "fd00:10:20::8'
    '0/122" } ] } } } } } }'
)
UPDATE_IPV4_MAPPED_NEXT_HOP = (
    '{ "exabgp": "5.0.0", "time": 1796009187.8845222, "host" : "vm", "pid" : 27948, "ppid" : 27910, '
    '"counter": 8, "type": "update", "neighbor": { "address": { "local": "fd00:100::2", '
    '"peer": "fd00:100::1" }, "asn": { "local": 64512, "peer": 64512 }, "router-id": "192.168.100.2" , '
    '"direction": "receive", "message": { "update": { "attribute": { "origin": "igp", '
    '"local-preference": 100 }, "announce": { "ipv6 unicast": { "::ffff:192.168.100.1": [ { "nlri": "fd00'
    ':10:21::/64" } ] } } } } } }'
)
UPDATE_UNSPECIFIED_NEXT_HOP = (
    '{ "exabgp": "5.0.0", "time": 1796009188.1849077, "host" : "vm", "pid" : 27948, "ppid" : 27910, '
    '"counter": 9, "type": "update", "neighbor": { "address": { "local": "fd00:100::2", '
    '"peer": "fd00:100::1" }, "asn": { "local": 64512, "peer": 64512 }, "router-id": "192.168.100.2" , '
    '"direction": "receive", "message": { "update": { "attribute": { "origin": "igp", '
    '"local-preference": 100 }, "announce": { "ipv6 unicast": { "::": [ { "nlri": "fd00:10:22::/64" } ] }'
    " } } } } }"
)
UPDATE_LINK_LOCAL_NEXT_HOP = (
    '{ "exabgp": "5.0.0", "time": 1796009188.4849923, "host" : "vm", "pid" : 27948, "ppid" : 27910, '
    '"counter": 10, "type": "update", "neighbor": { "address": { "local": "fd00:100::2", '
    '"peer": "fd00:100::1" }, "asn": { "local": 64512, "peer": 64512 }, "router-id": "192.168.100.2" , '
    '"direction": "receive", "message": { "update": { "attribute": { "origin": "igp", '
    '"local-preference": 100 }, "announce": { "ipv6 unicast": { "fe80::1": [ { "nlri": "fd00:10:23::/64" '
    "} ] } } } } } }"
)
OPEN_BIRD = (
    '{ "exabgp": "5.0.0", "time": 1796009189.6911478, "host" : "vm", "pid" : 27948, "ppid" : 27910, '
    '"counter": 2, "type": "open", "neighbor": { "address": { "local": "fd00:100::2", '
    '"peer": "fd00:100::3" }, "asn": { "local": 64512, "peer": 65003 }, "router-id": "192.168.100.2" , '
    '"direction": "receive", "open": { "version": 4, "asn": 65003, "hold_time": 240, '
    '"router_id": "192.168.100.3", "capabilities": { "1": { "name": "multiprotocol", '
    '"families": [ "ipv6/unicast" ] }, "2": { "name": "route-refresh", "variant": "RFC" }, '
    '"64": { "name": "graceful restart", "time": 120, "address-family-flags": { "ipv6/unicast": [ ] }, '
    '"restart-flags": [ ]  }, "65": { "name": "asn4", "asn4": 65003 }, '
    '"70": { "name": "enhanced-route-refresh" }, "71": { "name": "unknown", "iana": "unassigned", '
    '"value": 71, "raw": "" } } } } }'
)
WITHDRAW = (
    '{ "exabgp": "5.0.0", "time": 1796009189.7867856, "host" : "vm", "pid" : 27948, "ppid" : 27910, '
    '"counter": 11, "type": "update", "neighbor": { "address": { "local": "fd00:100::2", '
    '"peer": "fd00:100::1" }, "asn": { "local": 64512, "peer": 64512 }, "router-id": "192.168.100.2" , '
    '"direction": "receive", "message": { "update": { "withdraw": { "ipv6 unicast": [ { "nlri": "fd00:10:'
    '20::40/122" } ] } } } } }'
)
EOR_IPV6 = (
    '{ "exabgp": "5.0.0", "time": 1796009190.086659, "host" : "vm", "pid" : 27948, "ppid" : 27910, '
    '"counter": 12, "type": "update", "neighbor": { "address": { "local": "fd00:100::2", '
    '"peer": "fd00:100::1" }, "asn": { "local": 64512, "peer": 64512 }, "router-id": "192.168.100.2" , '
    '"direction": "receive", "message": { "eor": { "afi" : "ipv6", "safi" : "unicast" } } } }'
)
EOR_IPV4 = (
    '{ "exabgp": "5.0.0", "time": 1796009190.3868592, "host" : "vm", "pid" : 27948, "ppid" : 27910, '
    '"counter": 13, "type": "update", "neighbor": { "address": { "local": "fd00:100::2", '
    '"peer": "fd00:100::1" }, "asn": { "local": 64512, "peer": 64512 }, "router-id": "192.168.100.2" , '
    '"direction": "receive", "message": { "eor": { "afi" : "ipv4", "safi" : "unicast" } } } }'
)
UPDATE_BIRD = (
    '{ "exabgp": "5.0.0", "time": 1796009191.629739, "host" : "vm", "pid" : 27948, "ppid" : 27910, '
    '"counter": 4, "type": "update", "neighbor": { "address": { "local": "fd00:100::2", '
    '"peer": "fd00:100::3" }, "asn": { "local": 64512, "peer": 65003 }, "router-id": "192.168.100.2" , '
    '"direction": "receive", "message": { "update": { "attribute": { "origin": "igp", '
    '"as-path": {"0": {"element": "as-sequence", "value": [65003]}} }, '
    '"announce": { "ipv6 unicast": { "fd00:100::3": [ { "nlri": "fd00:10:30::/122" }, '
    '{ "nlri": "fd00:10:30::40/122" } ], "fe80::34e9:b9ff:feb7:bff": [ { "nlri": "fd00:10:30::/122" }, '
    '{ "nlri": "fd00:10:30::40/122" } ] } } } } } }'
)
EOR_BIRD = (
    '{ "exabgp": "5.0.0", "time": 1796009191.67154, "host" : "vm", "pid" : 27948, "ppid" : 27910, '
    '"counter": 5, "type": "update", "neighbor": { "address": { "local": "fd00:100::2", '
    '"peer": "fd00:100::3" }, "asn": { "local": 64512, "peer": 65003 }, "router-id": "192.168.100.2" , '
    '"direction": "receive", "message": { "eor": { "afi" : "ipv6", "safi" : "unicast" } } } }'
)
WITHDRAW_BIRD = (
    '{ "exabgp": "5.0.0", "time": 1796009200.6276357, "host" : "vm", "pid" : 27948, "ppid" : 27910, '
    '"counter": 6, "type": "update", "neighbor": { "address": { "local": "fd00:100::2", '
    '"peer": "fd00:100::3" }, "asn": { "local": 64512, "peer": 65003 }, "router-id": "192.168.100.2" , '
    '"direction": "receive", "message": { "update": { "withdraw": { "ipv6 unicast": [ { "nlri": "fd00:10:'
    '30::/122" }, { "nlri": "fd00:10:30::40/122" } ] } } } } }'
)
NOTIFICATION_BIRD = (
    '{ "exabgp": "5.0.0", "time": 1796009203.6325321, "host" : "vm", "pid" : 27948, "ppid" : 27910, '
    '"counter": 7, "type": "notification", "neighbor": { "address": { "local": "fd00:100::2", '
    '"peer": "fd00:100::3" }, "asn": { "local": 64512, "peer": 65003 }, "router-id": "192.168.100.2" , '
    '"direction": "receive", "notification": { "code": 6, "subcode": 2, "data": "0x", '
    '"message": "" }  } }'
)

A1, A3 = IPv6Address("fd00:100::1"), IPv6Address("fd00:100::3")  # host A (ExaBGP), host C (BIRD)
BIRD_LINK_LOCAL = IPv6Address("fe80::34e9:b9ff:feb7:bff")
SENT = Attributes(local_pref=100, med=5, communities=("64512:1",), large_communities=("64512:1:2",))


def N6(text: str) -> IPv6Network:
    return IPv6Network(text)


def dual(line: str) -> Any:
    return decode(line, DUAL_STACK)


def test_captured_update() -> None:
    ev = dual(UPDATE)
    assert ev == Update(A1, 64512, (Announced(N6("fd00:10:20::/122"), A1, SENT),), (), ())
    [route] = ev.announced
    assert type(route.prefix) is Prefix6 and type(route.next_hop) is Address6 and type(ev.peer) is Address6
    assert route.link_local is None


def test_captured_global_and_link_local_next_hop_is_one_path_per_nlri() -> None:
    ev = dual(UPDATE_BIRD)
    attrs = Attributes(origin=Origin.IGP, as_path=(65003,))
    assert ev == Update(
        A3,
        65003,
        (
            Announced(N6("fd00:10:30::/122"), A3, attrs, BIRD_LINK_LOCAL),
            Announced(N6("fd00:10:30::40/122"), A3, attrs, BIRD_LINK_LOCAL),
        ),
        (),
        (),
    )
    assert all(type(a.link_local) is Address6 for a in ev.announced)
    # what ExaBGP printed: the same NLRIs under both addresses
    by_next_hop = json.loads(UPDATE_BIRD)["neighbor"]["message"]["update"]["announce"]["ipv6 unicast"]
    assert list(by_next_hop) == [str(A3), str(BIRD_LINK_LOCAL)]
    assert by_next_hop[str(A3)] == by_next_hop[str(BIRD_LINK_LOCAL)]


def test_captured_withdrawals() -> None:
    assert dual(WITHDRAW) == Update(A1, 64512, (), (N6("fd00:10:20::40/122"),), ())
    assert dual(WITHDRAW_BIRD) == Update(
        A3, 65003, (), (N6("fd00:10:30::/122"), N6("fd00:10:30::40/122")), ()
    )
    assert all(type(p) is Prefix6 for p in dual(WITHDRAW_BIRD).withdrawn)


def test_captured_end_of_rib_per_family() -> None:
    assert dual(EOR_IPV6) == EndOfRib(A1, 6)
    assert dual(EOR_IPV4) == EndOfRib(A1, 4)
    assert dual(EOR_BIRD) == EndOfRib(A3, 6)


def test_captured_ipv4_route_on_an_ipv6_session() -> None:
    ev = dual(UPDATE_IPV4_ON_IPV6_SESSION)
    route4 = Announced(IPv4Network("10.20.1.0/26"), IPv4Address("192.168.100.1"), SENT)
    want: Update[AnyPrefix, AnyAddress] = Update(A1, 64512, (route4,))
    assert ev == want
    [route] = ev.announced
    assert type(route.prefix) is Prefix and type(route.next_hop) is Address


def test_captured_targeted_announcement() -> None:
    assert dual(UPDATE_TARGETED).announced == (
        Announced(N6("fd00:10:20::80/122"), A1, Attributes(local_pref=100)),
    )


def test_captured_ipv4_mapped_next_hop_is_treated_as_withdraw() -> None:
    # BIRD 2 (bgp_decode_next_hop_ip): an IPv4 next hop on an IPv6 channel without extended next hop
    ev = dual(UPDATE_IPV4_MAPPED_NEXT_HOP)
    assert (ev.announced, ev.withdrawn) == ((), (N6("fd00:10:21::/64"),))
    [reason] = ev.malformed
    assert "fd00:10:21::/64" in reason and "IPv4-mapped next hop '::ffff:192.168.100.1'" in reason


@pytest.mark.parametrize(
    ("line", "next_hop"),
    [(UPDATE_UNSPECIFIED_NEXT_HOP, "::"), (UPDATE_LINK_LOCAL_NEXT_HOP, "fe80::1")],
    ids=["unspecified", "link_local_only"],
)
def test_captured_next_hops_for_the_import_policy_are_announced(line: str, next_hop: str) -> None:
    # they parse: rejecting them (and removing an earlier path) is the import policy's job, as for IPv4
    [route] = dual(line).announced
    assert (route.next_hop, route.link_local) == (IPv6Address(next_hop), None)


def test_captured_open_gives_graceful_restart_per_family() -> None:
    opened = dual(OPEN_EXABGP)
    assert opened == PeerOpen(A1, 64512, IPv4Address("192.168.100.1"), 90, 120, True, True, 120, True, True)
    assert opened.graceful_restart(4) == opened.graceful_restart(6) == (120, True)
    bird = dual(OPEN_BIRD)  # graceful restart for IPv6 unicast only, forwarding state not kept
    expected = PeerOpen(A3, 65003, IPv4Address("192.168.100.3"), 240, None, False, False, 120, False, True)
    assert bird == expected
    assert bird.graceful_restart(4) == (None, False) and bird.graceful_restart(6) == (120, False)


def test_captured_state() -> None:
    assert dual(STATE_UP) == PeerState(A1, 64512, "up")


def test_captured_notification() -> None:
    """ExaBGP 5.0.15 writes the NOTIFICATION under "neighbor", not under "message" (captured)."""
    assert dual(NOTIFICATION_BIRD) == Notification(A3, 6, 2, "0x")
    assert decode(from_ipv4_peer(NOTIFICATION_BIRD)) is not None


# ------------------------------------------------------------------ the default is what it was

CAPTURED = [
    OPEN_EXABGP, STATE_UP, UPDATE, UPDATE_IPV4_ON_IPV6_SESSION, UPDATE_TARGETED, UPDATE_IPV4_MAPPED_NEXT_HOP,
    UPDATE_UNSPECIFIED_NEXT_HOP, UPDATE_LINK_LOCAL_NEXT_HOP, OPEN_BIRD, WITHDRAW, EOR_IPV6, EOR_IPV4,
    UPDATE_BIRD, EOR_BIRD, WITHDRAW_BIRD, NOTIFICATION_BIRD,
]  # fmt: skip


def from_ipv4_peer(line: str) -> str:
    """The same event as if the session were between IPv4 addresses."""
    return (
        line.replace('"fd00:100::2"', '"192.168.100.2"')
        .replace('"fd00:100::1"', '"192.168.100.1"')
        .replace('"fd00:100::3"', '"192.168.100.3"')
    )


@pytest.mark.parametrize("line", CAPTURED)
def test_default_refuses_ipv6_peers_as_before(line: str) -> None:
    with pytest.raises(DecodeError, match="valid IPv4 peer address"):
        decode(line)


@pytest.mark.parametrize("line", [UPDATE, UPDATE_BIRD, UPDATE_IPV4_MAPPED_NEXT_HOP, WITHDRAW, WITHDRAW_BIRD])
def test_default_reports_ipv6_updates_as_unsupported_and_nothing_else(line: str) -> None:
    ev = decode(from_ipv4_peer(line))
    assert isinstance(ev, Update) and (ev.announced, ev.withdrawn) == ((), ())
    [reason] = ev.malformed
    assert reason in (
        "announce of unsupported family ipv6 unicast",
        "withdraw of unsupported family ipv6 unicast",
    )


def test_default_ignores_ipv6_end_of_rib_and_graceful_restart() -> None:
    assert decode(from_ipv4_peer(EOR_IPV6)) is None
    assert (
        decode(from_ipv4_peer(EOR_IPV4))
        == EndOfRib(IPv4Address("192.168.100.1"))
        == EndOfRib(IPv4Address("192.168.100.1"), 4)
    )
    opened = decode(from_ipv4_peer(OPEN_EXABGP))
    assert isinstance(opened, PeerOpen)
    assert (opened.restart_time, opened.forwarding_kept, opened.restart_time6, opened.forwarding_kept6) == (
        120,
        True,
        None,
        False,
    )


@pytest.mark.parametrize("line", CAPTURED)
def test_ipv4_only_families_decode_as_the_default(line: str) -> None:
    for text in (line, from_ipv4_peer(line)):
        try:
            want: Any = decode(text)
        except DecodeError as exc:
            want = str(exc)
        try:
            got: Any = decode(text, IPV4_ONLY)
        except DecodeError as exc:
            got = str(exc)
        assert got == want


def test_ipv6_only_families_refuse_ipv4_routes() -> None:
    ev = decode(UPDATE_IPV4_ON_IPV6_SESSION, {6})
    assert isinstance(ev, Update) and ev.malformed == ("announce of unsupported family ipv4 unicast",)
    assert decode(EOR_IPV4, {6}) is None and decode(EOR_IPV6, {6}) == EndOfRib(A1, 6)


def test_dual_stack_decodes_ipv4_as_the_default() -> None:
    from tests.unit.test_codec import UPDATE as UPDATE4

    assert decode(UPDATE4, DUAL_STACK) == decode(UPDATE4)
    assert decode(from_ipv4_peer(UPDATE_IPV4_ON_IPV6_SESSION), DUAL_STACK) == decode(
        from_ipv4_peer(UPDATE_IPV4_ON_IPV6_SESSION)
    )


# ------------------------------------------------------------------ decode: other shapes (RFC 7606, RFC 2545)

GOOD = {"origin": "igp", "local-preference": 100}
P = N6("fd00:52::/64")


def update6(announce: dict[str, Any], attrs: Any = GOOD, **extra: Any) -> Update[Any, Any]:
    body = {"attribute": attrs, "announce": {"ipv6 unicast": announce}, **extra}
    line = json.dumps(
        {
            "exabgp": "5.0.0",
            "type": "update",
            "neighbor": {
                "address": {"local": "fd00:100::2", "peer": "fd00:100::1"},
                "asn": {"local": 64512, "peer": 64512},
                "direction": "receive",
                "message": {"update": body},
            },
        }
    )
    ev = decode(line, DUAL_STACK)
    assert isinstance(ev, Update)
    return ev


@pytest.mark.parametrize(
    ("next_hop", "reason"),
    [
        ("192.168.100.1", "IPv4 next hop '192.168.100.1' for an IPv6 route"),
        ("::ffff:10.0.0.1", "IPv4-mapped next hop"),
        ("no-nexthop", "invalid next hop 'no-nexthop'"),
        ("fe80::1%eth0", "invalid next hop"),
        ("fd00::1/64", "invalid next hop"),
        ("self", "invalid next hop"),
    ],
)
def test_ipv6_route_with_unusable_next_hop_is_treated_as_withdraw(next_hop: str, reason: str) -> None:
    ev = update6({next_hop: [{"nlri": str(P)}]})
    assert (ev.announced, ev.withdrawn) == ((), (P,))
    [message] = ev.malformed
    assert reason in message and str(P) in message


@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        ({"origin": "invalid"}, "ORIGIN 'invalid'"),
        ({"local-preference": 100}, "missing ORIGIN"),
        ({**GOOD, "attribute-0x63-0x40": "0x01"}, "unrecognized well-known attribute 99"),
        ({**GOOD, "error": "treat-as-withdraw"}, "exabgp"),
    ],
)
def test_unusable_attributes_withdraw_each_ipv6_nlri_once_even_with_two_next_hops(
    attrs: dict[str, Any], reason: str
) -> None:
    q = N6("fd00:53::/64")
    routes = [{"nlri": str(P)}, {"nlri": str(q)}]
    ev = update6({"fd00:100::1": routes, "fe80::1": routes}, attrs)
    assert (ev.announced, ev.withdrawn) == ((), (P, q))
    assert len(ev.malformed) == 2 and all(reason in m for m in ev.malformed)


def test_exabgp_withdrawal_of_a_malformed_ipv6_update_is_counted() -> None:
    ev = update6({}, {**GOOD, "error": "treat-as-withdraw"}, withdraw={"ipv6 unicast": [{"nlri": str(P)}]})
    assert (ev.announced, ev.withdrawn) == ((), (P,))
    assert len(ev.malformed) == 1 and "treat-as-withdraw" in ev.malformed[0]


@pytest.mark.parametrize(
    ("second", "link_local"),
    [("fe80::1", IPv6Address("fe80::1")), ("fd00:100::9", None), ("::", None), ("garbage", None)],
    ids=["link_local", "global_dropped", "unspecified_dropped", "unparsable_dropped"],
)
def test_second_next_hop_is_kept_only_if_link_local(second: str, link_local: IPv6Address | None) -> None:
    # BIRD 2 keeps the second address of a 32-octet next hop only if it is link-local
    ev = update6({"fd00:100::1": [{"nlri": str(P)}], second: [{"nlri": str(P)}]})
    assert ev.announced == (Announced(P, A1, Attributes(local_pref=100), link_local),)
    assert (ev.withdrawn, ev.malformed) == ((), ())


def test_unusable_global_next_hop_withdraws_despite_a_link_local_one() -> None:
    ev = update6({"192.168.100.1": [{"nlri": str(P)}], "fe80::1": [{"nlri": str(P)}]})
    assert (ev.announced, ev.withdrawn, len(ev.malformed)) == ((), (P,), 1)


def test_nlri_under_one_next_hop_only_is_a_path_via_that_one() -> None:
    q = N6("fd00:53::/64")
    ev = update6({"fd00:100::1": [{"nlri": str(P)}], "fd00:100::3": [{"nlri": str(q)}]})
    assert ev.announced == (
        Announced(P, A1, Attributes(local_pref=100)),
        Announced(q, A3, Attributes(local_pref=100)),
    )


def test_more_than_two_next_hops_for_one_nlri_is_treated_as_withdraw() -> None:
    routes = [{"nlri": str(P)}]
    ev = update6({"fd00:100::1": routes, "fe80::1": routes, "fe80::2": routes})
    assert (ev.announced, ev.withdrawn) == ((), (P,)) and "3 next hops" in ev.malformed[0]


@pytest.mark.parametrize("nlri", ["fd00::/129", "10.52.0.0/24", "fe80::1%eth0/128", "", None, 7])
def test_unparsable_ipv6_nlri_is_counted_once(nlri: Any) -> None:
    routes = [{"nlri": nlri}, {"nlri": str(P)}]
    ev = update6({"fd00:100::1": routes, "fe80::1": routes})
    assert [a.prefix for a in ev.announced] == [P]
    assert len(ev.malformed) == 1 and "invalid prefix" in ev.malformed[0]


def test_unparsable_withdrawn_ipv6_nlri_is_counted() -> None:
    ev = update6(
        {}, withdraw={"ipv6 unicast": [{"nlri": "fd00::/129"}, {"nlri": str(P)}, {"nlri": "10.0.0.0/8"}]}
    )
    assert ev.withdrawn == (P,) and len(ev.malformed) == 2


@pytest.mark.parametrize("next_hop", ["::", "fd00::1", "fe80::1"])
def test_ipv4_route_with_ipv6_next_hop_stays_treated_as_withdraw(next_hop: str) -> None:
    line = json.dumps(
        {
            "type": "update",
            "neighbor": {
                "address": {"peer": "fd00:100::1"},
                "message": {
                    "update": {
                        "attribute": GOOD,
                        "announce": {"ipv4 unicast": {next_hop: [{"nlri": "10.52.0.0/24"}]}},
                    }
                },
            },
        }
    )
    ev = decode(line, DUAL_STACK)
    assert isinstance(ev, Update)
    assert (ev.announced, ev.withdrawn) == ((), (IPv4Network("10.52.0.0/24"),)) and len(ev.malformed) == 1


@pytest.mark.parametrize("peer", ["fd00::1%eth0", "fd00::1::2", "not-an-ip"])
def test_dual_stack_still_refuses_invalid_peer_addresses(peer: str) -> None:
    with pytest.raises(DecodeError, match="valid peer address"):
        decode(
            json.dumps({"type": "state", "neighbor": {"address": {"peer": peer}, "state": "up"}}), DUAL_STACK
        )


def test_unexpected_ipv6_shapes_raise_decode_error_only() -> None:
    for announce in ([{"nlri": str(P)}], {"fd00::1": None}, {"fd00::1": 5}):
        with pytest.raises(DecodeError):
            update6(announce)  # type: ignore[arg-type]


# ------------------------------------------------------------------ property: no IPv6 NLRI is lost or doubled

_GLOBAL = st.sampled_from(["fd00:100::1", "fd00:100::3", "2001:db8::1", "::", "ff02::1"])
_LINK_LOCAL = st.sampled_from(["fe80::1", "fe80::34e9:b9ff:feb7:bff"])
_BAD_HOP = st.sampled_from(["192.168.100.1", "::ffff:10.0.0.1", "no-nexthop", "x"])
_BAD_NLRI = st.sampled_from(["fd00::/129", "10.52.0.0/24", ""])
_ATTRS = st.sampled_from(
    [GOOD, {"origin": "egp", "med": 5}, {"origin": "invalid"}, {"local-preference": 1}, {**GOOD, "med": "x"}]
)


@st.composite
def _ipv6_announcements(draw: st.DrawFn) -> dict[str, Any]:
    """An ExaBGP "ipv6 unicast" announce object: one next hop (16 octets) or a global and a second address
    (32), every NLRI under each; or (never from ExaBGP) some NLRIs under only some next hops."""
    first = draw(st.one_of(_GLOBAL, _BAD_HOP))
    hops = list(
        dict.fromkeys([first, *draw(st.lists(st.one_of(_LINK_LOCAL, _GLOBAL, _BAD_HOP), max_size=1))])
    )
    nets = draw(st.lists(st.integers(0, 2**16 - 1), max_size=10, unique=True))
    texts = [str(IPv6Network((0xFD00_0052 << 96 | n << 80, 64))) for n in nets]
    texts += draw(st.lists(_BAD_NLRI, max_size=2, unique=True))
    partial = draw(st.booleans())
    return {
        hop: [{"nlri": t} for j, t in enumerate(texts) if not partial or (i + j) % 3]
        for i, hop in enumerate(hops)
    }


def _prefix_or_none(text: str) -> IPv6Network | None:
    try:
        return IPv6Network(text)
    except ValueError:
        return None


def _address_or_none(text: str) -> IPv6Address | None:
    try:
        return IPv6Address(text)
    except ValueError:
        return None


@given(_ipv6_announcements(), _ATTRS)
@settings(max_examples=400, deadline=None)
def test_every_ipv6_nlri_is_announced_or_withdrawn_exactly_once(
    by_hop: dict[str, list[dict[str, str]]], attrs: dict[str, Any]
) -> None:
    ev = update6(by_hop, attrs)
    listed: dict[str, list[str]] = {}  # NLRI text -> the next hops it is under, in order
    for hop, routes in by_hop.items():
        for r in routes:
            listed.setdefault(r["nlri"], []).append(hop)
    valid = {t: _prefix_or_none(t) for t in listed}
    announced = [a.prefix for a in ev.announced]
    assert len(announced) == len(set(announced))  # one path per NLRI: a link-local next hop is not ECMP
    assert set(announced).isdisjoint(ev.withdrawn)
    assert sorted(announced + list(ev.withdrawn)) == sorted(p for p in valid.values() if p is not None)
    unparsed = sum(1 for p in valid.values() if p is None)  # counted once even under two next hops
    assert len(ev.malformed) == len(ev.withdrawn) + unparsed
    if ev.announced:
        assert attrs in (GOOD, {"origin": "egp", "med": 5})
    for a in ev.announced:
        hops = listed[str(a.prefix)]
        assert a.next_hop == IPv6Address(hops[0]) and a.next_hop.ipv4_mapped is None
        second = _address_or_none(hops[1]) if len(hops) == 2 else None
        assert a.link_local == (second if second is not None and second.is_link_local else None)
        assert type(a.prefix) is Prefix6 and type(a.next_hop) is Address6


# ------------------------------------------------------------------ command lines

B6 = Address6("fd00:100::2")
NH6 = Address6("fd00:100::1")
FULL = Attributes(
    origin=Origin.EGP,
    as_path=(65001, 65002),
    local_pref=200,
    med=5,
    communities=("65000:1",),
    large_communities=("65000:1:2",),
    originator_id=IPv4Address("1.1.1.1"),
    cluster_list=(IPv4Address("1.0.0.1"),),
)


def test_ipv6_announce_line() -> None:
    assert announce_lines([N6("fd00:10:20::/122"), N6("fd00:10:20::40/122")], NH6, FULL, [B6]) == [
        "neighbor fd00:100::2 announce attributes next-hop fd00:100::1 origin egp as-path [ 65001 65002 ] "
        "local-preference 200 med 5 community [ 65000:1 ] large-community [ 65000:1:2 ] "
        "originator-id 1.1.1.1 cluster-list [ 1.0.0.1 ] nlri fd00:10:20::/122 fd00:10:20::40/122"
    ]


def test_ipv6_withdraw_lines_chunked() -> None:
    prefixes = [N6(f"fd00:10:20::{i * 64:x}/122") for i in range(3)]
    assert withdraw_lines(prefixes, NH6, per_command=2) == [
        "withdraw attributes next-hop fd00:100::1 nlri fd00:10:20::/122 fd00:10:20::40/122",
        "withdraw attributes next-hop fd00:100::1 nlri fd00:10:20::80/122",
    ]


def test_eor_and_route_refresh_per_family() -> None:
    assert eor_line(family=6) == "announce eor ipv6 unicast"
    assert eor_line(B6, 6) == "neighbor fd00:100::2 announce eor ipv6 unicast"
    assert eor_line(B6) == "neighbor fd00:100::2 announce eor ipv4 unicast"
    assert route_refresh_line(B6, 6) == "neighbor fd00:100::2 announce route-refresh ipv6 unicast"
    assert route_refresh_line(IPv4Address("192.168.200.1")) == (
        "neighbor 192.168.200.1 announce route-refresh ipv4 unicast"
    )


@pytest.mark.parametrize(
    ("prefixes", "next_hop"),
    [
        ([N6("fd00:10::/64")], IPv4Address("192.168.100.1")),  # the peer resets the session, in a loop
        ([N6("fd00:10::/64")], IPv6Address("::ffff:192.168.100.1")),  # the same, IPv4-mapped
        ([IPv4Network("10.20.0.0/26")], NH6),  # RFC 8950 next hop: not negotiated
        ([N6("fd00:10::/64"), IPv4Network("10.20.0.0/26")], NH6),  # mixed families
        ([IPv4Network("10.20.0.0/26"), N6("fd00:10::/64")], IPv4Address("192.168.100.1")),
    ],
    ids=[
        "ipv4_next_hop",
        "ipv4_mapped_next_hop",
        "ipv6_next_hop_for_ipv4",
        "mixed_v6_first",
        "mixed_v4_first",
    ],
)
def test_next_hop_of_another_family_is_refused(prefixes: list[Any], next_hop: Any) -> None:
    with pytest.raises(ValueError, match="next hop"):
        announce_lines(prefixes, next_hop, Attributes())
    with pytest.raises(ValueError, match="next hop"):
        withdraw_lines(prefixes, next_hop)


def test_family_mismatch_in_a_later_chunk_is_refused_before_any_line() -> None:
    prefixes = [IPv4Network(f"10.20.{i}.0/24") for i in range(5)] + [N6("fd00:10::/64")]
    with pytest.raises(ValueError, match="fd00:10::/64"):
        announce_lines(prefixes, IPv4Address("192.168.100.1"), Attributes(), per_command=2)


def test_no_prefixes_no_lines_whatever_the_next_hop() -> None:
    assert announce_lines([], IPv6Address("::ffff:1.2.3.4"), Attributes()) == []
    assert withdraw_lines([], NH6) == []


# ------------------------------------------------------------------ against ExaBGP 5.0.15's own code


@pytest.fixture(scope="module")
def exabgp() -> Iterator[Any]:
    """ExaBGP's API command parser, a Negotiated for an iBGP session with IPv4 and IPv6 unicast, its JSON
    writer, and a neighbor as the JSON writer reads one."""
    import exabgp  # noqa: F401  # a hard dependency: a failed import fails, never skips
    from exabgp.bgp.message.open.asn import ASN
    from exabgp.bgp.message.open.capability.negotiated import Negotiated
    from exabgp.environment import getenv
    from exabgp.logger import log
    from exabgp.protocol.family import AFI, SAFI
    from exabgp.reactor.api import API
    from exabgp.reactor.api.response.json import JSON

    log.init(getenv())
    negotiated = Negotiated({"capability": {"aigp": False}})
    negotiated.families = [(AFI.ipv4, SAFI.unicast), (AFI.ipv6, SAFI.unicast)]
    negotiated.asn4 = True
    negotiated.local_as = negotiated.peer_as = ASN(64512)

    class Neighbor(dict[str, Any]):
        uid = 1

    neighbor = Neighbor(
        {
            "local-address": "fd00:100::2",
            "peer-address": "fd00:100::1",
            "local-as": 64512,
            "peer-as": 64512,
            "router-id": "192.168.100.2",
        }
    )
    yield API(None), negotiated, JSON("5.0.0"), neighbor


def _through_exabgp(exabgp: Any, line: str) -> list[str]:
    """What the receiving side's helper reads once `line` went through ExaBGP: the command parsed by its
    API, the UPDATEs it builds from it packed to wire bytes, parsed back as received, written as JSON."""
    from exabgp.bgp.message import Action, Update
    from exabgp.bgp.message.direction import Direction
    from exabgp.reactor.api.command.limit import extract_neighbors

    api, negotiated, writer, neighbor = exabgp
    _, command = extract_neighbors(line)
    changes = api.api_attributes(command, [])
    action = Action.ANNOUNCE if command.startswith("announce") else Action.WITHDRAW
    for change in changes:
        change.nlri.action = action  # as ExaBGP's announce / withdraw commands set it
    out = []
    for message in Update([c.nlri for c in changes], changes[0].attributes).messages(negotiated):
        received = Update.unpack_message(message[19:], Direction.IN, negotiated)
        out.append(writer.update(neighbor, "receive", received, None, b"", b""))
    return out


_PREFIX6 = st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)).map(
    lambda t: IPv6Network((t[0] >> (128 - t[1]) << (128 - t[1]) if t[1] else 0, t[1]))
)
_ATTRIBUTES = st.builds(
    Attributes,
    origin=st.sampled_from(list(Origin)),
    as_path=st.lists(st.integers(1, 2**32 - 1), max_size=4).map(tuple),
    local_pref=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    med=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    communities=st.lists(
        st.tuples(st.integers(0, 65535), st.integers(0, 65535)), max_size=3, unique=True
    ).map(lambda cs: tuple(f"{a}:{b}" for a, b in sorted(cs))),
)
_NEXT_HOP6 = st.integers(1, 2**128 - 1).map(IPv6Address).filter(lambda a: a.ipv4_mapped is None)


@given(st.lists(_PREFIX6, min_size=1, max_size=20, unique=True), _NEXT_HOP6, _ATTRIBUTES)
@settings(max_examples=150, deadline=None)
def test_ipv6_announce_and_withdraw_round_trip_through_exabgp(
    exabgp: Any, prefixes: list[IPv6Network], next_hop: IPv6Address, attrs: Attributes
) -> None:
    expected_attrs = Attributes(
        origin=attrs.origin,
        as_path=attrs.as_path,
        local_pref=100 if attrs.local_pref is None else attrs.local_pref,  # ExaBGP adds it for iBGP
        med=attrs.med,
        communities=attrs.communities,
    )
    announced: list[Any] = []
    for line in announce_lines(prefixes, next_hop, attrs, per_command=7):
        for json_line in _through_exabgp(exabgp, line):
            ev = decode(json_line, DUAL_STACK)
            assert isinstance(ev, Update) and (ev.withdrawn, ev.malformed) == ((), ())
            announced += ev.announced
    assert sorted(a.prefix for a in announced) == sorted(prefixes)
    assert {(a.next_hop, a.link_local, a.attrs) for a in announced} == {(next_hop, None, expected_attrs)}
    withdrawn: list[Any] = []
    for line in withdraw_lines(prefixes, next_hop):
        for json_line in _through_exabgp(exabgp, line):
            ev = decode(json_line, DUAL_STACK)
            assert isinstance(ev, Update) and (ev.announced, ev.malformed) == ((), ())
            withdrawn += ev.withdrawn
    assert sorted(withdrawn) == sorted(prefixes)


def _mp_reach(next_hop: bytes, prefixes: list[IPv6Network]) -> bytes:
    """An UPDATE body announcing `prefixes` in MP_REACH_NLRI (RFC 4760 §3) with this next hop field."""
    nlri = b"".join(
        bytes([p.prefixlen]) + p.network_address.packed[: (p.prefixlen + 7) // 8] for p in prefixes
    )
    value = struct.pack("!HBB", 2, 1, len(next_hop)) + next_hop + b"\0" + nlri
    attrs = (
        bytes([0x40, 1, 1, 0])  # ORIGIN IGP
        + bytes([0x40, 2, 0])  # AS_PATH empty
        + bytes([0x40, 5, 4]) + struct.pack("!I", 100)  # LOCAL_PREF
        + bytes([0x90, 14]) + struct.pack("!H", len(value)) + value  # MP_REACH_NLRI, extended length
    )  # fmt: skip
    return struct.pack("!H", 0) + struct.pack("!H", len(attrs)) + attrs


@given(
    st.lists(_PREFIX6, min_size=1, max_size=20, unique=True),
    _NEXT_HOP6,
    st.integers(1, 2**64 - 1).map(lambda i: IPv6Address(0xFE80 << 112 | i)),
)
@settings(max_examples=150, deadline=None)
def test_32_octet_next_hop_received_by_exabgp_is_one_path_per_nlri(
    exabgp: Any, prefixes: list[IPv6Network], global_: IPv6Address, link_local: IPv6Address
) -> None:
    from exabgp.bgp.message import Update as ExaUpdate
    from exabgp.bgp.message.direction import Direction

    _, negotiated, writer, neighbor = exabgp
    received = ExaUpdate.unpack_message(
        _mp_reach(global_.packed + link_local.packed, prefixes), Direction.IN, negotiated
    )
    line = writer.update(neighbor, "receive", received, None, b"", b"")
    assert len(json.loads(line)["neighbor"]["message"]["update"]["announce"]["ipv6 unicast"]) == 2
    ev = decode(line, DUAL_STACK)
    assert isinstance(ev, Update) and (ev.withdrawn, ev.malformed) == ((), ())
    assert sorted(a.prefix for a in ev.announced) == sorted(prefixes)
    assert {(a.next_hop, a.link_local) for a in ev.announced} == {(global_, link_local)}


def test_exabgp_parses_ipv6_eor_route_refresh_and_ipv6_target(exabgp: Any) -> None:
    from exabgp.reactor.api.command.limit import extract_neighbors, match_neighbors

    peers = [
        f"neighbor {a} local-ip fd00:100::1 local-as 64512 peer-as 64512 router-id 192.168.100.1 "
        "family-allowed in-open"
        for a in ("fd00:100::2", "fd00:100::3")
    ]
    for line in (
        eor_line(B6, 6),
        route_refresh_line(B6, 6),
        announce_lines([N6("fd00:10::/64")], NH6, Attributes(), [B6])[0],
    ):
        descriptions, command = extract_neighbors(line)
        assert command.startswith("announce ")
        assert match_neighbors(peers, descriptions) == peers[:1]
