"""The graceful restart helper's state (RFC 4724 §4.2): per peer, the paths kept as stale through a
restart (the peer's, or ExaBGP's own) and the one deadline that withdraws those not re-sent by then.

Plain state, no I/O: deadlines are armed through the engine's `Timers` under the key ("stale", peer),
and `expired(key)` tells the engine which peer's stale paths go when one fires.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from bgpd.engine.timers import Timers
from bgpd.model import Address, Prefix


class StalePaths:
    """Stale paths per peer, each peer with one deadline."""

    def __init__(self, timers: Timers) -> None:
        self.timers = timers
        self._paths: dict[Address, set[Prefix]] = {}
        self._why: dict[Address, str] = {}

    def keep(self, peer: Address, prefixes: Iterable[Prefix], seconds: float, why: str) -> None:
        """Mark `prefixes` of `peer` stale (added to those already marked); withdrawn after `seconds`
        unless re-sent (`pending(peer).discard`) or the peer's End-of-RIB comes first (`drop`)."""
        self._paths.setdefault(peer, set()).update(prefixes)
        self.rearm(peer, seconds, why)

    def rearm(self, peer: Address, seconds: float, why: str) -> None:
        """(Re)start the one deadline of `peer`; `why` is what the log says when it passes."""
        self._why[peer] = why
        self.timers.arm(("stale", peer), seconds)

    def restarting(self, peer: Address) -> bool:
        """Does `peer` have paths kept through a restart?"""
        return peer in self._paths

    def pending(self, peer: Address) -> set[Prefix] | None:
        """The live set of `peer`'s stale paths (an UPDATE re-sending one discards it), or None."""
        return self._paths.get(peer)

    def count(self, peer: Address) -> int:
        return len(self._paths.get(peer, ()))

    def paths_of(self, peer: Address) -> frozenset[Prefix]:
        return frozenset(self._paths.get(peer, ()))

    def drop(self, peer: Address) -> set[Prefix]:
        """End `peer`'s restart: its deadline is cancelled; the paths still stale are returned."""
        self.timers.cancel(("stale", peer))
        self._why.pop(peer, None)
        return self._paths.pop(peer, None) or set()

    def expired(self, key: Hashable) -> tuple[Address, str] | None:
        """The deadline `key` fired: (peer, why) if it is one of ours (the caller withdraws via `drop`)."""
        if isinstance(key, tuple) and len(key) == 2 and key[0] == "stale":
            peer: Address = key[1]
            return peer, self._why.get(peer, "restart time passed")
        return None
