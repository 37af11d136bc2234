"""The malformed-UPDATE grammar of the fuzz campaign (issue 14): hypothesis strategies for valid UPDATEs and
a mutation layer, each generated `Case` knowing its mutation kind and the outcome RFC 7606 prescribes.

Valid UPDATEs (`valid_updates`): an iBGP peer's announcement of 1-4 prefixes inside the fuzzed pool, as a
plain IPv4 UPDATE (NEXT_HOP + NLRI field), an IPv4 one in MP_REACH_NLRI, or an IPv6 one in MP_REACH_NLRI
(16-octet next hop, or 32 with a link-local address, RFC 2545 §3), with ORIGIN, AS_PATH (empty, a short
AS_SEQUENCE, or with an AS_SET), and any of LOCAL_PREF, MED, COMMUNITIES, LARGE_COMMUNITY,
ATOMIC_AGGREGATE, AGGREGATOR, ORIGINATOR_ID, CLUSTER_LIST and unknown optional attributes (transitive or
not), in any order, each with or without the Extended Length bit (RFC 4271 §4.3 allows all of it).

Mutations (`cases`, the kinds in `KINDS`): wrong attribute lengths (per attribute, RFC 7606 §7.x), the
attribute section overrun or left with a few octets (§4), Optional/Transitive flags in conflict (§3 c),
duplicate attributes (§3 g), unrecognized well-known attributes (RFC 4271 §6.3), missing mandatory ones
(§3 d), a bad ORIGIN (§7.1), NEXT_HOP 0.0.0.0/loopback/multicast/class E/the receiver's own address
(RFC 4271 §6.3), AS_PATH loops (RFC 4271 §9.1.2), very long and malformed AS_PATHs (§7.2, RFC 7607 for AS
0), malformed MP_REACH/MP_UNREACH (§7.11, §3 j, §5.3), malformed NLRI and withdrawn routes, wrong field
lengths (RFC 4271 §6.3), truncated messages, maximum-size and oversize messages (RFC 4271 §4.1, §6.1), a
broken marker or message type (§6.1), NLRI with trailing host bits (RFC 4271 §4.3: irrelevant), a non-zero
MP_REACH reserved octet (RFC 4760 §3: ignored) and the unchanged valid UPDATE.

Outcomes (`Outcome`): "treat-as-withdraw" (the prefixes are not installed and an earlier path of theirs
from this peer is removed; the session stays), "session-reset" (a NOTIFICATION, the session goes with all
its routes), "attribute-discard" and "accepted" (the prefixes are installed; the session stays). A case
also names bgpd's counter that must move by one per prefix (`counter`: a reject reason of `bgpctl show
peers`), and, where this project's outcome is not the RFC's, says why (`deviation`). Generation is pure:
no sockets; `bench/fuzz.py` runs the cases against a live bgpd.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, ip_address, ip_network
from typing import Literal

from hypothesis import strategies as st

from bench import rawbgp as wire

Outcome = Literal["treat-as-withdraw", "session-reset", "attribute-discard", "accepted"]
OUTCOMES: tuple[Outcome, ...] = ("treat-as-withdraw", "session-reset", "attribute-discard", "accepted")
TAW: Outcome = "treat-as-withdraw"
RESET: Outcome = "session-reset"
DISCARD: Outcome = "attribute-discard"
ACCEPTED: Outcome = "accepted"

O, T = wire.OPTIONAL, wire.TRANSITIVE  # noqa: E741 - the flags' letters in RFC 4271 §4.3
# the flags RFC 4271 §5 / RFC 1997 / RFC 4456 / RFC 4760 / RFC 8092 give each attribute (Partial clear)
FLAGS = {
    wire.ORIGIN_CODE: T,
    wire.AS_PATH_CODE: T,
    wire.NEXT_HOP_CODE: T,
    wire.MED_CODE: O,
    wire.LOCAL_PREF_CODE: T,
    wire.ATOMIC_AGGREGATE_CODE: T,
    wire.AGGREGATOR_CODE: O | T,
    wire.COMMUNITY_CODE: O | T,
    wire.ORIGINATOR_ID_CODE: O,
    wire.CLUSTER_LIST_CODE: O,
    wire.MP_REACH_CODE: O,
    wire.MP_UNREACH_CODE: O,
    wire.LARGE_COMMUNITY_CODE: O | T,
}
NAMES = {
    wire.ORIGIN_CODE: "ORIGIN",
    wire.AS_PATH_CODE: "AS_PATH",
    wire.NEXT_HOP_CODE: "NEXT_HOP",
    wire.MED_CODE: "MED",
    wire.LOCAL_PREF_CODE: "LOCAL_PREF",
    wire.ATOMIC_AGGREGATE_CODE: "ATOMIC_AGGREGATE",
    wire.AGGREGATOR_CODE: "AGGREGATOR",
    wire.COMMUNITY_CODE: "COMMUNITIES",
    wire.ORIGINATOR_ID_CODE: "ORIGINATOR_ID",
    wire.CLUSTER_LIST_CODE: "CLUSTER_LIST",
    wire.MP_REACH_CODE: "MP_REACH_NLRI",
    wire.MP_UNREACH_CODE: "MP_UNREACH_NLRI",
    wire.LARGE_COMMUNITY_CODE: "LARGE_COMMUNITY",
}
# RFC 7606's answer to a malformed attribute (a wrong length, or flags in conflict, §3 c): its section
MALFORMED: dict[int, tuple[Outcome, str]] = {
    wire.ORIGIN_CODE: (TAW, "RFC 7606 §7.1"),
    wire.AS_PATH_CODE: (TAW, "RFC 7606 §7.2"),
    wire.NEXT_HOP_CODE: (TAW, "RFC 7606 §7.3"),
    wire.MED_CODE: (TAW, "RFC 7606 §7.4"),
    wire.LOCAL_PREF_CODE: (TAW, "RFC 7606 §7.5"),
    wire.ATOMIC_AGGREGATE_CODE: (DISCARD, "RFC 7606 §7.6"),
    wire.AGGREGATOR_CODE: (DISCARD, "RFC 7606 §7.7"),
    wire.COMMUNITY_CODE: (TAW, "RFC 7606 §7.8"),
    wire.ORIGINATOR_ID_CODE: (TAW, "RFC 7606 §7.9"),
    wire.CLUSTER_LIST_CODE: (TAW, "RFC 7606 §7.10"),
    wire.MP_REACH_CODE: (RESET, "RFC 7606 §7.11, §3 j"),
    wire.MP_UNREACH_CODE: (RESET, "RFC 7606 §7.11, §3 j"),
    wire.LARGE_COMMUNITY_CODE: (TAW, "RFC 8092 §6"),
}
# attribute lengths that are wrong for each attribute (RFC 7606 §7.x): fixed sizes, or "a non-zero multiple"
WRONG_LENGTHS = {
    wire.ORIGIN_CODE: (0, 2, 3),
    wire.NEXT_HOP_CODE: (0, 3, 5, 8, 16),
    wire.MED_CODE: (0, 1, 3, 5, 8),
    wire.LOCAL_PREF_CODE: (0, 2, 3, 5, 8),
    wire.ATOMIC_AGGREGATE_CODE: (1, 2, 4),
    wire.AGGREGATOR_CODE: (0, 4, 6, 7, 9),
    wire.COMMUNITY_CODE: (0, 1, 2, 3, 5, 6, 7, 9),
    wire.ORIGINATOR_ID_CODE: (0, 3, 5, 8),
    wire.CLUSTER_LIST_CODE: (0, 1, 3, 5, 6),
    wire.LARGE_COMMUNITY_CODE: (0, 4, 8, 11, 13),
}
UNKNOWN_CODES = tuple(range(241, 255))  # unassigned attribute type codes (IANA), ExaBGP knows none of them
SENTINEL4, SENTINEL6 = "10.60.255.1/32", "fd00:60:0:ffff::1/128"


@dataclass(frozen=True)
class Context:
    """The session the cases are for: the raw speaker (`peer*`, an iBGP peer in `asn`) and bgpd's host
    (`own*`); the prefixes are drawn from `pool4` / `pool6` (sentinels stay outside them)."""

    asn: int = 64512
    peer4: str = "192.168.100.10"
    peer6: str = "fd00:100::10"
    own4: str = "192.168.100.11"
    own6: str = "fd00:100::11"
    router_id: str = "192.168.100.11"
    pool4: str = "10.60.0.0/17"
    pool6: str = "fd00:60::/49"


@dataclass(frozen=True)
class Attr:
    """One path attribute as it goes on the wire: flags, type code, value; `extended` adds Extended
    Length."""

    flags: int
    code: int
    value: bytes
    extended: bool = False

    def pack(self) -> bytes:
        return wire.attribute(self.flags, self.code, self.value, self.extended or len(self.value) > 255)


@dataclass(frozen=True)
class Valid:
    """A valid UPDATE of `family` announcing `prefixes`, in the NLRI field or (`mp`) in MP_REACH_NLRI,
    whose attributes are `attrs` in wire order (MP_REACH_NLRI among them when `mp`)."""

    family: int
    prefixes: tuple[str, ...]
    attrs: tuple[Attr, ...]
    mp: bool

    def body(self) -> bytes:
        attributes = b"".join(a.pack() for a in self.attrs)
        return wire.update_body(b"", attributes, b"" if self.mp else wire.nlri(self.prefixes))

    def index(self, code: int) -> int | None:
        for i, a in enumerate(self.attrs):
            if a.code == code:
                return i
        return None

    def without(self, code: int) -> tuple[Attr, ...]:
        return tuple(a for a in self.attrs if a.code != code)


@dataclass(frozen=True)
class Case:
    """One fuzz case. `setup` (an UPDATE body) announces `prefixes` validly; then `wire` (a whole message,
    header included) is sent. After it: `outcome` is what must happen (`rfc_outcome`, per `rfc`, what the
    RFC prescribes; `deviation` says why they differ), `counter` is bgpd's reject reason that moves by one
    per prefix (treat-as-withdraw), `notification` the (code, subcode) the RFC names for a reset."""

    kind: str
    family: int
    prefixes: tuple[str, ...]
    setup: bytes
    wire: bytes
    outcome: Outcome
    rfc: str
    counter: str | None = None
    notification: tuple[int, int] | None = None
    rfc_outcome: Outcome | None = None
    deviation: str = ""
    detail: str = ""
    known_issue: str = ""  # a deviation found and not yet fixed: reported apart from the mismatches

    @property
    def rfc_says(self) -> Outcome:
        return self.rfc_outcome or self.outcome

    def installed(self) -> bool:
        """Are the prefixes in the kernel after the case?"""
        return self.outcome in (ACCEPTED, DISCARD)


# --------------------------------------------------------------------------------------------- valid UPDATEs
def _asns(ctx: Context) -> st.SearchStrategy[int]:
    return st.integers(1, 4_294_967_295).filter(lambda a: a not in (ctx.asn, wire.AS_TRANS))


@st.composite
def prefixes(draw: st.DrawFn, family: int, ctx: Context) -> tuple[str, ...]:
    """1-4 distinct prefixes inside the family's pool: /24../32 (IPv4) or /64../128 (IPv6)."""
    pool = ip_network(ctx.pool4 if family == 4 else ctx.pool6)
    bits = pool.max_prefixlen
    low = 24 if family == 4 else 64
    out: dict[str, None] = {}
    for _ in range(draw(st.integers(1, 4))):
        length = draw(st.integers(low, bits))
        offset = draw(st.integers(0, (1 << (bits - pool.prefixlen)) - 1))
        address = int(pool.network_address) + offset
        net = ip_network((address >> (bits - length) << (bits - length), length))
        out[str(net)] = None
    return tuple(out)


