"""BGP NOTIFICATION codes as operators read them (RFC 4271 §4.5 and §6, RFC 4486 for the Cease subcodes,
RFC 7313 for ROUTE-REFRESH): `describe(code, subcode)` gives "Cease / Maximum Number of Prefixes Reached
(6/1)". Pure: no I/O, nothing of ExaBGP's text."""

from __future__ import annotations

CEASE = 6
CEASE_MAX_PREFIXES = 1  # RFC 4486 §4: the peer sent more prefixes than the configured upper bound
CEASE_CONNECTION_REJECTED = 5  # RFC 4486 §4: a connection refused (here: while a session is held down)

_CODES = {
    1: "Message Header Error",
    2: "OPEN Message Error",
    3: "UPDATE Message Error",
    4: "Hold Timer Expired",
    5: "Finite State Machine Error",
    6: "Cease",
    7: "ROUTE-REFRESH Message Error",
}
_SUBCODES: dict[int, dict[int, str]] = {
    1: {1: "Connection Not Synchronized", 2: "Bad Message Length", 3: "Bad Message Type"},
    2: {
        1: "Unsupported Version Number",
        2: "Bad Peer AS",
        3: "Bad BGP Identifier",
        4: "Unsupported Optional Parameter",
        6: "Unacceptable Hold Time",
        7: "Unsupported Capability",
    },
    3: {
        1: "Malformed Attribute List",
        2: "Unrecognized Well-known Attribute",
        3: "Missing Well-known Attribute",
        4: "Attribute Flags Error",
        5: "Attribute Length Error",
        6: "Invalid ORIGIN Attribute",
        8: "Invalid NEXT_HOP Attribute",
        9: "Optional Attribute Error",
        10: "Invalid Network Field",
        11: "Malformed AS_PATH",
    },
    6: {
        1: "Maximum Number of Prefixes Reached",
        2: "Administrative Shutdown",
        3: "Peer De-configured",
        4: "Administrative Reset",
        5: "Connection Rejected",
        6: "Other Configuration Change",
        7: "Connection Collision Resolution",
        8: "Out of Resources",
        9: "Hard Reset",
        10: "BFD Down",
    },
    7: {1: "Invalid Message Length"},
}


def describe(code: int, subcode: int) -> str:
    """'Code name / subcode name (code/subcode)'; unknown values are shown by number only."""
    name = _CODES.get(code, f"error code {code}")
    sub = _SUBCODES.get(code, {}).get(subcode)
    if sub is None and subcode:
        sub = f"subcode {subcode}"
    return f"{name} / {sub} ({code}/{subcode})" if sub else f"{name} ({code}/{subcode})"
