"""RFC 7606 corrections to ExaBGP 5.0.15's UPDATE parser, found by the malformed-UPDATE fuzz campaign
(`bench/fuzz.py`, issue 14). `apply()` installs them (idempotent; AssertionError for another ExaBGP version),
`restore()` puts ExaBGP's own functions back (for the tests that compare both). Valid UPDATEs parse exactly
as before: only malformed ones change, each to the answer the RFC gives.

1. ORIGIN of a length other than 1: ExaBGP reads the first octet and keeps the route; RFC 7606 §7.1 makes
   it treat-as-withdraw. `Origin.unpack` now raises Notify(3, 5) for it, which ExaBGP's list of
   treat-as-withdraw attributes (ORIGIN is in it) turns into treat-as-withdraw.
2. ORIGINATOR_ID (§7.9) and CLUSTER_LIST (§7.10) of a wrong length reset the session (their decoders'
   Notify(3, 5) leaves the parser), and with Optional/Transitive flags in conflict (§3 c) they are dropped
   and the route kept. Both join `Attributes.TREAT_AS_WITHDRAW`: treat-as-withdraw in both cases.
3. An AS_PATH segment of length zero is accepted; RFC 7606 §7.2 calls the AS_PATH malformed
   (treat-as-withdraw). `ASPath.unpack` now raises Notify(3, 11) for it, as ExaBGP does for the other
   malformed segments.
4. An empty AS_PATH (an iBGP route's) is not stored at all (`ASPath.unpack` answers None), so
   - a second AS_PATH after it is taken as the path, where §3 g keeps the first occurrence of an
     attribute and discards the others;
   - an UPDATE without AS_PATH reads as one with an empty AS_PATH, where §3 d asks treat-as-withdraw for
     a missing well-known mandatory attribute (bgpd's codec sees the rest: ORIGIN in the JSON, NEXT_HOP
     as "no-nexthop").
   The parser now remembers the type codes it met on the wire: a later occurrence of one is skipped
   (MP_REACH_NLRI and MP_UNREACH_NLRI keep ExaBGP's own answer, a NOTIFICATION, §3 g), and an UPDATE with
   path attributes other than a lone MP_UNREACH_NLRI but without AS_PATH is treat-as-withdraw.
5. An attribute with the Optional bit clear whose type ExaBGP does not know (an unrecognized well-known
   attribute, RFC 4271 §6.3) is ignored if its Transitive bit is clear too, and the route installed
   without it. It is now treat-as-withdraw, as bgpd's codec treats the transitive ones ExaBGP passes on:
   RFC 4271 §6.3 asks NOTIFICATION 3/2 instead, a documented deviation (nothing is installed, the session
   stays).
6. A zero-length MP_REACH_NLRI or MP_UNREACH_NLRI falls under ExaBGP's rule for zero-length attributes,
   and one whose length runs past the path attributes under its rule for an overrun (RFC 7606 §4); both
   are treat-as-withdraw of the NLRI ExaBGP parsed, which leaves out the MP attribute's own: the routes
   it was to withdraw or replace stay, silently. Its NLRI cannot be located, so the session resets
   (RFC 7606 §3 j, §5.3; RFC 4760 §7: Notify(3, 9), as ExaBGP answers the other malformed MP attributes).
7. A zero-length AGGREGATOR falls under the same zero-length rule, treat-as-withdraw, where RFC 7606 §7.7
   discards an AGGREGATOR of any length but 6 or 8 (as ExaBGP already does for the other wrong lengths):
   it is now discarded and the route kept.
8. A message header error (RFC 4271 §6.1: a broken marker, a length out of bounds) is reported to the API
   processes before ExaBGP answers it, by a call to `Processes.notification` with one argument too many;
   with bgpd's `receive { notification; }` the TypeError ends the session without the NOTIFICATION §6.1
   requires (the peer sees the connection close). The call is now skipped for those two call sites (the
   event would have labelled an error ExaBGP found as a NOTIFICATION received from the peer), so ExaBGP
   goes on to send its NOTIFICATION (1/1, 1/2) and reports the session down as for any other it sends.
"""