def as_path_value(segments: list[tuple[int, list[int]]]) -> bytes:
    return wire.as_path_value(*segments)


@st.composite
def as_paths(draw: st.DrawFn, ctx: Context) -> list[tuple[int, list[int]]]:
    shape = draw(st.sampled_from(["empty", "sequence", "with_set"]))
    if shape == "empty":
        return []
    segments = [(wire.AS_SEQUENCE, draw(st.lists(_asns(ctx), min_size=1, max_size=5)))]
    if shape == "with_set":
        segments.append((wire.AS_SET, draw(st.lists(_asns(ctx), min_size=1, max_size=3))))
    return segments


def _v4(draw: st.DrawFn) -> bytes:
    return IPv4Address(draw(st.integers(0x01000000, 0xDFFFFFFF))).packed


@st.composite
def optional_attrs(draw: st.DrawFn, ctx: Context) -> list[Attr]:
    """Any of the optional and discretionary attributes (LOCAL_PREF most of the time, as iBGP sends it)."""
    out: list[Attr] = []
    if draw(st.integers(0, 9)):
        out.append(Attr(T, wire.LOCAL_PREF_CODE, struct.pack("!I", draw(st.integers(0, 2**32 - 1)))))
    if draw(st.booleans()):
        out.append(Attr(O, wire.MED_CODE, struct.pack("!I", draw(st.integers(0, 2**32 - 1)))))
    if draw(st.booleans()):
        values = draw(
            st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 65535)), min_size=1, max_size=4)
        )
        out.append(Attr(O | T, wire.COMMUNITY_CODE, b"".join(struct.pack("!HH", a, v) for a, v in values)))
    if draw(st.integers(0, 3)) == 0:
        large = draw(st.lists(st.tuples(*[st.integers(0, 2**32 - 1)] * 3), min_size=1, max_size=2))
        out.append(Attr(O | T, wire.LARGE_COMMUNITY_CODE, b"".join(struct.pack("!III", *v) for v in large)))
    if draw(st.integers(0, 4)) == 0:
        out.append(Attr(T, wire.ATOMIC_AGGREGATE_CODE, b""))
    if draw(st.integers(0, 4)) == 0:
        out.append(Attr(O | T, wire.AGGREGATOR_CODE, struct.pack("!I", draw(_asns(ctx))) + _v4(draw)))
    if draw(st.integers(0, 4)) == 0:
        value = _v4(draw)
        if value != IPv4Address(ctx.router_id).packed:
            out.append(Attr(O, wire.ORIGINATOR_ID_CODE, value))
    if draw(st.integers(0, 4)) == 0:
        ids = b"".join(_v4(draw) for _ in range(draw(st.integers(1, 3))))
        out.append(Attr(O, wire.CLUSTER_LIST_CODE, ids))
    if draw(st.integers(0, 4)) == 0:  # unknown optional: passed on if transitive, else ignored (RFC 4271 §5)
        flags = O | draw(st.sampled_from([0, T]))
        code = draw(st.sampled_from(UNKNOWN_CODES))
        out.append(Attr(flags, code, draw(st.binary(max_size=12))))
    return out


