"""Change 13 to ExaBGP 5.0.15 (installed by `bgpd.exabgp.launch.apply`): a configuration reload (SIGUSR1,
SIGUSR2) is applied even while routes wait in an Adj-RIB-Out, when the configuration holds no static
routes (bgpd's never does).

bgpd adds and removes neighbors by rewriting ExaBGP's configuration and sending SIGUSR1 (a reload of its
config file, a new Node or BGPPeer in the cluster's datastore, a peer held down over `max_prefixes`). The
reactor loop of 5.0.15 takes the signal, re-arms it, then asks `_pending_adjribout()` ("did we complete
the run of updates caused by the last SIGUSR1/SIGUSR2?") and, while any peer still has changes queued in
its Adj-RIB-Out, goes on to the next pass: the signal is dropped, not deferred, and the reload never
happens. A host that announces or withdraws a burst of routes (a bulk of workloads, a peer's table
replayed) while a neighbor is added would never run that session. The check protects the diff of the
configuration's static routes (`Peer.reconfigure` -> `OutgoingRIB.replace_reload`), which must not start
before the previous reload's routes are out. bgpd's routes come from the API only: with no static route
in the configuration a reload changes no route, and the queued changes are API routes it leaves alone.

So `Reactor._pending_adjribout` answers False when no neighbor of the loaded configuration has a static
route (`Neighbor.changes` empty), and calls the original otherwise: with static routes ExaBGP behaves
exactly as before (tests/unit/test_exabgp_reload.py runs both against the original). The function is
called at that one place of the loop alone (checked at start, with the source it relies on).
"""

from __future__ import annotations

import inspect
from typing import Any

_original_pending: Any = None


def _pending_adjribout(self: Any) -> bool:
    neighbors = self.configuration.neighbors.values()
    if not any(neighbor.changes for neighbor in neighbors):
        return False  # no static route: a reload cannot disturb what is queued
    return bool(_original_pending(self))


def check(reactor: Any, peer: Any) -> None:
    """What change 13 relies on in ExaBGP 5.0.15's `Reactor` and `Peer` (AssertionError for another
    version)."""
    run = inspect.getsource(reactor.run)
    assert run.count("_pending_adjribout()") == 1, "unexpected ExaBGP version"
    assert "if self._pending_adjribout():" in run, "unexpected ExaBGP version"
    assert "did we complete the run of updates caused by the last SIGUSR1/SIGUSR2" in run
    pending = inspect.getsource(original(reactor))
    assert "rib.outgoing.pending()" in pending, "unexpected ExaBGP version"
    module = inspect.getsource(inspect.getmodule(reactor))  # type: ignore[arg-type]
    assert module.count("_pending_adjribout(") == 2, "unexpected ExaBGP version"  # the def and the call
    assert "restart_neighbor.changes" in inspect.getsource(peer.reconfigure), "unexpected ExaBGP version"


def original(reactor: Any) -> Any:
    """The unpatched `_pending_adjribout` (for the tests)."""
    return _original_pending if _original_pending is not None else reactor._pending_adjribout


def apply() -> None:
    """Install change 13 (idempotent)."""
    global _original_pending
    from exabgp.reactor.loop import Reactor
    from exabgp.reactor.peer import Peer

    if _original_pending is not None:
        return
    check(Reactor, Peer)
    _original_pending = Reactor._pending_adjribout
    Reactor._pending_adjribout = _pending_adjribout
