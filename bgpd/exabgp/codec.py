"""Translation between ExaBGP 5 API text (JSON events in, command lines out) and bgpd's own types.

Inbound: `decode(line)` turns one JSON line of ExaBGP's API (encoder json, API version 5.0.0) into a typed
event, or None for lines bgpd does not act on (acks, keepalives, unknown types). A route whose fields do not
parse is reported in `Update.malformed` instead of being dropped silently, so the caller can count it.

An UPDATE bgpd cannot fully use is handled as RFC 7606 §2 "treat-as-withdraw" (BIRD does the same): each
announced prefix whose attributes or next hop are unusable goes into `Update.withdrawn`, so an earlier path
from that peer is removed, and one reason per such prefix into `Update.malformed`, so it is counted.
Unusable: attributes that do not decode (ExaBGP shows ORIGIN 3..255 as "invalid"), a missing ORIGIN (§3 d),
an unrecognized well-known attribute ExaBGP passed through ("attribute-0xCODE-0xFLAGS" with the Optional bit
clear; RFC 4271 §6.3), ExaBGP's own treat-as-withdraw marker, and a next hop that is not an address of the
route's family (ExaBGP writes "no-nexthop" when NEXT_HOP is missing, "::" for a 16-octet one on an IPv4
route). ExaBGP 5.0.15 handles most malformed attributes itself: it sends the prefixes as withdrawn, with
`"error": "treat-as-withdraw..."` among the attributes; those withdrawals are counted as malformed too. A
prefix that does not parse cannot be withdrawn; it is only counted.

Families. By default only IPv4 unicast is decoded, exactly as before dual stack (issue 11): an IPv6 unicast
UPDATE is reported in `malformed` as an unsupported family, an IPv6 End-of-RIB gives None and an event from a
peer with an IPv6 address raises DecodeError. `decode(line, families=DUAL_STACK)` also decodes IPv6 unicast
(`Prefix6` prefixes, `Address6` next hops and peers), as BIRD 2 does:
- a 32-octet next hop (RFC 2545 §3: global, then link-local), which ExaBGP prints as two next hops each
  carrying the same NLRI, is one path: its next hop is the global address, the link-local one rides along in
  `Announced.link_local` (kept only if it is link-local, as BIRD's bgp_decode_next_hop_ip keeps it);
- an IPv6 route with an IPv4 next hop, written as such or IPv4-mapped (::ffff:a.b.c.d, RFC 4291 §2.5.5.2),
  is treated as withdrawn (BIRD: BAD_NEXT_HOP without the extended next hop capability, which bgpd does not
  negotiate); any other IPv6 next hop, be it unspecified, link-local or multicast, is passed on for the
  import policy to reject, as 0.0.0.0 and multicast ones are for IPv4.
Types follow the switch: the event classes are generic in the prefix and address types, with IPv4 as the
default, so `decode(line)` gives `Event` (IPv4 only, as bgpd's speaker reads it today) and `decode(line,
families)` gives `AnyEvent` (either family).

Outbound: `announce_lines` / `withdraw_lines` / `eor_line` build command text, batching prefixes that share
attributes into one `announce attributes ... nlri P1 P2 ...` command (several times cheaper in ExaBGP than
one `announce route` per prefix). The family is the prefixes'; the next hop must be of the same family
(ValueError otherwise: an IPv6 route with an IPv4 next hop makes the peer reset the session, and ExaBGP,
which keeps the route, sends it again on every new session).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Generic, Literal, overload

from bgpd import prefix
from bgpd.model import Attributes, Origin
from bgpd.prefix import Address, Address6

NLRI_PER_COMMAND = 500

Family = Literal[4, 6]  # the address family (IPv4 or IPv6 unicast), as bgpd.prefix.family gives it
IPV4_ONLY: frozenset[Family] = frozenset({4})
DUAL_STACK: frozenset[Family] = frozenset({4, 6})
AnyPrefix = IPv4Network | IPv6Network
AnyAddress = IPv4Address | IPv6Address

# The event classes are generic in the prefix (P) and address (A) types, IPv4 by default (module docstring).
# Python 3.11's TypeVar has no default: the checker reads typing_extensions' (PEP 696), the runtime the plain.
# Build events with the bare class and annotate (`u: Update[AnyPrefix, AnyAddress] = Update(...)`): on 3.11
# calling a subscripted frozen slots dataclass (`Update[...](...)`) raises TypeError.
if TYPE_CHECKING:
    from typing_extensions import TypeVar

    P = TypeVar("P", bound=AnyPrefix, default=IPv4Network, covariant=True)
    A = TypeVar("A", bound=AnyAddress, default=IPv4Address, covariant=True)
else:
    from typing import TypeVar

    P = TypeVar("P", covariant=True)
    A = TypeVar("A", covariant=True)


@dataclass(frozen=True, slots=True)
class PeerState(Generic[A]):
    """A session changed state: "connected" (TCP up), "up" (Established), "down"."""

    peer: A
    peer_asn: int
    state: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PeerOpen(Generic[A]):
    """The OPEN the peer sent (RFC 4271 §4.2): its BGP Identifier is the router id used in best path."""

    peer: A
    peer_asn: int
    router_id: IPv4Address
    hold_time: int
    # RFC 4724 §3: the peer's Graceful Restart Capability for IPv4 unicast: its restart time in seconds
    # (None: not advertised for IPv4 unicast, or a time of 0) and whether it kept its forwarding state
    restart_time: int | None = None
    forwarding_kept: bool = False
    # its Restart State bit (RFC 4724 §3): it has just restarted and defers its own End-of-RIB
    restarting: bool = False
    # the same as restart_time / forwarding_kept, for IPv6 unicast (decoded only if IPv6 unicast is)
    restart_time6: int | None = None
    forwarding_kept6: bool = False
    # the Graceful Restart Capability at all, with or without families: a speaker that advertises it
    # promises End-of-RIB markers even when it keeps no forwarding state (RFC 4724 §3, "graceful restart
    # aware", BIRD's default)
    graceful_capability: bool = False

    def graceful_restart(self, family: Family) -> tuple[int | None, bool]:
        """(restart time, forwarding state kept) of the Graceful Restart Capability for `family`."""
        if family == 4:
            return self.restart_time, self.forwarding_kept
        return self.restart_time6, self.forwarding_kept6


@dataclass(frozen=True, slots=True)
class Announced(Generic[P, A]):
    """One received NLRI with its next hop and attributes (still unvalidated by policy)."""

    prefix: P
    next_hop: A
    attrs: Attributes
    # IPv6 only: the link-local address of a 32-octet next hop (RFC 2545 §3), beside the global `next_hop`
    link_local: IPv6Address | None = None


@dataclass(frozen=True, slots=True)
class Update(Generic[P, A]):
    """One UPDATE message received from a peer (RFC 4271 §4.3)."""

    peer: A
    peer_asn: int
    announced: tuple[Announced[P, A], ...] = ()
    withdrawn: tuple[P, ...] = ()
    # human-readable reasons: one per NLRI treated as withdrawn or not parsed, one per unsupported family
    malformed: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class EndOfRib(Generic[A]):
    """The peer finished sending its table for `family` unicast (RFC 4724 §2)."""

    peer: A
    family: Family = 4


@dataclass(frozen=True, slots=True)
class Notification(Generic[A]):
    """A NOTIFICATION received from the peer (RFC 4271 §4.5)."""

    peer: A
    code: int
    subcode: int
    data: str = ""


# What `decode(line)` gives (IPv4 only), and what `decode(line, families)` gives (either family)
Event = PeerState | PeerOpen | Update | EndOfRib | Notification
AnyEvent = (
    PeerState[AnyAddress]
    | PeerOpen[AnyAddress]
    | Update[AnyPrefix, AnyAddress]
    | EndOfRib[AnyAddress]
    | Notification[AnyAddress]
)


class DecodeError(ValueError):
    """The line is JSON from ExaBGP but its shape is not what API 5.0.0 documents."""


_ORIGINS = {"igp": Origin.IGP, "egp": Origin.EGP, "incomplete": Origin.INCOMPLETE}
# ExaBGP's family names: in UPDATEs ("announce"/"withdraw" keys), commands, End-of-RIB and capabilities
_FAMILY_NAMES: dict[Family, str] = {4: "ipv4 unicast", 6: "ipv6 unicast"}
_FAMILY_OF_NAME: dict[str, Family] = {name: family for family, name in _FAMILY_NAMES.items()}
_AFI_NAMES: dict[Family, str] = {4: "ipv4", 6: "ipv6"}
_GR_KEYS: dict[Family, str] = {4: "ipv4/unicast", 6: "ipv6/unicast"}
_parse4, _parse6 = prefix.parse, prefix.parse6  # (module names: `prefix` is a local name below)
_PARSERS: dict[Family, Callable[[str], AnyPrefix]] = {4: _parse4, 6: _parse6}


@overload
def decode(line: str) -> Event | None: ...
@overload
def decode(line: str, families: Collection[Family]) -> AnyEvent | None: ...
def decode(line: str, families: Collection[Family] = IPV4_ONLY) -> AnyEvent | None:
    """Decode one line ExaBGP wrote to its helper. Non-JSON lines (acks such as "done") give None.
    Raises DecodeError, and only DecodeError, for JSON that is not a valid API 5.0.0 event.

    `families`: the unicast families to decode (4, 6); UPDATEs of others are reported as malformed, their
    End-of-RIB gives None; peers with an IPv6 address are accepted only if 6 is among them."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        msg = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON from ExaBGP: {exc}") from exc
    if not isinstance(msg, dict):
        raise DecodeError("ExaBGP event is not an object")
    try:
        return _decode_event(msg, families)
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(f"unexpected event shape: {type(exc).__name__}: {exc}") from exc