def next_hop_field(family: int, addresses: list[str]) -> bytes:
    return b"".join(ip_address(a).packed for a in addresses)


def mp_reach_value(family: int, hop: bytes, nlri: bytes, reserved: int = 0) -> bytes:
    afi = wire.AFI_IPV6 if family == 6 else wire.AFI_IPV4
    return struct.pack("!HBB", afi, wire.SAFI_UNICAST, len(hop)) + hop + bytes([reserved]) + nlri


def mp_unreach_value(family: int, nlri: bytes) -> bytes:
    afi = wire.AFI_IPV6 if family == 6 else wire.AFI_IPV4
    return struct.pack("!HB", afi, wire.SAFI_UNICAST) + nlri


@st.composite
def valid_updates(draw: st.DrawFn, ctx: Context, family: int | None = None) -> Valid:
    """A valid UPDATE (module docstring)."""
    fam = family if family is not None else draw(st.sampled_from([4, 6]))
    mp = fam == 6 or draw(st.integers(0, 4)) == 0
    nets = draw(prefixes(fam, ctx))
    attrs = [
        Attr(T, wire.ORIGIN_CODE, bytes([draw(st.integers(0, 2))])),
        Attr(T, wire.AS_PATH_CODE, as_path_value(draw(as_paths(ctx)))),
    ]
    if mp:
        hops = [ctx.peer6] if fam == 6 else [ctx.peer4]
        if fam == 6 and draw(st.booleans()):
            hops.append("fe80::" + format(draw(st.integers(1, 0xFFFF)), "x"))
        value = mp_reach_value(fam, next_hop_field(fam, hops), wire.nlri(nets))
        attrs.append(Attr(O, wire.MP_REACH_CODE, value))
    else:
        attrs.append(Attr(T, wire.NEXT_HOP_CODE, IPv4Address(ctx.peer4).packed))
    attrs += draw(optional_attrs(ctx))
    attrs = draw(st.permutations(attrs))
    extended = draw(st.lists(st.booleans(), min_size=len(attrs), max_size=len(attrs)))
    attrs = [
        replace(a, extended=e and draw(st.integers(0, 3)) == 0) for a, e in zip(attrs, extended, strict=True)
    ]
    return Valid(fam, nets, tuple(attrs), mp)