from __future__ import annotations

import inspect
from typing import Any

EXPECTED_VERSION = "5.0.15"
OPTIONAL, EXTENDED = 0x80, 0x10
ORIGIN, AS_PATH, AGGREGATOR, ORIGINATOR_ID, CLUSTER_LIST, MP_REACH, MP_UNREACH = 1, 2, 7, 9, 10, 14, 15

_MP_NAMES = {MP_REACH: "MP_REACH_NLRI", MP_UNREACH: "MP_UNREACH_NLRI"}

_originals: dict[str, Any] = {}


def _check_version() -> None:
    from exabgp.bgp.message.update.attribute import ASPath, Attributes, Origin
    from exabgp.reactor.api.processes import Processes
    from exabgp.reactor.protocol import Protocol
    from exabgp.version import version

    assert version == EXPECTED_VERSION, f"unexpected ExaBGP version {version}"
    assert "return cls(data[0], data)" in inspect.getsource(Origin.unpack), "unexpected ExaBGP version"
    assert "return None  # ASPath.Empty" in inspect.getsource(ASPath.unpack), "unexpected ExaBGP version"
    one = inspect.getsource(Attributes._parse_one)
    assert "if aid in self.NO_DUPLICATE:" in one and "length == 0 and aid not in self.VALID_ZERO" in one
    assert "left = self._parse_one(data, direction, negotiated)" in inspect.getsource(Attributes.parse)
    assert ORIGINATOR_ID not in Attributes.TREAT_AS_WITHDRAW, "unexpected ExaBGP version"
    assert CLUSTER_LIST not in Attributes.TREAT_AS_WITHDRAW, "unexpected ExaBGP version"
    read = inspect.getsource(Protocol.read_message)
    assert read.count("processes.notification(") == 2 and read.count("str(notify),\n") == 2
    notification = "def notification(self, neighbor, direction, code, subcode, data, header, body):"
    inner = [cell.cell_contents for cell in Processes.notification.__closure__ or ()]  # under @silenced
    assert [notification in inspect.getsource(f) for f in inner] == [True], "unexpected ExaBGP version"


def apply() -> None:
    """Install the eight corrections (module docstring)."""
    from exabgp.bgp.message.update.attribute import ASPath, Attribute, Attributes, Origin
    from exabgp.bgp.message.update.attribute.attribute import TreatAsWithdraw
    from exabgp.reactor.api.processes import Processes

    if _originals:
        return
    _check_version()
    _originals.update(
        origin_unpack=Origin.__dict__["unpack"],
        aspath_unpack=ASPath.__dict__["unpack"],
        parse=Attributes.parse,
        parse_one=Attributes._parse_one,
        treat_as_withdraw=Attributes.TREAT_AS_WITHDRAW,
        notification=Processes.notification,
        # not ExaBGP functions: what 4-7 look up on every attribute (every attribute class is registered
        # once `exabgp.bgp.message.update.attribute` is imported)
        treat_as_withdraw_class=TreatAsWithdraw,
        known=frozenset(Attribute.attributes_known),
    )
    Processes.notification = _notification
    Origin.unpack = classmethod(_origin_unpack)
    ASPath.unpack = classmethod(_aspath_unpack)
    Attributes.parse = _parse
    Attributes._parse_one = _parse_one
    Attributes.TREAT_AS_WITHDRAW = (
        *Attributes.TREAT_AS_WITHDRAW,
        Attribute.CODE.ORIGINATOR_ID,
        Attribute.CODE.CLUSTER_LIST,
    )


