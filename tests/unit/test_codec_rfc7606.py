"""RFC 7606 at the ExaBGP boundary (issue 14): bgpd.exabgp.rfc7606's corrections to ExaBGP 5.0.15's UPDATE
parser, and the codec's own treat-as-withdraw rules, driven by UPDATEs on the wire.

Each UPDATE is parsed by ExaBGP's real parser (`Update.unpack_message`) and written as its API JSON
(`Response.JSON`), patched and unpatched; the JSON then goes through `codec.decode`. Valid UPDATEs (from the
fuzz grammar, bench/fuzzgrammar.py) give exactly the same JSON with and without the corrections; each
malformed one gives the RFC's answer with them (and the old one without).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from ipaddress import IPv4Network, IPv6Network
from typing import Any

import pytest
from exabgp.environment import getenv
from exabgp.logger import log as exabgp_log
from hypothesis import HealthCheck, given, settings

from bench import rawbgp as wire
from bench.fuzzgrammar import Context, Valid, valid_updates
from bgpd.exabgp import codec, rfc7606

exabgp_log.init(getenv())  # error paths log through ExaBGP's logger

CTX = Context()
NH = wire.next_hop(CTX.peer4)
P4 = "10.60.1.0/24"


@pytest.fixture(autouse=True)
def _corrections() -> Iterator[None]:
    rfc7606.apply()
    yield
    rfc7606.restore()


def _negotiated() -> Any:
    from exabgp.bgp.message.open.asn import ASN
    from exabgp.bgp.message.open.capability.negotiated import Negotiated
    from exabgp.bgp.neighbor import Neighbor
    from exabgp.protocol.family import AFI, SAFI

    negotiated = Negotiated(Neighbor())
    negotiated.families = [(AFI.ipv4, SAFI.unicast), (AFI.ipv6, SAFI.unicast)]
    negotiated.local_as = negotiated.peer_as = ASN(CTX.asn)
    negotiated.asn4 = True
    return negotiated


def exabgp(message: bytes) -> str:
    """ExaBGP's answer to one UPDATE message: the `message` object of its API JSON, or "notify C S"."""
    from exabgp.bgp.message import Notify
    from exabgp.bgp.message.direction import Direction
    from exabgp.bgp.message.update import Update
    from exabgp.reactor.api.response import Response
    from exabgp.version import json as json_version

    negotiated = _negotiated()
    try:
        update = Update.unpack_message(message[wire.HEADER :], Direction.IN, negotiated)
    except Notify as exc:
        return f"notify {exc.code} {exc.subcode}"
    text = Response.JSON(json_version).update(negotiated.neighbor, "receive", update, None, "", "")
    return re.sub(r'^.*"message": ', "", text)[: -len(" } }")]


def both(message: bytes) -> tuple[str, str]:
    """(ExaBGP's answer with the corrections, without them)."""
    patched = exabgp(message)
    rfc7606.restore()
    try:
        original = exabgp(message)
    finally:
        rfc7606.apply()
    return patched, original


def bgpd(message: bytes) -> codec.Update[Any, Any]:
    """What bgpd makes of the UPDATE: ExaBGP's JSON (corrected) through the codec."""
    answer = exabgp(message)
    assert not answer.startswith("notify"), answer
    line = {
        "exabgp": "5.0.0",
        "type": "update",
        "neighbor": {
            "address": {"local": CTX.own4, "peer": CTX.peer4},
            "asn": {"local": CTX.asn, "peer": CTX.asn},
            "direction": "receive",
            "message": json.loads(answer),
        },
    }
    event = codec.decode(json.dumps(line), codec.DUAL_STACK)
    assert isinstance(event, codec.Update)
    return event


def update(attributes: bytes, announced: tuple[str, ...] = (P4,)) -> bytes:
    return wire.message(wire.UPDATE, wire.update(attributes=attributes, announced=announced))


# --------------------------------------------------------------------------------------------- equality
@given(valid_updates(CTX))
@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
def test_valid_updates_parse_exactly_as_without_the_corrections(valid: Valid) -> None:
    message = wire.message(wire.UPDATE, valid.body())
    patched, original = both(message)
    assert patched == original
    assert '"error"' not in patched and not patched.startswith("notify")