# --------------------------------------------------------------------------------------------- mutations
def _case(v: Valid, kind: str, body_or_wire: bytes, outcome: Outcome, rfc: str, **kw: object) -> Case:
    """A case whose mutated message is the UPDATE `body_or_wire` (or, with raw=True, these whole octets)."""
    raw = bool(kw.pop("raw", False))
    message = body_or_wire if raw else wire.message(wire.UPDATE, body_or_wire)
    return Case(kind, v.family, v.prefixes, v.body(), message, outcome, rfc, **kw)  # type: ignore[arg-type]


def _with(v: Valid, attrs: list[Attr] | tuple[Attr, ...]) -> bytes:
    return replace(v, attrs=tuple(attrs)).body()


def _resize(value: bytes, length: int, draw: st.DrawFn) -> bytes:
    if length <= len(value):
        return value[:length]
    return value + draw(st.binary(min_size=length - len(value), max_size=length - len(value)))


def _taw(v: Valid) -> dict[str, object]:
    return {"counter": "malformed"}


def m_valid(draw: st.DrawFn, v: Valid, ctx: Context) -> Case:
    return _case(v, "valid", v.body(), ACCEPTED, "RFC 4271 §4.3")


def m_attr_length(draw: st.DrawFn, v: Valid, ctx: Context) -> Case:
    choices = [i for i, a in enumerate(v.attrs) if a.code in WRONG_LENGTHS]
    i = draw(st.sampled_from(choices))
    a = v.attrs[i]
    length = draw(st.sampled_from(WRONG_LENGTHS[a.code]))
    attrs = list(v.attrs)
    attrs[i] = replace(a, value=_resize(a.value, length, draw))
    outcome, rfc = MALFORMED[a.code]
    extra = _taw(v) if outcome == TAW else {}
    return _case(
        v, "attr_length", _with(v, attrs), outcome, rfc, detail=f"{NAMES[a.code]} of {length} octets", **extra
    )


def m_attr_overrun(draw: st.DrawFn, v: Valid, ctx: Context) -> Case:
    """The last attribute says it is longer than what is left of the attribute section (RFC 7606 §4)."""
    last = v.attrs[-1]
    head = b"".join(a.pack() for a in v.attrs[:-1])
    extra = draw(st.integers(1, 20))
    packed = last.pack()
    hl = 4 if packed[0] & wire.EXTENDED else 3
    length = len(last.value) + extra
    if hl == 3 and length > 255:
        length = 255
    header = (
        struct.pack("!BBH", packed[0], last.code, length)
        if hl == 4
        else struct.pack("!BBB", packed[0], last.code, length)
    )
    attributes = head + header + last.value
    nlri = b"" if v.mp else wire.nlri(v.prefixes)
    body = wire.update_body(b"", attributes, nlri)
    if last.code == wire.MP_REACH_CODE:  # the NLRI cannot be found: §3 j
        return _case(
            v,
            "attr_overrun",
            body,
            RESET,
            "RFC 7606 §4, §3 j",
            notification=(3, 9),
            detail="MP_REACH_NLRI overruns",
        )
    return _case(
        v,
        "attr_overrun",
        body,
        TAW,
        "RFC 7606 §4",
        detail=f"{NAMES.get(last.code, last.code)} overruns by {extra}",
        **_taw(v),
    )


def m_attr_underrun(draw: st.DrawFn, v: Valid, ctx: Context) -> Case:
    """1-2 octets left after the last attribute: too few for an attribute header (RFC 7606 §4)."""
    tail = draw(st.binary(min_size=1, max_size=2))
    attributes = b"".join(a.pack() for a in v.attrs) + tail
    body = wire.update_body(b"", attributes, b"" if v.mp else wire.nlri(v.prefixes))
    return _case(v, "attr_underrun", body, TAW, "RFC 7606 §4", detail=f"{len(tail)} octets left", **_taw(v))


def m_bad_flags(draw: st.DrawFn, v: Valid, ctx: Context) -> Case:
    i = draw(st.sampled_from([i for i, a in enumerate(v.attrs) if a.code in FLAGS]))
    a = v.attrs[i]
    right = FLAGS[a.code]
    wrong = draw(st.sampled_from([f for f in (0, T, O, O | T) if f != right]))
    attrs = list(v.attrs)
    attrs[i] = replace(a, flags=wrong | (a.flags & wire.EXTENDED))
    outcome, rfc = MALFORMED[a.code]
    notification = (3, 9) if outcome == RESET else None
    extra = _taw(v) if outcome == TAW else {}
    return _case(
        v,
        "bad_flags",
        _with(v, attrs),
        outcome,
        f"RFC 7606 §3 c, {rfc}",
        notification=notification,
        detail=f"{NAMES[a.code]} flags 0x{wrong:02x}",
        **extra,
    )