def _decode_event(msg: dict[str, Any], families: Collection[Family]) -> AnyEvent | None:
    kind = msg.get("type")
    neighbor = msg.get("neighbor")
    if not isinstance(neighbor, dict):
        return None
    peer, peer_asn = _peer_of(neighbor, 6 in families)
    if kind == "state":
        return PeerState(peer, peer_asn, str(neighbor.get("state", "")), str(neighbor.get("reason", "")))
    if kind == "open":
        if neighbor.get("direction") != "receive":
            return None
        opened = neighbor["open"]  # ExaBGP 5 puts "open" directly in "neighbor", not under "message"
        capabilities = opened.get("capabilities")
        restart_time, forwarding_kept = _graceful_restart(capabilities, 4)
        restart_time6, forwarding_kept6 = (
            _graceful_restart(capabilities, 6) if 6 in families else (None, False)
        )
        return PeerOpen(
            peer,
            peer_asn,
            Address(opened["router_id"]),
            int(opened.get("hold_time", 0)),
            restart_time,
            forwarding_kept,
            _restart_state(capabilities),
            restart_time6,
            forwarding_kept6,
            _has_graceful_capability(capabilities),
        )
    if kind == "notification":
        # ExaBGP 5.0.15 writes it under "neighbor" (seen in runs); older shapes put it under "message"
        note = neighbor.get("notification") or neighbor.get("message", {}).get("notification", {})
        code, subcode = int(note.get("code", 0)), int(note.get("subcode", 0))
        return Notification(peer, code, subcode, str(note.get("data", "")))
    if kind != "update":
        return None
    message = neighbor.get("message", {})
    if not isinstance(message, dict):
        raise DecodeError("update without message")
    if "eor" in message:
        eor = message["eor"]
        if eor.get("safi") == "unicast":
            for family in families:
                if eor.get("afi") == _AFI_NAMES[family]:
                    return EndOfRib(peer, family)
        return None
    update = message.get("update")
    if not isinstance(update, dict):
        return None
    return _decode_update(peer, peer_asn, update, families)