@pytest.mark.parametrize(
    "message",
    [
        update(wire.origin(0) + wire.as_path() + NH),  # an empty AS_PATH (iBGP)
        update(wire.origin(2) + wire.as_path(65001, 65002) + NH + wire.local_pref(50)),
        wire.message(wire.UPDATE, wire.update(withdrawn=[P4])),
        wire.message(wire.UPDATE, wire.update(attributes=wire.mp_unreach(6, ["fd00:60::/64"]))),
        wire.message(wire.UPDATE, wire.update(attributes=wire.mp_unreach(6, []))),  # IPv6 End-of-RIB
        wire.message(wire.UPDATE, wire.update()),  # IPv4 End-of-RIB
    ],
)
def test_withdrawals_and_end_of_rib_are_unchanged(message: bytes) -> None:
    patched, original = both(message)
    assert patched == original


def test_apply_is_idempotent_and_restore_puts_exabgp_back() -> None:
    from exabgp.bgp.message.update.attribute import Attributes

    rfc7606.apply()
    assert Attributes._parse_one is rfc7606._parse_one
    rfc7606.restore()
    assert Attributes._parse_one is not rfc7606._parse_one and 9 not in Attributes.TREAT_AS_WITHDRAW
    rfc7606.apply()


# --------------------------------------------------------------------------------------------- corrections
_O, _P, _LP = wire.origin(0), wire.as_path(), wire.local_pref(100)
CORRECTED = {
    # name: (message, ExaBGP's answer without the corrections: "accepted", "discard" or "notify C S")
    "origin_2_octets": (update(wire.attribute(wire.TRANSITIVE, 1, b"\0\0") + _P + NH), "accepted"),
    "originator_id_3_octets": (
        update(_O + _P + NH + wire.attribute(wire.OPTIONAL, 9, b"\1\2\3")),
        "notify 3 5",
    ),
    "originator_id_bad_flags": (
        update(_O + _P + NH + wire.attribute(wire.TRANSITIVE, 9, b"\1\2\3\4")),
        "accepted",
    ),
    "cluster_list_5_octets": (
        update(_O + _P + NH + wire.attribute(wire.OPTIONAL, 10, b"\1\2\3\4\5")),
        "notify 3 5",
    ),
    "as_path_zero_segment": (
        update(_O + wire.attribute(wire.TRANSITIVE, 2, wire.as_path_value((2, [65001]), (2, []))) + NH),
        "accepted",
    ),
    "no_as_path": (update(_O + NH + _LP), "accepted"),
    "no_as_path_ipv6": (
        wire.message(
            wire.UPDATE, wire.update(attributes=_O + wire.mp_reach(6, [CTX.peer6], ["fd00:60::/64"]))
        ),
        "accepted",
    ),
    "unknown_well_known_not_transitive": (update(_O + _P + NH + wire.attribute(0, 241, b"\1")), "accepted"),
}


@pytest.mark.parametrize(("message", "before"), CORRECTED.values(), ids=CORRECTED.keys())
def test_malformed_attributes_are_treated_as_withdraw(message: bytes, before: str) -> None:
    patched, original = both(message)
    assert '"error": "treat-as-withdraw' in patched
    if before.startswith("notify"):
        assert original == before
    else:
        assert '"error"' not in original
    event = bgpd(message)
    assert event.announced == () and len(event.withdrawn) == 1 and len(event.malformed) == 1


def test_a_duplicate_after_an_empty_as_path_is_discarded() -> None:
    """RFC 7606 §3 g: the first AS_PATH (empty) is the path; ExaBGP took the second one."""
    message = update(_O + _P + wire.as_path(CTX.asn) + NH)
    patched, original = both(message)
    assert '"as-path"' in original and '"as-path"' not in patched
    (route,) = bgpd(message).announced
    assert route.attrs.as_path == ()