def m_duplicate(draw: st.DrawFn, v: Valid, ctx: Context) -> Case:
    """A second copy of an attribute, whose value would hurt if it were used: discarded (RFC 7606 §3 g) -
    but a second MP_REACH/MP_UNREACH resets the session."""
    choices = [
        a
        for a in v.attrs
        if a.code
        in (
            wire.ORIGIN_CODE,
            wire.AS_PATH_CODE,
            wire.NEXT_HOP_CODE,
            wire.MP_REACH_CODE,
            wire.LOCAL_PREF_CODE,
            wire.COMMUNITY_CODE,
            wire.MED_CODE,
        )
    ]
    first = draw(st.sampled_from(choices))
    if first.code == wire.MP_REACH_CODE:
        second = draw(st.sampled_from(["reach", "unreach"]))
        if second == "reach":
            attrs, detail = [*list(v.attrs), first], "MP_REACH_NLRI twice"
        else:
            other = ctx.pool6 if v.family == 6 else ctx.pool4
            dup = Attr(
                O, wire.MP_UNREACH_CODE, mp_unreach_value(v.family, wire.nlri([str(ip_network(other))]))
            )
            # two MP attributes of different kinds are allowed; a second MP_UNREACH is the duplicate
            attrs, detail = [*list(v.attrs), dup, dup], "MP_UNREACH_NLRI twice"
        return _case(
            v, "duplicate", _with(v, attrs), RESET, "RFC 7606 §3 g", notification=(3, 1), detail=detail
        )
    poison = {
        wire.ORIGIN_CODE: bytes([draw(st.integers(3, 255))]),
        wire.AS_PATH_CODE: as_path_value([(wire.AS_SEQUENCE, [ctx.asn])]),
        wire.NEXT_HOP_CODE: IPv4Address("0.0.0.0").packed,
        wire.LOCAL_PREF_CODE: b"\0\0\1",
        wire.COMMUNITY_CODE: b"\0\0\1",
        wire.MED_CODE: b"\0",
    }[first.code]
    attrs = list(v.attrs)
    attrs.insert(draw(st.integers(attrs.index(first) + 1, len(attrs))), replace(first, value=poison))
    return _case(
        v,
        "duplicate",
        _with(v, attrs),
        ACCEPTED,
        "RFC 7606 §3 g",
        detail=f"{NAMES[first.code]} twice, the second malformed/harmful",
    )


def _unused_code(draw: st.DrawFn, v: Valid) -> int:
    """An unassigned type code the UPDATE does not carry yet (a second one would be a duplicate)."""
    return draw(st.sampled_from([c for c in UNKNOWN_CODES if v.index(c) is None]))


def m_unknown_well_known(draw: st.DrawFn, v: Valid, ctx: Context) -> Case:
    code = _unused_code(draw, v)
    attrs = list(v.attrs)
    attrs.insert(
        draw(st.integers(0, len(attrs))),
        Attr(draw(st.sampled_from([0, T])), code, draw(st.binary(max_size=8))),
    )
    return _case(
        v,
        "unknown_well_known",
        _with(v, attrs),
        TAW,
        "RFC 4271 §6.3",
        rfc_outcome=RESET,
        notification=(3, 2),
        deviation="RFC 4271 §6.3 asks NOTIFICATION 3/2 (RFC 7606 does not revise it); bgpd treats the UPDATE "
        "as withdraw instead (bgpd.exabgp.rfc7606 for the attributes ExaBGP would ignore, the codec for the "
        "ones it passes on): nothing is installed and the session stays, as RFC 7606 §2 prefers",
        detail=f"type {code}",
        **_taw(v),
    )


def m_missing(draw: st.DrawFn, v: Valid, ctx: Context) -> Case:
    codes = [wire.ORIGIN_CODE, wire.AS_PATH_CODE] + ([] if v.mp else [wire.NEXT_HOP_CODE])
    if v.index(wire.LOCAL_PREF_CODE) is not None:
        codes.append(wire.LOCAL_PREF_CODE)
    code = draw(st.sampled_from(codes))
    body = _with(v, v.without(code))
    if code == wire.LOCAL_PREF_CODE:  # well-known discretionary (RFC 4271 §5.1.5): not an error
        return _case(v, "missing", body, ACCEPTED, "RFC 4271 §5.1.5, RFC 7606 §3 d", detail="no LOCAL_PREF")
    return _case(v, "missing", body, TAW, "RFC 7606 §3 d", detail=f"no {NAMES[code]}", **_taw(v))


def m_bad_origin(draw: st.DrawFn, v: Valid, ctx: Context) -> Case:
    value = draw(st.integers(3, 255))
    attrs = [replace(a, value=bytes([value])) if a.code == wire.ORIGIN_CODE else a for a in v.attrs]
    return _case(v, "bad_origin", _with(v, attrs), TAW, "RFC 7606 §7.1", detail=f"ORIGIN {value}", **_taw(v))


BAD_HOPS4 = (
    "0.0.0.0",
    "0.1.2.3",
    "127.0.0.1",
    "224.0.0.5",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
)
BAD_HOPS6 = ("::", "::1", "ff02::5", "fe80::1", "::ffff:192.168.100.10")