def _has_graceful_capability(capabilities: Any) -> bool:
    """Whether ExaBGP's capabilities object holds the Graceful Restart Capability (code 64) at all."""
    if not isinstance(capabilities, dict):
        return False
    return any(isinstance(c, dict) and c.get("name") == "graceful restart" for c in capabilities.values())


def _restart_state(capabilities: Any) -> bool:
    """The Restart State bit of the Graceful Restart Capability (RFC 4724 §3: 0x8 of the flags), which
    ExaBGP prints as {"restart-flags": ["forwarding"]} (its label; the bit is Restart State)."""
    if not isinstance(capabilities, dict):
        return False
    for capability in capabilities.values():
        if isinstance(capability, dict) and capability.get("name") == "graceful restart":
            return bool(capability.get("restart-flags"))
    return False


def _graceful_restart(capabilities: Any, family: Family) -> tuple[int | None, bool]:
    """(restart time, forwarding state kept) for `family` unicast from ExaBGP's capabilities object, in
    which the Graceful Restart Capability (code 64) reads {"name": "graceful restart", "time": T,
    "address-family-flags": {"ipv4/unicast": [FLAGS], "ipv6/unicast": [FLAGS]}}; a non-empty flag list is
    the family's Forwarding State bit (RFC 4724 §3: 0x80; ExaBGP labels it "restart")."""
    if not isinstance(capabilities, dict):
        return None, False
    key = _GR_KEYS[family]
    for capability in capabilities.values():
        if not isinstance(capability, dict) or capability.get("name") != "graceful restart":
            continue
        families = capability.get("address-family-flags")
        if not isinstance(families, dict) or key not in families:
            return None, False
        try:
            restart_time = int(capability.get("time", 0))
        except (TypeError, ValueError):
            return None, False
        return (restart_time or None), bool(families[key])
    return None, False


