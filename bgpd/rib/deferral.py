"""Selection deferral after a start (RFC 4724 §4.1): when a starting speaker may call its table complete.

A speaker that (re)starts knows nothing of its peers' routes. Its peers may still hold what it announced
before, and its own kernel may still hold the routes it installed before. Sending End-of-RIB, or removing
those stale kernel routes, before the peers have re-sent their tables would announce "this is all there is"
while most of it is still missing: a graceful-restart peer then drops the routes it kept, and traffic is
blackholed for no reason.

`SelectionDeferral` answers "is the table complete?" from plain events, with no I/O and no clock (the
caller runs the Selection_Deferral_Timer and calls `expire`). The table is complete once every configured
peer has either

* sent End-of-RIB,
* opened its session without the Graceful Restart Capability (it sends no End-of-RIB to wait for; a
  capability without families still promises End-of-RIB, RFC 4724 §3, and is waited for), or
  with the Restart State bit set (it is restarting too and defers its own End-of-RIB: waiting for each
  other would deadlock, so §4.1 excludes it; only with `exclude_restarting`),
* or been removed from the configuration,

or the deferral timer expired. A peer that has not connected yet is waited for: it may be a graceful
restart peer whose End-of-RIB is the only proof that its routes are known again.

The speaker keeps two: one decides when it sends its own End-of-RIB (restarting peers excluded, as §4.1
says), the other when it removes its stale kernel routes (restarting peers included: when a whole cluster
restarts at once, the routes through a peer stay until that peer has re-sent them).

Peers are addresses of either family (issue 11): an IPv6 session is a peer of its own, waited for like an
IPv4 one, and its End-of-RIB (for IPv6 unicast) completes only itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from bgpd.model import Address


class SelectionDeferral:
    """Which peers a starting speaker still waits for. Every method returns True exactly once: when the
    call completed the table (afterwards `done` stays True and further calls return False)."""

    def __init__(self, peers: Iterable[Address], exclude_restarting: bool = True) -> None:
        self.waiting: set[Address] = set(peers)
        self.exclude_restarting = exclude_restarting
        self.done = False
        self.how = ""  # what completed it: "no peers", "end-of-rib", "open", "removed", "timer"

    def _settle(self, how: str) -> bool:
        if self.done or self.waiting:
            return False
        self.done = True
        self.how = how
        return True

    def start(self) -> bool:
        """Call once the speaker has started: with no peers at all, the table is complete at once."""
        return self._settle("no peers")

    def opened(self, peer: Address, graceful: bool, restarting: bool) -> bool:
        """`peer` sent its OPEN: `graceful` = it will send End-of-RIB (it has the Graceful Restart
        Capability, for our family or for none: RFC 4724 §3), `restarting` = its Restart State bit is set."""
        if not graceful or (restarting and self.exclude_restarting):
            self.waiting.discard(peer)
        return self._settle("open")

    def end_of_rib(self, peer: Address) -> bool:
        """`peer` sent End-of-RIB (RFC 4724 §2)."""
        self.waiting.discard(peer)
        return self._settle("end-of-rib")

    def forget(self, peer: Address) -> bool:
        """`peer` is no longer configured."""
        self.waiting.discard(peer)
        return self._settle("removed")

    def expire(self) -> bool:
        """The Selection_Deferral_Timer expired: the table is as complete as it will get."""
        self.waiting.clear()
        return self._settle("timer")