def m_next_hop(draw: st.DrawFn, v: Valid, ctx: Context) -> Case:
    """A next hop the route cannot use: ignored, no NOTIFICATION (RFC 4271 §6.3), so the earlier path goes."""
    own = ctx.own6 if v.family == 6 else ctx.own4
    hop = draw(st.sampled_from((*(BAD_HOPS6 if v.family == 6 else BAD_HOPS4), own)))
    # the host's own addresses, loopback included, come first (bgpd's import policy: own_next_hop)
    counter = "own_next_hop" if hop in (own, "127.0.0.1", "::1") else "invalid_next_hop"
    if hop.startswith("::ffff:"):
        counter = "malformed"  # the codec: an IPv4 next hop, IPv4-mapped, for an IPv6 route
    if v.mp:
        i = v.index(wire.MP_REACH_CODE)
        assert i is not None
        value = mp_reach_value(v.family, ip_address(hop).packed, wire.nlri(v.prefixes))
        attrs = list(v.attrs)
        attrs[i] = replace(v.attrs[i], value=value)
    else:
        attrs = [
            replace(a, value=IPv4Address(hop).packed) if a.code == wire.NEXT_HOP_CODE else a for a in v.attrs
        ]
    return _case(
        v, "next_hop", _with(v, attrs), TAW, "RFC 4271 §6.3", counter=counter, detail=f"next hop {hop}"
    )


def m_as_path_loop(draw: st.DrawFn, v: Valid, ctx: Context) -> Case:
    before = draw(st.lists(_asns(ctx), max_size=3))
    after = draw(st.lists(_asns(ctx), max_size=3))
    kind = draw(st.sampled_from([wire.AS_SEQUENCE, wire.AS_SET]))
    value = as_path_value([(kind, [*before, ctx.asn, *after])])
    attrs = [replace(a, value=value) if a.code == wire.AS_PATH_CODE else a for a in v.attrs]
    return _case(
        v,
        "as_path_loop",
        _with(v, attrs),
        TAW,
        "RFC 4271 §9.1.2",
        counter="as_loop",
        detail=f"own AS in an AS_{'SET' if kind == 1 else 'SEQUENCE'}",
    )


def m_as_path_long(draw: st.DrawFn, v: Valid, ctx: Context) -> Case:
    n = draw(st.integers(256, 800))
    asns = [64600 + (i % 300) for i in range(n)]
    value = wire.as_path_value(*((wire.AS_SEQUENCE, asns[i : i + 255]) for i in range(0, n, 255)))
    attrs = [replace(a, value=value) if a.code == wire.AS_PATH_CODE else a for a in v.attrs]
    return _case(v, "as_path_long", _with(v, attrs), ACCEPTED, "RFC 4271 §4.3", detail=f"{n} AS numbers")


def m_as_path_malformed(draw: st.DrawFn, v: Valid, ctx: Context) -> Case:
    form = draw(st.sampled_from(["zero_segment", "bad_type", "overrun", "one_octet_left", "as_zero"]))
    asns = draw(st.lists(_asns(ctx), min_size=1, max_size=4))
    good = wire.as_path_value((wire.AS_SEQUENCE, asns))
    rfc = "RFC 7606 §7.2"
    if form == "zero_segment":
        value = good + struct.pack("!BB", wire.AS_SEQUENCE, 0)
    elif form == "bad_type":
        value = struct.pack("!BB", draw(st.sampled_from([0, 5, 6, 100, 255])), len(asns)) + good[2:]
    elif form == "overrun":
        value = struct.pack("!BB", wire.AS_SEQUENCE, len(asns) + draw(st.integers(1, 5))) + good[2:]
    elif form == "one_octet_left":
        value = good + b"\x02"
    else:
        value = wire.as_path_value((wire.AS_SEQUENCE, [*asns, 0]))
        rfc = "RFC 7607 §2"
    attrs = [replace(a, value=value) if a.code == wire.AS_PATH_CODE else a for a in v.attrs]
    return _case(v, "as_path_malformed", _with(v, attrs), TAW, rfc, detail=form, **_taw(v))


def m_mp_reach(draw: st.DrawFn, v: Valid, ctx: Context) -> Case:
    """A malformed MP_REACH_NLRI: the NLRI cannot be trusted, the session resets (RFC 7606 §7.11, §3 j)."""
    if not v.mp:
        v = draw(valid_updates(ctx, 6))
    i = v.index(wire.MP_REACH_CODE)
    assert i is not None
    hop = next_hop_field(v.family, [ctx.peer6 if v.family == 6 else ctx.peer4])
    nets = wire.nlri(v.prefixes)
    form = draw(
        st.sampled_from(["next_hop_length", "next_hop_past_end", "prefix_too_long", "nlri_overrun", "short"])
    )
    if form == "next_hop_length":
        sizes = (0, 4, 8, 12, 15, 17, 24, 31, 33) if v.family == 6 else (0, 3, 5, 8, 16)
        size = draw(st.sampled_from(sizes))
        value = mp_reach_value(v.family, _resize(hop, size, draw), nets)
    elif form == "next_hop_past_end":  # the length octet claims more than the attribute holds
        value = mp_reach_value(v.family, hop, b"")[:3] + bytes([len(hop) + draw(st.integers(1, 30))]) + hop
    elif form == "prefix_too_long":
        bits = 128 if v.family == 6 else 32
        value = mp_reach_value(v.family, hop, nets + bytes([draw(st.integers(bits + 1, 255))]) + b"\0" * 16)
    elif form == "nlri_overrun":
        value = mp_reach_value(v.family, hop, nets + bytes([draw(st.integers(17, bits_of(v.family)))]))
    else:
        value = mp_reach_value(v.family, hop, nets)[: draw(st.integers(0, 4))]
    attrs = list(v.attrs)
    attrs[i] = replace(attrs[i], value=value)
    return _case(
        v, "mp_reach", _with(v, attrs), RESET, "RFC 7606 §7.11, §3 j", notification=(3, 9), detail=form
    )