@pytest.mark.parametrize("code", [14, 15])
def test_empty_mp_attribute_resets_the_session(code: int) -> None:
    """RFC 7606 §3 j: an MP_REACH_NLRI/MP_UNREACH_NLRI that cannot be parsed resets (ExaBGP withdrew
    nothing and kept the session)."""
    message = wire.message(
        wire.UPDATE, wire.update(attributes=_O + _P + wire.attribute(wire.OPTIONAL, code, b""))
    )
    patched, original = both(message)
    assert patched == "notify 3 9" and not original.startswith("notify")


def test_an_empty_aggregator_is_discarded() -> None:
    """RFC 7606 §7.7: attribute discard (ExaBGP's zero-length rule withdrew the route)."""
    message = update(_O + _P + NH + wire.attribute(wire.OPTIONAL | wire.TRANSITIVE, 7, b""))
    patched, original = both(message)
    assert '"error"' not in patched and "treat-as-withdraw" in original
    assert len(bgpd(message).announced) == 1


# --------------------------------------------------------------------------------------------- the codec
def test_host_bits_of_a_prefix_are_ignored() -> None:
    """RFC 4271 §4.3: the trailing bits are irrelevant; ExaBGP prints them ("10.60.1.5/24")."""
    body = bytearray(wire.update(attributes=_O + _P + NH, announced=["10.60.1.128/25"]))
    body[-1] |= 0x05
    event = bgpd(wire.message(wire.UPDATE, bytes(body)))
    assert [a.prefix for a in event.announced] == [IPv4Network("10.60.1.128/25")] and event.malformed == ()


def test_as_zero_is_treated_as_withdraw() -> None:
    """RFC 7607 §2, in a sequence and in a set."""
    for value in (wire.as_path_value((2, [65001, 0])), wire.as_path_value((2, [65001]), (1, [65002, 0]))):
        event = bgpd(update(_O + wire.attribute(wire.TRANSITIVE, 2, value) + NH))
        assert event.announced == () and event.malformed == (
            "10.60.1.0/24 treated as withdrawn: AS 0 in AS_PATH",
        )


def test_exabgp_treat_as_withdraw_is_counted_once_per_prefix_with_a_link_local_next_hop() -> None:
    """A 32-octet next hop (RFC 2545 §3) makes ExaBGP list each NLRI twice: one prefix, one count."""
    reach = wire.mp_reach(6, [CTX.peer6, "fe80::1"], ["fd00:60::/64", "fd00:60:0:1::/64"])
    event = bgpd(wire.message(wire.UPDATE, wire.update(attributes=wire.origin(9) + _P + reach)))
    assert event.withdrawn == (IPv6Network("fd00:60::/64"), IPv6Network("fd00:60:0:1::/64"))
    assert len(event.malformed) == 2


def test_an_mp_attribute_past_the_path_attributes_resets_the_session() -> None:
    """RFC 7606 §3 j: its NLRI cannot be located (ExaBGP withdrew nothing and kept the old routes)."""
    reach = wire.mp_reach(6, [CTX.peer6], ["fd00:60::/64"])
    attributes = _O + _P + reach[:2] + bytes([reach[2] + 5]) + reach[3:]  # its length says 5 more octets
    message = wire.message(wire.UPDATE, wire.update_body(b"", attributes, b""))
    patched, original = both(message)
    assert patched == "notify 3 9" and not original.startswith("notify")


def test_a_header_error_is_not_reported_as_received_and_other_notifications_are() -> None:
    """Correction 8: ExaBGP's reader reports a header error it found with one argument too many (a
    TypeError that ended the session without a NOTIFICATION); that call is skipped, the others pass."""
    from exabgp.reactor.api.processes import Processes

    calls: list[str] = []
    processes = object.__new__(Processes)
    processes.silence = False

    def notify(neighbor: object, event: str) -> list[str]:
        calls.append(event)
        return []

    processes._notify = notify
    assert processes.notification(None, "receive", 1, 1, "marker", None, b"", b"") is None
    assert calls == []
    processes.notification(None, "receive", 6, 2, "shutdown", b"", b"")
    assert calls == ["neighbor-changes"]