def _peer_of(neighbor: dict[str, Any], ipv6: bool) -> tuple[AnyAddress, int]:
    try:
        text = neighbor["address"]["peer"]
        peer: AnyAddress = _address6(text) if ipv6 and ":" in str(text) else _address4(str(text))
        asn = int(neighbor.get("asn", {}).get("peer", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"event without a valid {'' if ipv6 else 'IPv4 '}peer address: {exc}") from exc
    return peer, asn


# Peer and next-hop addresses, and attribute sets, are the same objects for every UPDATE that repeats them:
# a peer sending one route per UPDATE (ExaBGP does for IPv6) would otherwise cost ~450 bytes per route
# kept in the RIB (measured by the benchmark's memtrace). Bounded: cleared when full.
INTERNED_MAX = 4096


@lru_cache(maxsize=INTERNED_MAX)
def _address4(text: str) -> Address:
    return Address(text)


@lru_cache(maxsize=INTERNED_MAX)
def _address6_text(text: str) -> Address6:
    address = Address6(text)
    if address.scope_id is not None:
        raise ValueError(f"zone id in {text!r}")
    return address


def _address6(text: Any) -> Address6:
    """An IPv6 address as ExaBGP prints one; ValueError for anything else, a zone id included (none is
    ever on the wire)."""
    if not isinstance(text, str):
        raise ValueError(f"not an address: {text!r}")
    return _address6_text(text)


_attribute_sets: dict[Attributes, Attributes] = {}


def _interned(attrs: Attributes) -> Attributes:
    found = _attribute_sets.get(attrs)
    if found is None:
        if len(_attribute_sets) >= INTERNED_MAX:
            _attribute_sets.clear()
        found = _attribute_sets[attrs] = attrs
    return found


def _decode_update(
    peer: AnyAddress, peer_asn: int, update: dict[str, Any], families: Collection[Family]
) -> Update[AnyPrefix, AnyAddress]:
    malformed: list[str] = []
    withdrawn: list[AnyPrefix] = []
    raw_attrs = update.get("attribute") or {}
    exabgp_error = _treat_as_withdraw(raw_attrs)
    counted: set[AnyPrefix] = set()  # the prefixes ExaBGP treated as withdrawn, counted once each
    for name, routes in (update.get("withdraw") or {}).items():
        family = _FAMILY_OF_NAME.get(name)
        if family is None or family not in families:
            malformed.append(f"withdraw of unsupported family {name}")
            continue
        parse = _PARSERS[family]
        for route in routes:
            prefix = _prefix(route, malformed, parse)
            if prefix is not None:
                # ExaBGP already turned the announcement into this withdrawal: counted once per prefix
                # (a 32-octet IPv6 next hop lists it twice, once per address)
                if exabgp_error is not None and prefix not in counted:
                    counted.add(prefix)
                    malformed.append(f"{prefix} treated as withdrawn: {exabgp_error}")
                withdrawn.append(prefix)
    announced: list[Announced[AnyPrefix, AnyAddress]] = []
    announce = update.get("announce") or {}
    if announce:
        attrs, unusable = _usable_attributes(raw_attrs)
        for name, by_next_hop in announce.items():
            family = _FAMILY_OF_NAME.get(name)
            if family is None or family not in families:
                malformed.append(f"announce of unsupported family {name}")
                continue
            if family == 6:
                _announce6(by_next_hop, attrs, unusable, announced, withdrawn, malformed)
                continue
            for next_hop_text, routes in by_next_hop.items():
                reason = unusable
                next_hop: IPv4Address | None = None
                if reason is None:
                    try:
                        next_hop = _address4(next_hop_text)
                    except ValueError:
                        reason = f"invalid next hop {next_hop_text!r}"
                for route in routes:
                    prefix = _prefix(route, malformed, _parse4)
                    if prefix is None:
                        continue
                    if attrs is not None and next_hop is not None:
                        announced.append(Announced(prefix, next_hop, attrs))
                    else:  # RFC 7606 §2: treat-as-withdraw, so that an earlier path from this peer goes
                        withdrawn.append(prefix)
                        malformed.append(f"{prefix} treated as withdrawn: {reason}")
    return Update(peer, peer_asn, tuple(announced), tuple(dict.fromkeys(withdrawn)), tuple(malformed))


def _announce6(
    by_next_hop: dict[str, Any],
    attrs: Attributes | None,
    unusable: str | None,
    announced: list[Announced[AnyPrefix, AnyAddress]],
    withdrawn: list[AnyPrefix],
    malformed: list[str],
) -> None:
    """The IPv6 unicast part of an UPDATE's "announce" object, {NEXT_HOP: [{"nlri": P}, ...], ...}.

    There is one MP_REACH_NLRI per UPDATE (RFC 4760 §3), so one next hop field for all its NLRIs. ExaBGP
    prints a 32-octet one (RFC 2545 §3: global address, then link-local) as two next hops each carrying
    every NLRI, in that order; so the NLRIs are grouped: an NLRI under one next hop is a path via it, under
    two a path via the first with the second as its link-local address, never two paths."""
    hops_of: dict[str, list[str]] = {}  # NLRI text -> its next hop texts, in ExaBGP's (the wire's) order
    for next_hop_text, routes in by_next_hop.items():
        for route in routes:
            text = route.get("nlri") if isinstance(route, dict) else route
            hops_of.setdefault(text if isinstance(text, str) else repr(text), []).append(next_hop_text)
    next_hops: dict[str, tuple[IPv6Address | None, str | None]] = {}  # each next hop text parsed once
    link_locals: dict[str, IPv6Address | None] = {}
    for text, hops in hops_of.items():
        prefix = _prefix(text, malformed, _parse6)
        if prefix is None:
            continue
        reason = unusable
        next_hop: IPv6Address | None = None
        link_local = None
        if reason is None:
            if len(hops) > 2:
                reason = f"{len(hops)} next hops"  # not a next hop field ExaBGP can print
            else:
                found = next_hops.get(hops[0])
                if found is None:
                    found = next_hops[hops[0]] = _next_hop6(hops[0])
                next_hop, reason = found
                if len(hops) == 2:
                    if hops[1] not in link_locals:
                        link_locals[hops[1]] = _link_local(hops[1])
                    link_local = link_locals[hops[1]]
        if attrs is not None and reason is None and next_hop is not None:
            announced.append(Announced(prefix, next_hop, attrs, link_local))
        else:  # RFC 7606 §2: treat-as-withdraw, so that an earlier path from this peer goes
            withdrawn.append(prefix)
            malformed.append(f"{prefix} treated as withdrawn: {reason}")


def _next_hop6(text: str) -> tuple[IPv6Address | None, str | None]:
    """(the next hop, None) if `text` is one an IPv6 route can have, else (None, why not)."""
    try:
        address = _address6(text)
    except ValueError:
        try:
            Address(text)
        except ValueError:
            return None, f"invalid next hop {text!r}"
        return None, f"IPv4 next hop {text!r} for an IPv6 route"
    if address.ipv4_mapped is not None:
        return None, f"IPv4-mapped next hop {text!r} for an IPv6 route"
    return address, None


def _link_local(text: str) -> IPv6Address | None:
    """The second address of a 32-octet next hop if it is link-local (RFC 2545 §3), else None (BIRD 2
    drops it then too)."""
    try:
        address = _address6(text)
    except ValueError:
        return None
    return address if address.is_link_local else None


def _treat_as_withdraw(raw: Any) -> str | None:
    """ExaBGP's own RFC 7606 verdict: it adds `"error": "treat-as-withdraw[ due to ATTR]"` to the attributes
    of an UPDATE it treats as a withdrawal ("discard" marks an attribute it dropped: the route stays)."""
    error = raw.get("error") if isinstance(raw, dict) else None
    if isinstance(error, str) and error.startswith("treat-as-withdraw"):
        return f"exabgp: {error}"
    return None


def _usable_attributes(raw: Any) -> tuple[Attributes | None, str | None]:
    """(attributes, None), or (None, why bgpd cannot use them)."""
    if not isinstance(raw, dict):
        return None, "attributes are not an object"
    exabgp_error = _treat_as_withdraw(raw)
    if exabgp_error is not None:
        return None, exabgp_error
    if "origin" not in raw:
        return None, "missing ORIGIN attribute"  # RFC 7606 §3 d: well-known mandatory
    for key in raw:
        # ExaBGP shows an attribute it does not know as "attribute-0xCODE-0xFLAGS": a well-known one
        # (Optional bit clear) changes what the route means, and bgpd cannot know how (RFC 4271 §6.3)
        if key.startswith("attribute-0x"):
            code, _, flags = key[len("attribute-") :].partition("-")
            try:
                code_number, well_known = int(code, 16), not int(flags, 16) & 0x80
            except ValueError:
                return None, f"unreadable attribute {key!r}"
            if well_known:
                return None, f"unrecognized well-known attribute {code_number}"
    try:
        attrs = decode_attributes(raw)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return None, f"bad attributes: {type(exc).__name__}: {exc}"
    if 0 in attrs.as_path or _as_set_zero(raw):
        return None, "AS 0 in AS_PATH"  # RFC 7607 §2: malformed, treat-as-withdraw
    return _interned(attrs), None


def _as_set_zero(raw: dict[str, Any]) -> bool:
    """AS 0 in an AS_SET (which `decode_attributes` shortens to its first member)."""
    path = raw.get("as-path")
    if not isinstance(path, dict):
        return False
    return any(0 in (segment.get("value") or ()) for segment in path.values() if isinstance(segment, dict))


def _prefix(route: Any, malformed: list[str], parse: Callable[[str], AnyPrefix]) -> AnyPrefix | None:
    text = route.get("nlri") if isinstance(route, dict) else route
    try:
        return parse(str(text))
    except ValueError:
        pass
    try:
        # ExaBGP prints the octets as received: bits past the prefix length set ("10.0.0.5/24") are
        # irrelevant (RFC 4271 §4.3, RFC 4760 §5) and dropped, as BIRD does
        return parse(str(ip_network(str(text), strict=False)))
    except ValueError:
        malformed.append(f"invalid prefix {text!r}")
        return None


def decode_attributes(raw: dict[str, Any]) -> Attributes:
    """ExaBGP's `attribute` object -> Attributes. Raises ValueError/TypeError on a malformed value."""
    origin_text = str(raw.get("origin", "igp"))
    if origin_text not in _ORIGINS:
        raise ValueError(f"ORIGIN {origin_text!r}")  # ExaBGP shows a value other than 0, 1, 2 as "invalid"
    origin = _ORIGINS[origin_text]
    as_path: list[int] = []
    as_set: set[int] = set()
    path = raw.get("as-path") or {}
    if isinstance(path, dict):
        for _, segment in sorted(path.items(), key=lambda item: int(item[0])):
            values = [int(v) for v in segment.get("value", [])]
            if segment.get("element") in ("as-set", "confed-set"):
                # RFC 4271 §9.1.2.2 a: an AS_SET counts as one AS whatever its size; the other members
                # are kept for loop detection (§9.1.2: our AS anywhere in the AS_PATH is a loop)
                as_path.append(values[0] if values else 0)
                as_set.update(values[1:])
            else:
                as_path.extend(values)
    elif isinstance(path, list):
        as_path = [int(v) for v in path]
    local_pref = raw.get("local-preference")
    med = raw.get("med")
    originator = raw.get("originator-id")
    return Attributes(
        origin=origin,
        as_path=tuple(as_path),
        local_pref=None if local_pref is None else int(local_pref),
        med=None if med is None else int(med),
        communities=tuple(f"{int(a)}:{int(b)}" for a, b in raw.get("community") or []),
        large_communities=tuple(":".join(str(int(x)) for x in lc) for lc in raw.get("large-community") or []),
        originator_id=None if originator is None else Address(originator),
        cluster_list=tuple(Address(c) for c in raw.get("cluster-list") or []),
        as_set=frozenset(as_set),
    )


def _attribute_text(next_hop: AnyAddress, attrs: Attributes) -> str:
    parts = [f"next-hop {next_hop}", f"origin {attrs.origin.name.lower()}"]
    if attrs.as_path:
        parts.append("as-path [ " + " ".join(str(a) for a in attrs.as_path) + " ]")
    if attrs.local_pref is not None:
        parts.append(f"local-preference {attrs.local_pref}")
    if attrs.med is not None:
        parts.append(f"med {attrs.med}")
    if attrs.communities:
        parts.append("community [ " + " ".join(attrs.communities) + " ]")
    if attrs.large_communities:
        parts.append("large-community [ " + " ".join(attrs.large_communities) + " ]")
    if attrs.originator_id is not None:
        parts.append(f"originator-id {attrs.originator_id}")
    if attrs.cluster_list:
        parts.append("cluster-list [ " + " ".join(str(c) for c in attrs.cluster_list) + " ]")
    return " ".join(parts)


def _target(neighbors: Sequence[AnyAddress] | None) -> str:
    if not neighbors:
        return ""
    # ExaBGP splits targets on a comma standing alone between spaces
    return " , ".join(f"neighbor {n}" for n in neighbors) + " "


def _nlri_texts(prefixes: Sequence[AnyPrefix], next_hop: AnyAddress, per_command: int) -> list[str]:
    """The prefixes written out, `per_command` to a text. ValueError unless they are all of the next hop's
    family and an IPv6 next hop is not IPv4-mapped: ExaBGP sends an IPv6 route with an IPv4 next hop as a
    4-octet MP_REACH next hop, which the peer answers with NOTIFICATION 3/9, and as the route stays in
    ExaBGP's table every new session resets again."""
    if isinstance(next_hop, IPv6Address) and next_hop.ipv4_mapped is not None and prefixes:
        raise ValueError(f"next hop {next_hop} is an IPv4 address (IPv4-mapped): not for IPv6 routes")
    version = next_hop.version
    texts = []
    for start in range(0, len(prefixes), per_command):
        chunk = prefixes[start : start + per_command]
        text = " ".join(map(str, chunk))
        # an IPv6 prefix is always written with a colon and an IPv4 one never: one scan checks IPv4 ones
        if (":" in text) if version == 4 else set(map(_VERSION, chunk)) != {6}:
            wrong = next(p for p in chunk if p.version != version)
            raise ValueError(f"next hop {next_hop} cannot carry {wrong}: not of the same address family")
        texts.append(text)
    return texts


_VERSION = attrgetter("version")


def announce_lines(
    prefixes: Sequence[AnyPrefix],
    next_hop: AnyAddress,
    attrs: Attributes,
    neighbors: Sequence[AnyAddress] | None = None,
    per_command: int = NLRI_PER_COMMAND,
) -> list[str]:
    """Commands announcing `prefixes` with one set of attributes, to `neighbors` (None = every neighbor).
    The prefixes are of one family, the next hop's: ValueError otherwise (an IPv4 next hop for an IPv6
    prefix, written as such or IPv4-mapped, included)."""
    head = f"{_target(neighbors)}announce attributes {_attribute_text(next_hop, attrs)} nlri "
    return [head + text for text in _nlri_texts(prefixes, next_hop, per_command)]


def withdraw_lines(
    prefixes: Sequence[AnyPrefix],
    next_hop: AnyAddress,
    neighbors: Sequence[AnyAddress] | None = None,
    per_command: int = NLRI_PER_COMMAND,
) -> list[str]:
    """Commands withdrawing `prefixes` from `neighbors` (None = every neighbor).

    A withdrawal carries no next hop in BGP (RFC 4271 §4.3) and ExaBGP matches it by prefix alone; an
    explicit one (rather than `self`) spares ExaBGP a deep copy of every route for every neighbor. As in
    `announce_lines`, the prefixes are of the next hop's family (ValueError otherwise)."""
    head = f"{_target(neighbors)}withdraw attributes next-hop {next_hop} nlri "
    return [head + text for text in _nlri_texts(prefixes, next_hop, per_command)]


def teardown_line(peer: AnyAddress, subcode: int) -> str:
    """ExaBGP's command closing a session with NOTIFICATION Cease / `subcode` (ExaBGP 5.0.15 `neighbor X
    teardown N` raises Notify(6, N); launch change 12 makes it do so with graceful restart negotiated too)."""
    return f"neighbor {peer} teardown {subcode}"


# ExaBGP's reason for a session closed by a NOTIFICATION, e.g. "notification sent (6,1)" (5.0.15 `Peer._run`)
_NOTIFIED = re.compile(r"notification (sent|received) \((\d+),(\d+)\)")


def notified(reason: str) -> bool | tuple[str, int, int]:
    """From ExaBGP's reason for a session going down (`PeerState.reason`): ("sent"/"received", code,
    subcode) of the NOTIFICATION that closed it (RFC 4271 §4.5), False if none did."""
    found = _NOTIFIED.search(reason)
    if found is None:
        return False
    return found[1], int(found[2]), int(found[3])


def eor_line(neighbor: AnyAddress | None = None, family: Family = 4) -> str:
    """End-of-RIB marker for `family` unicast (RFC 4724 §2), sent once our table has been handed over."""
    target = _target([neighbor] if neighbor else None)
    return f"{target}announce eor {_FAMILY_NAMES[family]}"


def route_refresh_line(neighbor: AnyAddress, family: Family = 4) -> str:
    """Ask the peer to send its whole `family` unicast table again (ROUTE-REFRESH, RFC 2918 §3): after an
    import policy change, routes rejected before may now be accepted."""
    return f"{_target([neighbor])}announce route-refresh {_FAMILY_NAMES[family]}"