def bits_of(family: int) -> int:
    return 128 if family == 6 else 32


def m_mp_unreach(draw: st.DrawFn, v: Valid, ctx: Context) -> Case:
    """A malformed MP_UNREACH_NLRI withdrawing the case's prefixes: the session resets (RFC 7606 §3 j)."""
    if not v.mp:
        v = draw(valid_updates(ctx, 6))
    nets = wire.nlri(v.prefixes)
    form = draw(st.sampled_from(["prefix_too_long", "nlri_overrun", "short"]))
    if form == "prefix_too_long":
        value = mp_unreach_value(
            v.family, nets + bytes([draw(st.integers(bits_of(v.family) + 1, 255))]) + b"\0" * 16
        )
    elif form == "nlri_overrun":
        value = mp_unreach_value(v.family, nets + bytes([draw(st.integers(17, bits_of(v.family)))]))
    else:
        value = mp_unreach_value(v.family, nets)[: draw(st.integers(0, 2))]
    body = wire.update_body(b"", Attr(O, wire.MP_UNREACH_CODE, value).pack(), b"")
    return _case(v, "mp_unreach", body, RESET, "RFC 7606 §3 j, §5.3", notification=(3, 9), detail=form)


def m_nlri(draw: st.DrawFn, v: Valid, ctx: Context) -> Case:
    """The NLRI or Withdrawn Routes field does not parse (RFC 7606 §5.3: session reset)."""
    if v.mp:
        v = draw(valid_updates(ctx, 4).filter(lambda u: not u.mp))
    attributes = b"".join(a.pack() for a in v.attrs)
    nets = wire.nlri(v.prefixes)
    form = draw(
        st.sampled_from(["prefix_too_long", "nlri_overrun", "withdrawn_too_long", "withdrawn_overrun"])
    )
    bad = (
        bytes([draw(st.integers(33, 255))]) + b"\0" * 4
        if "too_long" in form
        else bytes([draw(st.integers(9, 32))])
    )
    if form.startswith("nlri"):
        body = wire.update_body(b"", attributes, nets + bad)
    else:
        body = wire.update_body(bad, attributes, nets)
    return _case(v, "nlri", body, RESET, "RFC 7606 §5.3", notification=(3, 10), detail=form)


def m_field_length(draw: st.DrawFn, v: Valid, ctx: Context) -> Case:
    """Withdrawn Routes Length or Total Path Attribute Length past the end (RFC 4271 §6.3: 3/1)."""
    body = v.body()
    form = draw(st.sampled_from(["withdrawn_length", "attribute_length"]))
    if form == "withdrawn_length":
        bad = struct.pack("!H", len(body) - 2 + draw(st.integers(1, 100)))
        out = bad + body[2:]
    else:
        total = struct.unpack("!H", body[2:4])[0]
        rest = len(body) - 4
        out = (
            body[:2]
            + struct.pack("!H", min(65535, rest + draw(st.integers(1, 100)) if total <= rest else total + 1))
            + body[4:]
        )
    return _case(
        v, "field_length", out, RESET, "RFC 4271 §6.3, RFC 7606 §4", notification=(3, 1), detail=form
    )


def m_truncated(draw: st.DrawFn, v: Valid, ctx: Context) -> Case:
    """The UPDATE cut short (the header's length matching what is sent) inside a field, never at an NLRI
    boundary (which would be a valid, shorter UPDATE)."""
    body = v.body()
    total = struct.unpack("!H", body[2:4])[0]
    inside_attrs = list(range(4, 4 + total))  # some of the attributes, not all
    cuts = list(range(0, 4)) + inside_attrs
    if not v.mp:  # inside an NLRI prefix
        pos = 4 + total
        for p in v.prefixes:
            size = 1 + (ip_network(p).prefixlen + 7) // 8
            cuts += range(pos + 1, pos + size) if size > 1 else []
            pos += size
    cut = draw(st.sampled_from(cuts))
    notification = (1, 2) if cut < 4 else (3, 1) if cut < 4 + total else (3, 10)
    return _case(
        v,
        "truncated",
        body[:cut],
        RESET,
        "RFC 4271 §6.1, §6.3, RFC 7606 §4, §5.3",
        notification=notification,
        detail=f"{cut} of {len(body)} octets",
    )


def m_max_size(draw: st.DrawFn, v: Valid, ctx: Context) -> Case:
    """Padded with an unknown optional transitive attribute to exactly 4096 octets (valid), or beyond
    (RFC 4271 §6.1: Bad Message Length)."""
    over = draw(st.sampled_from([0, 0, 1, 2, 100]))
    base = len(v.body()) + wire.HEADER + 4  # + the padding attribute's header (extended length)
    pad = Attr(O | T, _unused_code(draw, v), b"\0" * (wire.MAX_MESSAGE - base + over), extended=True)
    attrs = list(v.attrs)
    attrs.insert(draw(st.integers(0, len(attrs))), pad)
    body = _with(v, attrs)
    assert len(body) + wire.HEADER == wire.MAX_MESSAGE + over
    if over:
        return _case(
            v,
            "max_size",
            body,
            RESET,
            "RFC 4271 §4.1, §6.1",
            notification=(1, 2),
            detail=f"{wire.MAX_MESSAGE + over} octets",
        )
    return _case(v, "max_size", body, ACCEPTED, "RFC 4271 §4.1", detail="4096 octets")