def restore() -> None:
    """Put ExaBGP's own functions back (the tests compare both)."""
    from exabgp.bgp.message.update.attribute import ASPath, Attributes, Origin
    from exabgp.reactor.api.processes import Processes

    if not _originals:
        return
    Processes.notification = _originals["notification"]
    Origin.unpack = _originals["origin_unpack"]
    ASPath.unpack = _originals["aspath_unpack"]
    Attributes.parse = _originals["parse"]
    Attributes._parse_one = _originals["parse_one"]
    Attributes.TREAT_AS_WITHDRAW = _originals["treat_as_withdraw"]
    _originals.clear()


def _notify(code: int, subcode: int, text: str) -> Exception:
    from exabgp.bgp.message import Notify

    error: Exception = Notify(code, subcode, text)
    return error


def _origin_unpack(cls: Any, data: bytes, direction: Any, negotiated: Any) -> Any:
    """1: ORIGIN is one octet (RFC 4271 §4.3, RFC 7606 §7.1)."""
    if len(data) != 1:
        raise _notify(3, 5, f"invalid ORIGIN, expected 1 octet, got {len(data)}")
    return _originals["origin_unpack"].__func__(cls, data, direction, negotiated)


def _aspath_unpack(cls: Any, data: bytes, direction: Any, negotiated: Any) -> Any:
    """3: no AS_PATH segment of length zero (RFC 7606 §7.2)."""
    size = 4 if negotiated.asn4 else 2
    at = 0
    while at + 1 < len(data):
        if data[at + 1] == 0:
            raise _notify(3, 11, "AS_PATH segment of length zero")
        at += 2 + data[at + 1] * size
    return _originals["aspath_unpack"].__func__(cls, data, direction, negotiated)


def _parse(self: Any, data: bytes, direction: Any, negotiated: Any) -> Any:
    """4: the type codes met are remembered; path attributes without AS_PATH are treat-as-withdraw."""
    seen: set[int] = set()
    self._bgpd_seen = seen
    result = _originals["parse"](self, data, direction, negotiated)
    if AS_PATH not in seen and seen - {MP_UNREACH}:
        self.add(_originals["treat_as_withdraw_class"](AS_PATH))
    return result


def _parse_one(self: Any, data: bytes, direction: Any, negotiated: Any) -> Any:
    """4 to 7 for one attribute whose header and value are all there; ExaBGP's own code for the rest
    (including its answers to a short or overrunning attribute)."""
    header = 4 if len(data) > 2 and data[0] & EXTENDED else 3
    if len(data) >= header:
        flag, code = data[0], data[1]
        length = int.from_bytes(data[2:header], "big")
        if length > len(data) - header and code in (MP_REACH, MP_UNREACH):
            raise _notify(3, 9, f"{_MP_NAMES[code]} longer than the path attributes")
        if length <= len(data) - header:
            seen: set[int] | None = getattr(self, "_bgpd_seen", None)
            if seen is None:  # parse() not entered through _parse (never in ExaBGP 5.0.15)
                seen = self._bgpd_seen = set()
            if code in seen and code not in (MP_REACH, MP_UNREACH):
                return data[header + length :]  # RFC 7606 §3 g: only the first occurrence counts
            seen.add(code)
            if length == 0 and code in (MP_REACH, MP_UNREACH):
                raise _notify(3, 9, f"empty {_MP_NAMES[code]}")
            if length == 0 and code == AGGREGATOR:
                return data[header:]  # 7: attribute discard (RFC 7606 §7.7)
            if not flag & OPTIONAL and code not in _originals["known"]:
                # an unrecognized well-known attribute (RFC 4271 §6.3)
                self.add(_originals["treat_as_withdraw_class"](code))
                return data[header + length :]
    return _originals["parse_one"](self, data, direction, negotiated)


def _notification(self: Any, *args: Any) -> Any:
    """8: ExaBGP's reader passes 8 arguments for a header error it found itself (one too many): not
    reported; every other call goes through unchanged."""
    if len(args) == 8:
        return None
    return _originals["notification"](self, *args)
