"""Tests for bgpd.exabgp.codec: decoding ExaBGP 5 JSON API lines and building API command lines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.exabgp.codec import (
    NLRI_PER_COMMAND,
    Announced,
    DecodeError,
    EndOfRib,
    Notification,
    PeerOpen,
    PeerState,
    Update,
    announce_lines,
    decode,
    decode_attributes,
    eor_line,
    withdraw_lines,
)
from bgpd.model import Attributes, Origin

# Captured from ExaBGP 5.0.15.
STATE_UP = (
    '{ "exabgp": "5.0.0", "time": 1795638558.561876, "host" : "vm", "pid" : 2966, "ppid" : 1, "counter": 1, '
    '"type": "state", "neighbor": { "address": { "local": "192.168.200.2", "peer": "192.168.200.1" }, '
    '"asn": { "local": 64512, "peer": 64512 }, "router-id": "192.168.200.2" , "state": "up" } }'
)
EOR = (
    '{ "exabgp": "5.0.0", "time": 1795638558.5669677, "host" : "vm", "pid" : 2966, "ppid" : 1, "counter": 3, '
    '"type": "update", "neighbor": { "address": { "local": "192.168.200.2", "peer": "192.168.200.1" }, '
    '"asn": { "local": 64512, "peer": 64512 }, "router-id": "192.168.200.2" , "direction": "receive", '
    '"message": { "eor": { "afi" : "ipv4", "safi" : "unicast" } } } }'
)
UPDATE = (
    '{ "exabgp": "5.0.0", "time": 1795638559.537057, "host" : "vm", "pid" : 2966, "ppid" : 1, "counter": 4, '
    '"type": "update", "neighbor": { "address": { "local": "192.168.200.2", "peer": "192.168.200.1" }, '
    '"asn": { "local": 64512, "peer": 64512 }, "router-id": "192.168.200.2" , "direction": "receive", '
    '"message": { "update": { "attribute": { "origin": "igp", "local-preference": 200, '
    '"community": [ [ 65000, 1 ] ] }, "announce": { "ipv4 unicast": { "192.168.200.1": '
    '[ { "nlri": "10.20.1.0/26" }, { "nlri": "10.20.1.64/26" } ] } } } } } }'
)
STATE_DOWN = (
    '{ "exabgp": "5.0.0", "time": 1795638567.6312685, "host" : "vm", "pid" : 2964, "ppid" : 1, "counter": 4, '
    '"type": "state", "neighbor": { "address": { "local": "192.168.200.1", "peer": "192.168.200.2" }, '
    '"asn": { "local": 64512, "peer": 64512 }, "router-id": "192.168.200.1" , "state": "down", '
    '"reason": "closing connection" } }'
)

PEER = IPv4Address("192.168.200.1")
NH = IPv4Address("192.168.200.2")


def N(text: str) -> IPv4Network:
    return IPv4Network(text)


def A(text: str) -> IPv4Address:
    return IPv4Address(text)


def event(kind: str, message: Any = None, **neighbor: Any) -> str:
    """An ExaBGP 5 event line from peer 192.168.200.1 (AS 64513)."""
    nb: dict[str, Any] = {
        "address": {"local": "192.168.200.2", "peer": "192.168.200.1"},
        "asn": {"local": 64512, "peer": 64513},
        "router-id": "192.168.200.2",
        "direction": "receive",
        **neighbor,
    }
    if message is not None:
        nb["message"] = message
    return json.dumps({"exabgp": "5.0.0", "time": 1.0, "counter": 9, "type": kind, "neighbor": nb})


def update(body: dict[str, Any]) -> Update:
    ev = decode(event("update", {"update": body}))
    assert isinstance(ev, Update)
    return ev


# ------------------------------------------------------------------ decode: captured lines


def test_decode_state_up() -> None:
    assert decode(STATE_UP) == PeerState(PEER, 64512, "up", "")


def test_decode_state_down_with_reason() -> None:
    assert decode(STATE_DOWN + "\n") == PeerState(A("192.168.200.2"), 64512, "down", "closing connection")


def test_decode_eor() -> None:
    assert decode(EOR) == EndOfRib(PEER)


def test_decode_update_captured() -> None:
    attrs = Attributes(origin=Origin.IGP, local_pref=200, communities=("65000:1",))
    assert decode(UPDATE) == Update(
        peer=PEER,
        peer_asn=64512,
        announced=(
            Announced(N("10.20.1.0/26"), PEER, attrs),
            Announced(N("10.20.1.64/26"), PEER, attrs),
        ),
        withdrawn=(),
        malformed=(),
    )


# ------------------------------------------------------------------ decode: other shapes


def test_decode_withdraw() -> None:
    ev = update({"withdraw": {"ipv4 unicast": [{"nlri": "10.20.1.0/26"}, {"nlri": "10.20.1.64/26"}]}})
    assert ev == Update(PEER, 64513, (), (N("10.20.1.0/26"), N("10.20.1.64/26")), ())


def test_decode_announce_and_withdraw_together() -> None:
    ev = update(
        {
            "attribute": {"origin": "incomplete"},
            "announce": {"ipv4 unicast": {"192.168.200.1": [{"nlri": "10.20.2.0/26"}]}},
            "withdraw": {"ipv4 unicast": [{"nlri": "10.20.1.0/26"}]},
        }
    )
    assert ev.withdrawn == (N("10.20.1.0/26"),)
    assert ev.announced == (Announced(N("10.20.2.0/26"), PEER, Attributes(origin=Origin.INCOMPLETE)),)
    assert ev.malformed == ()


def test_decode_several_next_hops() -> None:
    ev = update(
        {
            "attribute": {"origin": "igp"},
            "announce": {
                "ipv4 unicast": {
                    "192.168.200.1": [{"nlri": "10.20.1.0/26"}],
                    "192.168.200.9": [{"nlri": "10.20.2.0/26"}],
                }
            },
        }
    )
    assert {(a.prefix, a.next_hop) for a in ev.announced} == {
        (N("10.20.1.0/26"), PEER),
        (N("10.20.2.0/26"), A("192.168.200.9")),
    }


def test_decode_full_attributes() -> None:
    raw = {
        "origin": "egp",
        "as-path": {"0": {"element": "as-sequence", "value": [65001, 65002]}},
        "med": 5,
        "local-preference": 150,
        "community": [[65000, 1], [65000, 2]],
        "large-community": [[65000, 1, 2]],
        "originator-id": "1.1.1.1",
        "cluster-list": ["1.0.0.1", "1.0.0.2"],
    }
    ev = update(
        {"attribute": raw, "announce": {"ipv4 unicast": {"192.168.200.1": [{"nlri": "10.20.1.3/32"}]}}}
    )
    assert ev.announced == (
        Announced(
            N("10.20.1.3/32"),
            PEER,
            Attributes(
                origin=Origin.EGP,
                as_path=(65001, 65002),
                local_pref=150,
                med=5,
                communities=("65000:1", "65000:2"),
                large_communities=("65000:1:2",),
                originator_id=A("1.1.1.1"),
                cluster_list=(A("1.0.0.1"), A("1.0.0.2")),
            ),
        ),
    )


def test_decode_attributes_defaults() -> None:
    assert decode_attributes({}) == Attributes()


def test_decode_as_path_segments_in_numeric_order() -> None:
    raw = {
        "as-path": {
            "10": {"element": "as-sequence", "value": [65010]},
            "2": {"element": "as-sequence", "value": [65002]},
            "0": {"element": "as-sequence", "value": [65000, 65001]},
        }
    }
    assert decode_attributes(raw).as_path == (65000, 65001, 65002, 65010)


def test_decode_as_set_counts_as_one() -> None:
    raw = {
        "as-path": {
            "0": {"element": "as-sequence", "value": [65001]},
            "1": {"element": "as-set", "value": [65007, 65008, 65009]},
        }
    }
    assert len(decode_attributes(raw).as_path) == 2
    assert decode_attributes(raw).as_path[0] == 65001
    # the set's other members are kept for loop detection
    assert decode_attributes(raw).as_set == frozenset({65008, 65009})
    assert decode_attributes({"as-path": [65001, 65002]}).as_set == frozenset()


def test_decode_as_path_list_form() -> None:
    assert decode_attributes({"as-path": [65001, 65002]}).as_path == (65001, 65002)


@pytest.mark.parametrize(
    "raw",
    [
        {"origin": "bogus"},
        {"med": "five"},
        {"local-preference": [1]},
        {"originator-id": "1.1.1"},
        {"cluster-list": ["x"]},
        {"community": [[65000]]},
    ],
)
def test_decode_attributes_malformed_raise_value_or_type_error(raw: dict[str, Any]) -> None:
    with pytest.raises((ValueError, TypeError, KeyError)):
        decode_attributes(raw)


def test_bad_attributes_reported_not_raised_and_no_route_accepted() -> None:
    ev = update(
        {
            "attribute": {"origin": "bogus"},
            "announce": {"ipv4 unicast": {"192.168.200.1": [{"nlri": "10.20.1.0/26"}]}},
            "withdraw": {"ipv4 unicast": [{"nlri": "10.20.2.0/26"}]},
        }
    )
    assert ev.announced == ()
    # withdrawals still apply, and the announced prefix is treated as withdrawn (RFC 7606 §2)
    assert ev.withdrawn == (N("10.20.2.0/26"), N("10.20.1.0/26"))
    assert (
        len(ev.malformed) == 1 and "ORIGIN 'bogus'" in ev.malformed[0] and "10.20.1.0/26" in ev.malformed[0]
    )


@pytest.mark.parametrize("nlri", ["10.20.1.0/33", "300.1.1.0/24", "fd00::/64", "", None])
def test_malformed_nlri_reported(nlri: Any) -> None:
    ev = update(
        {
            "attribute": {"origin": "igp"},
            "announce": {"ipv4 unicast": {"192.168.200.1": [{"nlri": nlri}, {"nlri": "10.20.1.64/26"}]}},
        }
    )
    assert [a.prefix for a in ev.announced] == [N("10.20.1.64/26")]
    assert len(ev.malformed) == 1


def test_malformed_withdrawn_nlri_reported() -> None:
    ev = update({"withdraw": {"ipv4 unicast": [{"nlri": "10.20.1.0/33"}, {"nlri": "10.20.1.64/26"}]}})
    assert ev.withdrawn == (N("10.20.1.64/26"),)
    assert len(ev.malformed) == 1


@pytest.mark.parametrize("next_hop", ["192.168.200", "fe80::1", "self", "null"])
def test_malformed_next_hop_reported(next_hop: str) -> None:
    ev = update(
        {
            "attribute": {"origin": "igp"},
            "announce": {
                "ipv4 unicast": {
                    next_hop: [{"nlri": "10.20.1.0/26"}, {"nlri": "10.20.2.0/26"}],
                    "192.168.200.1": [{"nlri": "10.20.1.64/26"}],
                }
            },
        }
    )
    assert [a.prefix for a in ev.announced] == [N("10.20.1.64/26")]
    assert ev.withdrawn == (N("10.20.1.0/26"), N("10.20.2.0/26"))  # treat-as-withdraw, one reason each
    assert len(ev.malformed) == 2 and all(next_hop in m for m in ev.malformed)


def test_unknown_family_reported() -> None:
    ev = update(
        {
            "attribute": {"origin": "igp"},
            "announce": {
                "ipv6 unicast": {"fd00::1": [{"nlri": "fd00:1::/64"}]},
                "ipv4 flow": {"no-nexthop": [{"destination-ipv4": ["10.0.0.0/8"]}]},
                "ipv4 unicast": {"192.168.200.1": [{"nlri": "10.20.1.0/26"}]},
            },
            "withdraw": {"ipv6 unicast": [{"nlri": "fd00:2::/64"}]},
        }
    )
    assert [a.prefix for a in ev.announced] == [N("10.20.1.0/26")]
    assert ev.withdrawn == ()
    assert len(ev.malformed) == 3
    assert sum("ipv6 unicast" in m for m in ev.malformed) == 2
    assert any("ipv4 flow" in m for m in ev.malformed)


def test_update_without_routes() -> None:
    assert update({}) == Update(PEER, 64513)


# ------------------------------------------------------------------ decode: malformed UPDATEs (RFC 7606)

# What ExaBGP 5.0.15 writes for a hand-built UPDATE of 10.52.0.0/24 from an iBGP peer (tests/e2e/rawbgp.py
# against ExaBGP started as bgpd starts it); the wire fault is in each comment.
P52 = N("10.52.0.0/24")
GOOD_ATTRS = {"origin": "igp", "local-preference": 100}


def announce_of(attrs: dict[str, Any], next_hop: str = "192.168.100.10") -> dict[str, Any]:
    return {"attribute": attrs, "announce": {"ipv4 unicast": {next_hop: [{"nlri": "10.52.0.0/24"}]}}}


TREATED_AS_WITHDRAW = {
    # ORIGIN value 7: ExaBGP passes it on as "invalid"
    "origin_7": (announce_of({"origin": "invalid", "local-preference": 100}), "ORIGIN 'invalid'"),
    # no NEXT_HOP attribute
    "no_next_hop": (announce_of(GOOD_ATTRS, "no-nexthop"), "next hop 'no-nexthop'"),
    # a 16-octet NEXT_HOP for an IPv4 prefix
    "next_hop_16_octets": (announce_of(GOOD_ATTRS, "::"), "next hop '::'"),
    # an attribute code ExaBGP does not know (99) sent well-known (flags 0x40; ExaBGP adds Partial)
    "unknown_well_known": (
        announce_of({**GOOD_ATTRS, "attribute-0x63-0x60": "0x0102"}),
        "unrecognized well-known attribute 99",
    ),
    # no ORIGIN attribute (RFC 7606 §3 d)
    "missing_origin": (announce_of({"local-preference": 100}), "missing ORIGIN"),
    # not seen from ExaBGP 5.0.15 (it turns these into withdrawals itself), handled alike anyway
    "exabgp_marker_on_announce": (announce_of({**GOOD_ATTRS, "error": "treat-as-withdraw"}), "exabgp"),
    "med_not_a_number": (announce_of({**GOOD_ATTRS, "med": "five"}), "bad attributes"),
    "originator_id_not_an_address": (announce_of({**GOOD_ATTRS, "originator-id": "1.1.1"}), "bad attributes"),
    "community_not_a_pair": (announce_of({**GOOD_ATTRS, "community": [[65000]]}), "bad attributes"),
    "attributes_not_an_object": (announce_of(["origin"]), "not an object"),  # type: ignore[arg-type]
}


@pytest.mark.parametrize(("body", "reason"), TREATED_AS_WITHDRAW.values(), ids=TREATED_AS_WITHDRAW.keys())
def test_unusable_announcement_is_treated_as_withdraw(body: dict[str, Any], reason: str) -> None:
    ev = update(body)
    assert ev.announced == ()
    assert ev.withdrawn == (P52,)
    assert len(ev.malformed) == 1
    assert reason in ev.malformed[0] and "10.52.0.0/24" in ev.malformed[0]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        # ORIGIN of length 0 (no value octet)
        (
            {"local-preference": 100, "error": "treat-as-withdraw due to origin"},
            "treat-as-withdraw due to origin",
        ),
        # LOCAL_PREF, MED, COMMUNITY or LARGE_COMMUNITY of 3 octets, NEXT_HOP of 5, ORIGIN with the Optional
        # flag, AS_PATH segment type 9, an attribute length past the end of the attribute section
        ({"origin": "igp", "local-preference": 100, "error": "treat-as-withdraw"}, "treat-as-withdraw"),
    ],
    ids=["origin_empty", "other"],
)
def test_withdrawal_exabgp_made_of_a_malformed_update_is_counted(body: dict[str, Any], reason: str) -> None:
    ev = update({"attribute": body, "withdraw": {"ipv4 unicast": [{"nlri": "10.52.0.0/24"}]}})
    assert (ev.announced, ev.withdrawn) == ((), (P52,))
    assert len(ev.malformed) == 1 and reason in ev.malformed[0] and "10.52.0.0/24" in ev.malformed[0]


@pytest.mark.parametrize(
    ("attrs", "next_hop"),
    [
        ({**GOOD_ATTRS, "attribute-0x63-0xE0": "0x0102"}, "192.168.100.10"),  # unknown optional transitive
        ({**GOOD_ATTRS, "error": "discard"}, "192.168.100.10"),  # AGGREGATOR/ATOMIC_AGGREGATE dropped (§7.7)
        (GOOD_ATTRS, "0.0.0.0"),  # unusable next hops are the import policy's (invalid_next_hop) ...
        (GOOD_ATTRS, "224.0.0.5"),  # ... which removes the earlier path itself
    ],
    ids=["unknown_optional", "attribute_discarded", "next_hop_zero", "next_hop_multicast"],
)
def test_usable_announcement_is_announced(attrs: dict[str, Any], next_hop: str) -> None:
    ev = update(announce_of(attrs, next_hop))
    assert ev.announced == (Announced(P52, A(next_hop), Attributes(local_pref=100)),)
    assert (ev.withdrawn, ev.malformed) == ((), ())


def test_prefix_both_withdrawn_and_treated_as_withdraw_is_listed_once() -> None:
    ev = update(
        {**announce_of({"origin": "invalid"}), "withdraw": {"ipv4 unicast": [{"nlri": "10.52.0.0/24"}]}}
    )
    assert ev.withdrawn == (P52,) and len(ev.malformed) == 1


_GOOD_NEXT_HOPS = st.sampled_from(["192.168.100.10", "192.168.100.12", "10.0.0.1"])
_BAD_NEXT_HOPS = st.sampled_from(["no-nexthop", "::", "fe80::1", "self", "192.168.100"])
_BAD_ATTRS = st.sampled_from(
    [
        {"origin": "invalid"},
        {"local-preference": 100},
        {"origin": "igp", "attribute-0x63-0x40": "0x01"},
        {"origin": "igp", "med": "x"},
        {"origin": "igp", "error": "treat-as-withdraw due to origin"},
    ]
)
_BAD_PREFIXES = st.sampled_from(["10.52.0.0/33", "300.1.1.0/24", "fd00::/64", ""])


@st.composite
def _announcements(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    """An ExaBGP `update` object announcing distinct prefixes under several next hops, some of them
    unusable, plus how many NLRIs in it do not parse."""
    prefixes = draw(st.lists(st.integers(0, 255).map(lambda i: f"10.52.{i}.0/24"), max_size=12, unique=True))
    hops = draw(st.lists(st.one_of(_GOOD_NEXT_HOPS, _BAD_NEXT_HOPS), min_size=1, max_size=4, unique=True))
    by_hop: dict[str, list[dict[str, str]]] = {hop: [] for hop in hops}
    for p in prefixes:
        by_hop[draw(st.sampled_from(hops))].append({"nlri": p})
    bad = draw(st.lists(st.tuples(st.sampled_from(hops), _BAD_PREFIXES), max_size=3))
    for hop, text in bad:
        by_hop[hop].append({"nlri": text})
    attrs = draw(st.one_of(st.just({"origin": "egp", "med": 5}), _BAD_ATTRS))
    return {"attribute": attrs, "announce": {"ipv4 unicast": by_hop}}, len(bad)


@given(_announcements())
@settings(max_examples=300, deadline=None)
def test_every_announced_nlri_is_announced_or_withdrawn_never_dropped(
    case: tuple[dict[str, Any], int],
) -> None:
    body, unparsed = case
    ev = update(body)
    nlris = {
        N(r["nlri"])
        for routes in body["announce"]["ipv4 unicast"].values()
        for r in routes
        if r["nlri"].startswith("10.52.") and r["nlri"].endswith(".0/24")
    }
    announced = [a.prefix for a in ev.announced]
    assert set(announced).isdisjoint(ev.withdrawn)
    assert sorted(announced + list(ev.withdrawn)) == sorted(nlris)
    assert len(ev.malformed) == len(ev.withdrawn) + unparsed  # each one counted once
    for a in ev.announced:
        assert any(r["nlri"] == str(a.prefix) for r in body["announce"]["ipv4 unicast"][str(a.next_hop)])
    if ev.announced:
        assert body["attribute"] == {"origin": "egp", "med": 5}


OPEN_LINE = (
    '{ "exabgp": "5.0.0", "time": 1.0, "host" : "vm", "pid" : 1, "ppid" : 1, "counter": 2, "type": "open", '
    '"neighbor": { "address": { "local": "192.168.200.2", "peer": "192.168.200.1" }, '
    '"asn": { "local": 64512, "peer": 64513 }, "router-id": "192.168.200.2" , "direction": "%s", '
    '"open": { "version": 4, "asn": 64513, "hold_time": 9, "router_id": "10.0.0.1", "capabilities": { } } } }'
)


def test_decode_received_open_gives_the_peer_router_id() -> None:
    assert decode(OPEN_LINE % "receive") == PeerOpen(PEER, 64513, IPv4Address("10.0.0.1"), 9)


def test_sent_open_is_ignored() -> None:
    assert decode(OPEN_LINE % "send") is None


def test_decode_notification() -> None:
    line = event("notification", {"notification": {"code": 6, "subcode": 2, "data": "0x00", "message": ""}})
    assert decode(line) == Notification(PEER, 6, 2, "0x00")


@pytest.mark.parametrize("line", ["done", "error", "", "   ", "\n", "shutdown"])
def test_non_json_lines_give_none(line: str) -> None:
    assert decode(line) is None


@pytest.mark.parametrize(
    "line",
    [
        json.dumps({"exabgp": "5.0.0", "type": "notification", "notification": "shutdown"}),  # no neighbor
        event("keepalive"),
        event("update", {"eor": {"afi": "ipv6", "safi": "unicast"}}),
        event("update", {"refresh": {}}),
    ],
)
def test_events_bgpd_ignores_give_none(line: str) -> None:
    assert decode(line) is None


@pytest.mark.parametrize("line", ['{"type": "update", ', "{not json}", '{"a": 1} trailing'])
def test_invalid_json_raises(line: str) -> None:
    with pytest.raises(DecodeError):
        decode(line)


def test_decode_error_is_value_error() -> None:
    assert issubclass(DecodeError, ValueError)


@pytest.mark.parametrize(
    "neighbor",
    [
        {"address": {"peer": "fd00::1"}},
        {"address": {"peer": "not-an-ip"}},
        {"address": {}},
        {"asn": {"peer": 1}},
    ],
)
def test_event_without_valid_peer_raises(neighbor: dict[str, Any]) -> None:
    line = json.dumps({"type": "state", "neighbor": {**neighbor, "state": "up"}})
    with pytest.raises(DecodeError):
        decode(line)


# ------------------------------------------------------------------ command lines

FULL = Attributes(
    origin=Origin.EGP,
    as_path=(65001, 65002),
    local_pref=200,
    med=5,
    communities=("65000:1", "65000:2"),
    large_communities=("65000:1:2",),
    originator_id=A("1.1.1.1"),
    cluster_list=(A("1.0.0.1"), A("1.0.0.2")),
)


def test_announce_line_contains_every_attribute() -> None:
    [line] = announce_lines([N("10.20.1.0/26"), N("10.20.1.64/26")], NH, FULL)
    assert line == (
        "announce attributes next-hop 192.168.200.2 origin egp as-path [ 65001 65002 ] local-preference 200 "
        "med 5 community [ 65000:1 65000:2 ] large-community [ 65000:1:2 ] originator-id 1.1.1.1 "
        "cluster-list [ 1.0.0.1 1.0.0.2 ] nlri 10.20.1.0/26 10.20.1.64/26"
    )


def test_announce_line_minimal_attributes() -> None:
    assert announce_lines([N("10.20.1.3/32")], NH, Attributes()) == [
        "announce attributes next-hop 192.168.200.2 origin igp nlri 10.20.1.3/32"
    ]


def test_announce_nothing_gives_no_lines() -> None:
    assert announce_lines([], NH, FULL) == []
    assert withdraw_lines([], IPv4Address("192.168.200.2")) == []


def test_announce_chunking() -> None:
    prefixes = [N(f"10.20.{i}.0/24") for i in range(7)]
    lines = announce_lines(prefixes, NH, Attributes(), per_command=3)
    assert len(lines) == 3
    assert [line.split(" nlri ")[1].split() for line in lines] == [
        ["10.20.0.0/24", "10.20.1.0/24", "10.20.2.0/24"],
        ["10.20.3.0/24", "10.20.4.0/24", "10.20.5.0/24"],
        ["10.20.6.0/24"],
    ]
    assert all(
        line.startswith("announce attributes next-hop 192.168.200.2 origin igp nlri ") for line in lines
    )


def test_default_chunk_size() -> None:
    prefixes = [N(f"10.{i // 256}.{i % 256}.0/24") for i in range(NLRI_PER_COMMAND + 1)]
    lines = announce_lines(prefixes, NH, Attributes())
    assert [len(line.split(" nlri ")[1].split()) for line in lines] == [NLRI_PER_COMMAND, 1]


def test_withdraw_lines_and_chunking() -> None:
    prefixes = [N("10.20.1.0/26"), N("10.20.1.64/26"), N("10.20.1.128/26")]
    assert withdraw_lines(prefixes, IPv4Address("192.168.200.2"), per_command=2) == [
        "withdraw attributes next-hop 192.168.200.2 nlri 10.20.1.0/26 10.20.1.64/26",
        "withdraw attributes next-hop 192.168.200.2 nlri 10.20.1.128/26",
    ]


def test_single_neighbor_targeting() -> None:
    assert announce_lines([N("10.20.1.0/26")], NH, Attributes(), neighbors=[PEER]) == [
        "neighbor 192.168.200.1 announce attributes next-hop 192.168.200.2 origin igp nlri 10.20.1.0/26"
    ]
    assert withdraw_lines([N("10.20.1.0/26")], IPv4Address("192.168.200.2"), neighbors=[PEER]) == [
        "neighbor 192.168.200.1 withdraw attributes next-hop 192.168.200.2 nlri 10.20.1.0/26"
    ]


def test_several_neighbors_targeting_names_each_before_command() -> None:
    b = A("192.168.200.3")
    lines = announce_lines([N("10.20.1.0/26")], NH, Attributes(), neighbors=[PEER, b], per_command=1)
    [line] = lines
    head, _, rest = line.partition(" announce attributes ")
    assert [part.strip(" ,") for part in head.split(",")] == [
        "neighbor 192.168.200.1",
        "neighbor 192.168.200.3",
    ]
    assert rest == "next-hop 192.168.200.2 origin igp nlri 10.20.1.0/26"
    [wline] = withdraw_lines([N("10.20.1.0/26")], IPv4Address("192.168.200.2"), neighbors=[PEER, b])
    assert wline.startswith(head + " withdraw attributes next-hop 192.168.200.2 nlri ")


def test_empty_neighbor_list_means_every_neighbor() -> None:
    assert announce_lines([N("10.20.1.0/26")], NH, Attributes(), neighbors=[])[0].startswith("announce ")


def test_eor_line() -> None:
    assert eor_line() == "announce eor ipv4 unicast"
    assert eor_line(PEER) == "neighbor 192.168.200.1 announce eor ipv4 unicast"


# ------------------------------------------------------------------ against ExaBGP 5.0.15's own parsers


@pytest.fixture(scope="module")
def exabgp_api() -> Iterator[Any]:
    import exabgp  # noqa: F401  # a hard dependency: a failed import fails, never skips
    from exabgp.environment import getenv
    from exabgp.logger import log
    from exabgp.reactor.api import API

    log.init(getenv())
    yield API(None)


def _exabgp_peer_names(*addresses: str) -> list[str]:
    # The form of exabgp.bgp.neighbor.Neighbor.name(), which API neighbor selectors are matched against.
    return [
        f"neighbor {a} local-ip 192.168.200.2 local-as 64512 peer-as 64512 router-id 192.168.200.2 "
        "family-allowed in-open"
        for a in addresses
    ]


def test_exabgp_parses_announce_line_with_same_attributes(exabgp_api: Any) -> None:
    from exabgp.reactor.api.command.limit import extract_neighbors

    prefixes = [N("10.20.1.0/26"), N("10.20.1.64/26")]
    [line] = announce_lines(prefixes, NH, FULL)
    _, command = extract_neighbors(line)
    changes = exabgp_api.api_attributes(command, [])
    assert [str(c.nlri.cidr.prefix()) for c in changes] == [str(p) for p in prefixes]
    text = changes[0].extensive()
    for part in (
        "next-hop 192.168.200.2",
        "origin egp",
        "as-path ( 65001 65002 )",
        "med 5",
        "local-preference 200",
        "community [ 65000:1 65000:2 ]",
        "originator-id 1.1.1.1",
        "cluster-list [ 1.0.0.1 1.0.0.2 ]",
        "large-community 65000:1:2",
    ):
        assert part in text


def test_exabgp_parses_withdraw_line(exabgp_api: Any) -> None:
    from exabgp.reactor.api.command.limit import extract_neighbors

    [line] = withdraw_lines([N("10.20.1.0/26")], IPv4Address("192.168.200.2"))
    _, command = extract_neighbors(line)
    changes = exabgp_api.api_attributes(command, [])
    assert [str(c.nlri.cidr.prefix()) for c in changes] == ["10.20.1.0/26"]
    # an explicit next hop: ExaBGP's patched remove_self need not copy the route per neighbor
    assert [c.nlri.nexthop.SELF for c in changes] == [False]


def test_exabgp_matches_single_neighbor_target(exabgp_api: Any) -> None:
    from exabgp.reactor.api.command.limit import extract_neighbors, match_neighbors

    peers = _exabgp_peer_names("192.168.200.1", "192.168.200.3")
    for line in (announce_lines([N("10.20.1.0/26")], NH, Attributes(), neighbors=[PEER])[0], eor_line(PEER)):
        descriptions, command = extract_neighbors(line)
        assert match_neighbors(peers, descriptions) == peers[:1]
        assert command.startswith("announce ")


def test_exabgp_matches_every_targeted_neighbor(exabgp_api: Any) -> None:
    from exabgp.reactor.api.command.limit import extract_neighbors, match_neighbors

    peers = _exabgp_peer_names("192.168.200.1", "192.168.200.3", "192.168.200.4")
    [line] = announce_lines([N("10.20.1.0/26")], NH, Attributes(), neighbors=[PEER, A("192.168.200.3")])
    descriptions, command = extract_neighbors(line)
    assert command.startswith("announce attributes ")
    assert match_neighbors(peers, descriptions) == peers[:2]


@pytest.mark.parametrize(
    "message",
    [
        {"eor": "ipv4 unicast"},
        {"update": {"withdraw": [{"nlri": "10.20.1.0/26"}]}},
        {"update": {"withdraw": {"ipv4 unicast": None}}},
        {"update": {"announce": {"ipv4 unicast": [{"nlri": "10.20.1.0/26"}]}}},
        {
            "update": {
                "attribute": {"as-path": {"0": [65001]}},
                "announce": {"ipv4 unicast": {"192.168.200.1": [{"nlri": "10.20.1.0/26"}]}},
            }
        },
    ],
    ids=[
        "eor_not_object",
        "withdraw_list",
        "withdraw_null_routes",
        "announce_without_next_hop",
        "as_path_list",
    ],
)
def test_unexpected_shape_never_escapes_as_other_exception(message: dict[str, Any]) -> None:
    try:
        ev = decode(event("update", message))
    except DecodeError:
        return
    assert isinstance(ev, Update) and ev.malformed


def test_notification_of_unexpected_shape_raises_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode(event("notification", "not an object"))


def gr_open(family: str = "ipv4/unicast", time: int = 120, flags: str = '"restart"') -> str:
    capability = (
        f'"capabilities": {{ "64": {{ "name": "graceful restart", "time": {time}, '
        f'"address-family-flags": {{ "{family}": [ {flags} ] }}, "restart-flags": [ ] }} }}'
    )
    return (OPEN_LINE % "receive").replace('"capabilities": { }', capability)


@pytest.mark.parametrize(("flags", "kept"), [('"restart"', True), ("", False)], ids=["forwarding", "none"])
def test_received_open_carries_the_graceful_restart_capability(flags: str, kept: bool) -> None:
    opened = decode(gr_open(flags=flags))
    assert isinstance(opened, PeerOpen)
    assert (opened.restart_time, opened.forwarding_kept) == (120, kept)


def test_graceful_restart_for_another_family_or_time_zero_is_none() -> None:
    for line in (gr_open(family="ipv6/unicast"), gr_open(time=0), OPEN_LINE % "receive"):
        opened = decode(line)
        assert isinstance(opened, PeerOpen) and opened.restart_time is None


def test_the_graceful_restart_capability_without_families_still_promises_end_of_rib() -> None:
    """BIRD's default ("graceful restart aware"): the capability with no address families. No restart
    time for our family, but the peer sends End-of-RIB (RFC 4724 §3), which a starting bgpd waits for."""
    aware = (OPEN_LINE % "receive").replace(
        '"capabilities": { }',
        '"capabilities": { "64": { "name": "graceful restart", "time": 0, "address-family-flags": { }, '
        '"restart-flags": [ ] } }',
    )
    opened = decode(aware)
    assert isinstance(opened, PeerOpen)
    assert (opened.restart_time, opened.graceful_capability) == (None, True)
    plain = decode(OPEN_LINE % "receive")
    assert isinstance(plain, PeerOpen) and plain.graceful_capability is False
    full = decode(gr_open())
    assert isinstance(full, PeerOpen) and full.graceful_capability is True


def test_the_notification_behind_a_session_down_and_the_teardown_command() -> None:
    from bgpd.exabgp.codec import notified, teardown_line

    assert notified("notification sent (6,1)") == ("sent", 6, 1)
    assert notified("notification received (2,2)") == ("received", 2, 2)
    assert notified("closing connection") is False
    assert teardown_line(IPv4Address("192.0.2.1"), 1) == "neighbor 192.0.2.1 teardown 1"