def m_header(draw: st.DrawFn, v: Valid, ctx: Context) -> Case:
    """A broken message header (RFC 4271 §6.1): marker, length below the minimum, or unknown type."""
    msg = wire.message(wire.UPDATE, v.body())
    form = draw(st.sampled_from(["marker", "length", "type"]))
    if form == "marker":
        at = draw(st.integers(0, 15))
        out = msg[:at] + bytes([draw(st.integers(0, 254))]) + msg[at + 1 :]
        note = (1, 1)
    elif form == "length":
        short = draw(st.integers(0, 3))  # UPDATE's minimum is 23 (RFC 4271 §4.3)
        out = (
            msg[:16]
            + struct.pack("!HB", wire.HEADER + short, wire.UPDATE)
            + msg[wire.HEADER : wire.HEADER + short]
        )
        note = (1, 2)
    else:
        out = msg[:18] + bytes([draw(st.integers(6, 255))]) + msg[wire.HEADER :]
        note = (1, 3)
    return _case(v, "header", out, RESET, "RFC 4271 §6.1", notification=note, detail=form, raw=True)


def m_trailing_bits(draw: st.DrawFn, v: Valid, ctx: Context) -> Case:
    """NLRI whose last octet has bits set past the prefix length: irrelevant (RFC 4271 §4.3, RFC 4760 §5)."""
    candidates = [p for p in v.prefixes if ip_network(p).prefixlen % 8]
    if not candidates:
        return m_valid(draw, v, ctx)
    out = b""
    for p in v.prefixes:
        net = ip_network(p)
        packed = bytearray(net.network_address.packed[: (net.prefixlen + 7) // 8])
        if net.prefixlen % 8:
            packed[-1] |= draw(st.integers(1, (1 << (8 - net.prefixlen % 8)) - 1))
        out += bytes([net.prefixlen]) + bytes(packed)
    if v.mp:
        i = v.index(wire.MP_REACH_CODE)
        assert i is not None
        old = v.attrs[i].value
        attrs = list(v.attrs)
        attrs[i] = replace(
            attrs[i], value=old[: 4 + old[3] + 1] + out
        )  # AFI, SAFI, hop length, hop, reserved
        body = _with(v, attrs)
    else:
        body = wire.update_body(b"", b"".join(a.pack() for a in v.attrs), out)
    return _case(v, "trailing_bits", body, ACCEPTED, "RFC 4271 §4.3, RFC 4760 §5")


def m_mp_reserved(draw: st.DrawFn, v: Valid, ctx: Context) -> Case:
    """MP_REACH_NLRI's Reserved octet non-zero: to be ignored (RFC 4760 §3)."""
    if not v.mp:
        v = draw(valid_updates(ctx, 6))
    i = v.index(wire.MP_REACH_CODE)
    assert i is not None
    old = v.attrs[i].value
    at = 4 + old[3]
    attrs = list(v.attrs)
    attrs[i] = replace(attrs[i], value=old[:at] + bytes([draw(st.integers(1, 255))]) + old[at + 1 :])
    return _case(v, "mp_reserved", _with(v, attrs), ACCEPTED, "RFC 4760 §3")


Mutation = Callable[[st.DrawFn, Valid, Context], Case]
KINDS: dict[str, Mutation] = {
    "valid": m_valid,
    "attr_length": m_attr_length,
    "attr_overrun": m_attr_overrun,
    "attr_underrun": m_attr_underrun,
    "bad_flags": m_bad_flags,
    "duplicate": m_duplicate,
    "unknown_well_known": m_unknown_well_known,
    "missing": m_missing,
    "bad_origin": m_bad_origin,
    "next_hop": m_next_hop,
    "as_path_loop": m_as_path_loop,
    "as_path_long": m_as_path_long,
    "as_path_malformed": m_as_path_malformed,
    "mp_reach": m_mp_reach,
    "mp_unreach": m_mp_unreach,
    "nlri": m_nlri,
    "field_length": m_field_length,
    "truncated": m_truncated,
    "max_size": m_max_size,
    "header": m_header,
    "trailing_bits": m_trailing_bits,
    "mp_reserved": m_mp_reserved,
}


@st.composite
def cases(draw: st.DrawFn, ctx: Context = Context(), kinds: tuple[str, ...] = tuple(KINDS)) -> Case:
    """One case: a valid UPDATE, then one mutation of `kinds` applied to it."""
    kind = draw(st.sampled_from(kinds))
    v = draw(valid_updates(ctx))
    return KINDS[kind](draw, v, ctx)


def generate(
    n: int, seed: int = 0, ctx: Context = Context(), kinds: tuple[str, ...] = tuple(KINDS)
) -> list[Case]:
    """`n` cases drawn with hypothesis, reproducibly from `seed` (the same list for the same arguments):
    as many of each kind (one hypothesis run per kind), interleaved."""
    per_kind = [_draw(-(-n // len(kinds)), seed + i, ctx, (kind,)) for i, kind in enumerate(kinds)]
    out = [case for group in zip(*per_kind, strict=False) for case in group]
    return out[:n]


def _draw(n: int, seed: int, ctx: Context, kinds: tuple[str, ...]) -> list[Case]:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    out: list[Case] = []
    for round_ in range(10):  # hypothesis may stop early on a small space: more seeds fill the list
        before = len(out)

        @hseed(seed * 1000 + round_)
        @settings(
            max_examples=n - len(out),
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(cases(ctx, kinds))
        def draw_one(case: Case) -> None:
            out.append(case)

        draw_one()
        if len(out) >= n or len(out) == before:
            break
    return out[:n]
