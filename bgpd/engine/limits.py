"""Maximum prefixes per peer (BIRD's `receive limit`, FRR's `maximum-prefix`, GoBGP's `max-prefixes`) and
the hold-down after a reset (RFC 4486 §4). Plain state, no I/O: deadlines go through the engine's `Timers`,
session operations (`Teardown`, `HoldDown`) are queued for the speaker.

What is counted: the distinct prefixes the peer currently announces, before import policy, as BIRD's
`receive limit` counts them: its paths in the RIB (accepted, learned copies of our own prefixes, stale ones
kept through its graceful restart) plus those import rejected that it has not withdrawn
(`PeerStatus.rejected_held`). A peer flooding rejected routes still costs memory and work, which is what a
limit guards against; FRR's default (accepted only) would let it through.

`crossed(status, count)` is true once per crossing (the count goes above the maximum; it must come back to
the maximum or below before another one counts). With `restart`, `HoldDowns.start` queues a
`Teardown(peer, 1)` (Cease / Maximum Number of Prefixes Reached) and keeps the session down for
`restart_after` seconds: once ExaBGP reports the session down (or `TEARDOWN_WAIT` passed), a `HoldDown`
asks the speaker to run every session but the held ones. ExaBGP may not apply that at once (it drops a
reload while a session still has routes queued), so a held session that ExaBGP brings up again is closed
with Cease / Connection Rejected (RFC 4486 §4, subcode 5) and the `HoldDown` is sent again, and a released
session of which ExaBGP reports nothing is asked for again after 2, 4, ... 60 s.
"""

from __future__ import annotations

import time
from collections.abc import Hashable

from bgpd.engine.notification import CEASE_CONNECTION_REJECTED, CEASE_MAX_PREFIXES
from bgpd.engine.outputs import HoldDown, SessionOp, Teardown
from bgpd.engine.peers import PeerStatus
from bgpd.engine.timers import Timers
from bgpd.model import Address

HOLD_TIMER = "max-prefixes-hold"  # timer keys: (name, peer)
TEARDOWN_TIMER = "max-prefixes-teardown"
REJOIN_TIMER = "max-prefixes-rejoin"
TIMERS = frozenset((HOLD_TIMER, TEARDOWN_TIMER, REJOIN_TIMER))
TEARDOWN_WAIT = 5.0  # seconds for ExaBGP's "down" after a teardown (it comes within milliseconds)
REJOIN_FIRST = 2.0  # seconds after a release before the neighbor set is sent again, doubling up to
REJOIN_MAX = 60.0


def crossed(status: PeerStatus, count: int) -> bool:
    """`count` prefixes from `status`'s peer: is this a crossing of its limit (counted in `limit_hits`)?"""
    limit = status.prefix_limit
    if limit is None or count <= limit.maximum:
        status.over_limit = False
        return False
    if status.over_limit:
        return False
    status.over_limit = True
    status.limit_hits += 1
    return True


class HoldDowns:
    """Sessions held down after a maximum-prefixes reset, and those just released."""

    def __init__(self, timers: Timers) -> None:
        self.timers = timers
        self.until: dict[Address, float] = {}  # held peer -> end of its hold-down (epoch seconds)
        self._closing: set[Address] = set()  # Teardown queued, ExaBGP's "down" not seen yet
        self._rejoin: dict[Address, float] = {}  # released, not seen since -> the next retry's delay
        self._ops: list[SessionOp] = []

    @property
    def held(self) -> frozenset[Address]:
        return frozenset(self.until)

    def is_held(self, peer: Address) -> bool:
        return peer in self.until

    def start(self, peer: Address, seconds: float) -> None:
        """Close `peer`'s session (Cease / Maximum Number of Prefixes Reached) and hold it down `seconds`."""
        self._forget_rejoin(peer)
        self.until[peer] = time.time() + seconds
        self._closing.add(peer)
        self._ops.append(Teardown(peer, CEASE_MAX_PREFIXES))
        self.timers.arm((HOLD_TIMER, peer), seconds)
        self.timers.arm((TEARDOWN_TIMER, peer), TEARDOWN_WAIT)

    def seen(self, peer: Address, state: str) -> None:
        """ExaBGP reported `state` for `peer`: a held session must stay out of ExaBGP; a released one is
        back in it."""
        self._forget_rejoin(peer)
        if peer not in self.until:
            return
        if state == "down":
            if peer in self._closing:  # our NOTIFICATION is out: now leave the neighbor out of ExaBGP
                self._closing.discard(peer)
                self.timers.cancel((TEARDOWN_TIMER, peer))
                self._ops.append(HoldDown(self.held))
            return
        if state == "up":  # ExaBGP still runs it: close it again
            self._ops.append(Teardown(peer, CEASE_CONNECTION_REJECTED))
        if peer not in self._closing:
            self._ops.append(HoldDown(self.held))

    def on_timer(self, key: Hashable) -> Address | None:
        """A timer fired: the peer whose hold-down is over (the caller lets it come back), else None."""
        if not (isinstance(key, tuple) and len(key) == 2):
            return None
        name, peer = key
        if name == TEARDOWN_TIMER and peer in self._closing:
            self._closing.discard(peer)
            self._ops.append(HoldDown(self.held))
        elif name == HOLD_TIMER and peer in self.until:
            self.release(peer)
            return peer  # type: ignore[no-any-return]
        elif name == REJOIN_TIMER and peer in self._rejoin:
            delay = min(self._rejoin[peer] * 2, REJOIN_MAX)
            self._rejoin[peer] = delay
            self._ops.append(HoldDown(self.held))
            self.timers.arm((REJOIN_TIMER, peer), delay)
        return None

    def release(self, peer: Address) -> None:
        """End `peer`'s hold-down now: the speaker runs its session again."""
        if peer not in self.until:
            return
        self._drop(peer)
        self._ops.append(HoldDown(self.held))
        self._rejoin[peer] = REJOIN_FIRST
        self.timers.arm((REJOIN_TIMER, peer), REJOIN_FIRST)

    def forget(self, peer: Address) -> None:
        """`peer` is no longer configured."""
        was_held = peer in self.until
        self._drop(peer)
        self._forget_rejoin(peer)
        if was_held:
            self._ops.append(HoldDown(self.held))

    def take(self) -> list[SessionOp]:
        """The operations due, in order; of several `HoldDown`s only the last (the current set)."""
        ops, self._ops = self._ops, []
        last = max((i for i, op in enumerate(ops) if isinstance(op, HoldDown)), default=-1)
        return [op for i, op in enumerate(ops) if not isinstance(op, HoldDown) or i == last]

    @property
    def pending(self) -> bool:
        return bool(self._ops)

    def _drop(self, peer: Address) -> None:
        self.until.pop(peer, None)
        self._closing.discard(peer)
        self.timers.cancel((HOLD_TIMER, peer))
        self.timers.cancel((TEARDOWN_TIMER, peer))

    def _forget_rejoin(self, peer: Address) -> None:
        if self._rejoin.pop(peer, None) is not None:
            self.timers.cancel((REJOIN_TIMER, peer))
