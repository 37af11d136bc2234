"""Translation between ExaBGP 5 API text (JSON events in, command lines out) and bgpd's own types.

Inbound: `decode(line)` turns one JSON line of ExaBGP's API (encoder json, API version 5.0.0) into a typed
event, or None for lines bgpd does not act on (acks, keepalives, unknown types). A route whose fields do not
parse is reported in `Update.malformed` instead of being dropped silently, so the caller can count it.

An UPDATE bgpd cannot fully use is handled as RFC 7606 §2 "treat-as-withdraw" (BIRD does the same): each
announced IPv4 unicast prefix whose attributes or next hop are unusable goes into `Update.withdrawn`, so an
earlier path from that peer is removed, and one reason per such prefix into `Update.malformed`, so it is
counted. Unusable: attributes that do not decode (ExaBGP shows ORIGIN 3..255 as "invalid"), a missing
ORIGIN (§3 d), an unrecognized well-known attribute ExaBGP passed through ("attribute-0xCODE-0xFLAGS" with
the Optional bit clear; RFC 4271 §6.3), ExaBGP's own treat-as-withdraw marker, and a next hop that is not an
IPv4 address (ExaBGP writes "no-nexthop" when NEXT_HOP is missing, "::" for a 16-octet one). ExaBGP 5.0.15
handles most malformed attributes itself: it sends the prefixes as withdrawn, with `"error":
"treat-as-withdraw..."` among the attributes; those withdrawals are counted as malformed too. A prefix that
does not parse cannot be withdrawn; it is only counted.

Outbound: `announce_lines` / `withdraw_lines` / `eor_line` build command text, batching prefixes that share
attributes into one `announce attributes ... nlri P1 P2 ...` command (several times cheaper in ExaBGP than
one `announce route` per prefix).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from bgpd import prefix
from bgpd.model import Attributes, Origin
from bgpd.prefix import Address

NLRI_PER_COMMAND = 500


@dataclass(frozen=True, slots=True)
class PeerState:
    """A session changed state: "connected" (TCP up), "up" (Established), "down"."""

    peer: IPv4Address
    peer_asn: int
    state: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PeerOpen:
    """The OPEN the peer sent (RFC 4271 §4.2): its BGP Identifier is the router id used in best path."""

    peer: IPv4Address
    peer_asn: int
    router_id: IPv4Address
    hold_time: int
    # RFC 4724 §3: the peer's Graceful Restart Capability for IPv4 unicast: its restart time in seconds
    # (None: not advertised for IPv4 unicast, or a time of 0) and whether it kept its forwarding state
    restart_time: int | None = None
    forwarding_kept: bool = False
    # its Restart State bit (RFC 4724 §3): it has just restarted and defers its own End-of-RIB
    restarting: bool = False


@dataclass(frozen=True, slots=True)
class Announced:
    """One received NLRI with its next hop and attributes (still unvalidated by policy)."""

    prefix: IPv4Network
    next_hop: IPv4Address
    attrs: Attributes


@dataclass(frozen=True, slots=True)
class Update:
    """One UPDATE message received from a peer (RFC 4271 §4.3)."""

    peer: IPv4Address
    peer_asn: int
    announced: tuple[Announced, ...] = ()
    withdrawn: tuple[IPv4Network, ...] = ()
    # human-readable reasons: one per NLRI treated as withdrawn or not parsed, one per unsupported family
    malformed: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class EndOfRib:
    """The peer finished sending its table for IPv4 unicast (RFC 4724 §2)."""

    peer: IPv4Address


@dataclass(frozen=True, slots=True)
class Notification:
    """A NOTIFICATION received from the peer (RFC 4271 §4.5)."""

    peer: IPv4Address
    code: int
    subcode: int
    data: str = ""


Event = PeerState | PeerOpen | Update | EndOfRib | Notification


class DecodeError(ValueError):
    """The line is JSON from ExaBGP but its shape is not what API 5.0.0 documents."""


_ORIGINS = {"igp": Origin.IGP, "egp": Origin.EGP, "incomplete": Origin.INCOMPLETE}
_IPV4_UNICAST = "ipv4 unicast"


def decode(line: str) -> Event | None:
    """Decode one line ExaBGP wrote to its helper. Non-JSON lines (acks such as "done") give None.
    Raises DecodeError, and only DecodeError, for JSON that is not a valid API 5.0.0 event."""
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
        return _decode_event(msg)
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(f"unexpected event shape: {type(exc).__name__}: {exc}") from exc


def _decode_event(msg: dict[str, Any]) -> Event | None:
    kind = msg.get("type")
    neighbor = msg.get("neighbor")
    if not isinstance(neighbor, dict):
        return None
    peer, peer_asn = _peer_of(neighbor)
    if kind == "state":
        return PeerState(peer, peer_asn, str(neighbor.get("state", "")), str(neighbor.get("reason", "")))
    if kind == "open":
        if neighbor.get("direction") != "receive":
            return None
        opened = neighbor["open"]  # ExaBGP 5 puts "open" directly in "neighbor", not under "message"
        restart_time, forwarding_kept = _graceful_restart(opened.get("capabilities"))
        return PeerOpen(
            peer,
            peer_asn,
            Address(opened["router_id"]),
            int(opened.get("hold_time", 0)),
            restart_time,
            forwarding_kept,
            _restart_state(opened.get("capabilities")),
        )
    if kind == "notification":
        note = neighbor.get("message", {}).get("notification", {})
        code, subcode = int(note.get("code", 0)), int(note.get("subcode", 0))
        return Notification(peer, code, subcode, str(note.get("data", "")))
    if kind != "update":
        return None
    message = neighbor.get("message", {})
    if not isinstance(message, dict):
        raise DecodeError("update without message")
    if "eor" in message:
        eor = message["eor"]
        if eor.get("afi") == "ipv4" and eor.get("safi") == "unicast":
            return EndOfRib(peer)
        return None
    update = message.get("update")
    if not isinstance(update, dict):
        return None
    return _decode_update(peer, peer_asn, update)


def _restart_state(capabilities: Any) -> bool:
    """The Restart State bit of the Graceful Restart Capability (RFC 4724 §3: 0x8 of the flags), which
    ExaBGP prints as {"restart-flags": ["forwarding"]} (its label; the bit is Restart State)."""
    if not isinstance(capabilities, dict):
        return False
    for capability in capabilities.values():
        if isinstance(capability, dict) and capability.get("name") == "graceful restart":
            return bool(capability.get("restart-flags"))
    return False


def _graceful_restart(capabilities: Any) -> tuple[int | None, bool]:
    """(restart time, forwarding state kept) for IPv4 unicast from ExaBGP's capabilities object, in which
    the Graceful Restart Capability (code 64) reads {"name": "graceful restart", "time": T,
    "address-family-flags": {"ipv4/unicast": [FLAGS]}}; a non-empty flag list is the family's Forwarding
    State bit (RFC 4724 §3: 0x80; ExaBGP labels it "restart")."""
    if not isinstance(capabilities, dict):
        return None, False
    for capability in capabilities.values():
        if not isinstance(capability, dict) or capability.get("name") != "graceful restart":
            continue
        families = capability.get("address-family-flags")
        if not isinstance(families, dict) or "ipv4/unicast" not in families:
            return None, False
        try:
            restart_time = int(capability.get("time", 0))
        except (TypeError, ValueError):
            return None, False
        return (restart_time or None), bool(families["ipv4/unicast"])
    return None, False


def _peer_of(neighbor: dict[str, Any]) -> tuple[IPv4Address, int]:
    try:
        peer = Address(neighbor["address"]["peer"])
        asn = int(neighbor.get("asn", {}).get("peer", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"event without a valid IPv4 peer address: {exc}") from exc
    return peer, asn


def _decode_update(peer: IPv4Address, peer_asn: int, update: dict[str, Any]) -> Update:
    malformed: list[str] = []
    withdrawn: list[IPv4Network] = []
    raw_attrs = update.get("attribute") or {}
    exabgp_error = _treat_as_withdraw(raw_attrs)
    for family, routes in (update.get("withdraw") or {}).items():
        if family != _IPV4_UNICAST:
            malformed.append(f"withdraw of unsupported family {family}")
            continue
        for route in routes:
            prefix = _prefix(route, malformed)
            if prefix is not None:
                withdrawn.append(prefix)
                if exabgp_error is not None:  # ExaBGP already turned the announcement into this withdrawal
                    malformed.append(f"{prefix} treated as withdrawn: {exabgp_error}")
    announced: list[Announced] = []
    announce = update.get("announce") or {}
    if announce:
        attrs, unusable = _usable_attributes(raw_attrs)
        for family, by_next_hop in announce.items():
            if family != _IPV4_UNICAST:
                malformed.append(f"announce of unsupported family {family}")
                continue
            for next_hop_text, routes in by_next_hop.items():
                reason = unusable
                next_hop: IPv4Address | None = None
                if reason is None:
                    try:
                        next_hop = Address(next_hop_text)
                    except ValueError:
                        reason = f"invalid next hop {next_hop_text!r}"
                for route in routes:
                    prefix = _prefix(route, malformed)
                    if prefix is None:
                        continue
                    if attrs is not None and next_hop is not None:
                        announced.append(Announced(prefix, next_hop, attrs))
                    else:  # RFC 7606 §2: treat-as-withdraw, so that an earlier path from this peer goes
                        withdrawn.append(prefix)
                        malformed.append(f"{prefix} treated as withdrawn: {reason}")
    return Update(peer, peer_asn, tuple(announced), tuple(dict.fromkeys(withdrawn)), tuple(malformed))


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
        return decode_attributes(raw), None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return None, f"bad attributes: {type(exc).__name__}: {exc}"


def _prefix(route: Any, malformed: list[str]) -> IPv4Network | None:
    text = route.get("nlri") if isinstance(route, dict) else route
    try:
        return prefix.parse(str(text))
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
    path = raw.get("as-path") or {}
    if isinstance(path, dict):
        for _, segment in sorted(path.items(), key=lambda item: int(item[0])):
            values = [int(v) for v in segment.get("value", [])]
            if segment.get("element") in ("as-set", "confed-set"):
                # RFC 4271 §9.1.2.2 a: an AS_SET counts as one AS whatever its size.
                as_path.append(values[0] if values else 0)
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
    )


def _attribute_text(next_hop: IPv4Address, attrs: Attributes) -> str:
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


def _target(neighbors: Sequence[IPv4Address] | None) -> str:
    if not neighbors:
        return ""
    # ExaBGP splits targets on a comma standing alone between spaces
    return " , ".join(f"neighbor {n}" for n in neighbors) + " "


def _chunks(prefixes: Sequence[IPv4Network], size: int) -> Iterable[Sequence[IPv4Network]]:
    for start in range(0, len(prefixes), size):
        yield prefixes[start : start + size]


def announce_lines(
    prefixes: Sequence[IPv4Network],
    next_hop: IPv4Address,
    attrs: Attributes,
    neighbors: Sequence[IPv4Address] | None = None,
    per_command: int = NLRI_PER_COMMAND,
) -> list[str]:
    """Commands announcing `prefixes` with one set of attributes, to `neighbors` (None = every neighbor)."""
    head = f"{_target(neighbors)}announce attributes {_attribute_text(next_hop, attrs)} nlri "
    return [head + " ".join(map(str, chunk)) for chunk in _chunks(prefixes, per_command)]


def withdraw_lines(
    prefixes: Sequence[IPv4Network],
    next_hop: IPv4Address,
    neighbors: Sequence[IPv4Address] | None = None,
    per_command: int = NLRI_PER_COMMAND,
) -> list[str]:
    """Commands withdrawing `prefixes` from `neighbors` (None = every neighbor).

    A withdrawal carries no next hop in BGP (RFC 4271 §4.3) and ExaBGP matches it by prefix alone; an
    explicit one (rather than `self`) spares ExaBGP a deep copy of every route for every neighbor."""
    head = f"{_target(neighbors)}withdraw attributes next-hop {next_hop} nlri "
    return [head + " ".join(map(str, chunk)) for chunk in _chunks(prefixes, per_command)]


def eor_line(neighbor: IPv4Address | None = None) -> str:
    """End-of-RIB marker for IPv4 unicast (RFC 4724 §2), sent once our table has been handed over."""
    target = _target([neighbor] if neighbor else None)
    return f"{target}announce eor ipv4 unicast"


def route_refresh_line(neighbor: IPv4Address) -> str:
    """Ask the peer to send its whole table again (ROUTE-REFRESH, RFC 2918 §3): after an import policy
    change, routes rejected before may now be accepted."""
    return f"{_target([neighbor])}announce route-refresh ipv4 unicast"
