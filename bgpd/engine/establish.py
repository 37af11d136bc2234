"""Why a session cannot be established: after `bound(hold time)` seconds without reaching Established, a
peer gets a `reason` (shown by `bgpctl show peers` and logged once per distinct reason, not per retry).

The bound is the later of the session's hold time and twice `CONNECT_RETRY`. ExaBGP retries a failed
connection after 0, 1, 2, 3, 4, 5 s (then longer, up to 60 s), so within 2 × 5 s it has made several
attempts; and a connection that got as far as an OPEN ends within the hold time, in Established or with a
NOTIFICATION (Hold Timer Expired at worst, RFC 4271 §8.2.2). Hence 90 s with the default hold time.

The reason names what was seen and what may explain it, never more than the evidence holds:
1. the last NOTIFICATION sent or received since the session was last Established (bad peer AS, hold timer
   expired, maximum prefixes...), or a TCP connection that closed before Established;
2. the possible causes the session's config points at, which leave nothing to see in the BGP exchange:
   with a TCP-MD5 password, a key mismatch or a key on one side only (RFC 2385: the kernel drops the
   segments silently); with TTL security, a peer too many hops away or not sending TTL 255 (RFC 5082).
   They follow the NOTIFICATION when there was one (a key changed on the peer after a Cease shows as
   that Cease, then silence), and are worded as possibilities: a peer that refuses connections for a
   while looks the same;
3. with neither, no TCP connection, which includes a peer that requires a TCP-MD5 key this side lacks.
Plain state, no I/O: the deadlines are the engine's timers under ("establish", peer).
"""

from __future__ import annotations

from collections.abc import Hashable

from bgpd.config import PeerConfig
from bgpd.engine.timers import Timers
from bgpd.model import Address

CONNECT_RETRY = 5.0  # seconds: ExaBGP's reconnect delay after its sixth failed attempt (0, 1, 2, 3, 4, 5)
TIMER = "establish"
CANNOT = "cannot be established"
MD5_CAUSE = (
    "TCP-MD5 key mismatch or key set on one side only (the kernel drops such segments silently, RFC 2385)"
)
NO_TCP_CAUSE = (
    "no TCP connection (peer down, unreachable, not configured for this address, or requiring a TCP-MD5 "
    "key this side does not have)"
)
POSSIBLE = "possible causes: "


def bound(hold_time: int) -> float:
    """Seconds a session may take to reach Established before it gets a reason."""
    return max(float(hold_time), 2 * CONNECT_RETRY)


def likely_causes(peer: PeerConfig) -> str:
    """What the config says may keep a session from even connecting ("" when nothing in it does)."""
    causes = []
    if peer.password:
        causes.append(MD5_CAUSE)
    if peer.ttl_security is not None:
        hops = peer.ttl_security
        causes.append(
            f"the peer is more than {hops} hop{'s' if hops != 1 else ''} away or does not send TTL 255 "
            "(RFC 5082)"
        )
    return "; or ".join(causes)


def reason(peer: PeerConfig, failure: str | None) -> str:
    """The reason shown for a session not established within the bound: `failure` (the last NOTIFICATION
    or closed connection since it was last Established) and the possible causes in its config, or no TCP
    connection when there is neither."""
    causes = likely_causes(peer)
    if failure and causes:
        return f"{CANNOT}: {failure}; {POSSIBLE}{causes}"
    if causes:
        return f"{CANNOT}: no answer; {POSSIBLE}{causes}"
    return f"{CANNOT}: {failure or NO_TCP_CAUSE}"


class EstablishWatch:
    """Per peer: the deadline for reaching Established, and the last failure seen while trying."""

    def __init__(self, timers: Timers) -> None:
        self.timers = timers
        self.failure: dict[Address, str] = {}
        self.waiting: set[Address] = set()  # deadline armed or passed, not Established since

    def wait(self, peer: Address, seconds: float) -> None:
        """`peer` is not Established: give it `seconds` (a deadline already running is kept)."""
        if peer not in self.waiting:
            self.waiting.add(peer)
            self.timers.arm((TIMER, peer), seconds)

    def restart(self, peer: Address, seconds: float) -> None:
        """A new attempt from scratch (a released hold-down): a new deadline, no failure known."""
        self.forget(peer)
        self.wait(peer, seconds)

    def established(self, peer: Address) -> None:
        self.forget(peer)

    def failed(self, peer: Address, what: str) -> None:
        """The attempt ended: `what` (a NOTIFICATION, a closed connection) is the likeliest reason now."""
        self.failure[peer] = what

    def expired(self, key: Hashable) -> Address | None:
        """The peer whose deadline `key` is, if it is one of ours."""
        if isinstance(key, tuple) and len(key) == 2 and key[0] == TIMER:
            peer: Address = key[1]
            return peer if peer in self.waiting else None
        return None

    def forget(self, peer: Address) -> None:
        self.waiting.discard(peer)
        self.failure.pop(peer, None)
        self.timers.cancel((TIMER, peer))
