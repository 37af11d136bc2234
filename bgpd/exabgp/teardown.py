"""Change 12 to ExaBGP 5.0.15 (installed by `bgpd.exabgp.launch.apply`): the API's `neighbor X teardown N`
ends the session with NOTIFICATION Cease / N even when graceful restart was negotiated, and a neighbor
removed from the configuration by a reload ends its Established session with Cease / Peer De-configured
(3), as BIRD does, instead of closing the connection.

bgpd resets a session on purpose with `teardown` when a peer sends more prefixes than `max_prefixes`
allows: RFC 4486 §4 says the speaker sends NOTIFICATION Cease / Maximum Number of Prefixes Reached (1), and
the peer must see it, both to know why and because a session closed without a NOTIFICATION is a graceful
restart for a peer that negotiated it (RFC 4724 §4.2: it keeps our routes and reconnects at once). ExaBGP's
`Peer._main`, leaving its loop after `teardown`, checks the neighbor's graceful-restart capability first
and, when it was negotiated, closes the connection silently ("closing the session without notification");
only otherwise does it `raise Notify(6, self._teardown)`.

`Peer.teardown` is called by the API's teardown command only (`Reactor.teardown_peer`); ExaBGP's own stop,
restart and reload set `_teardown` directly. The change marks a peer whose teardown came through
`Peer.teardown`; while the mark is set, each step of `Peer._main` runs with the neighbor's
``capability['graceful-restart']`` read as off (restored right after the step; inside `_main` it is read
by the shutdown check alone), so the step that leaves the loop raises the NOTIFICATION. The mark clears
when that session's `_main` ends. And the torn-down peer is not restarted by ExaBGP (`restart=False`,
as `Peer.stop` does): it leaves the reactor's peers after its NOTIFICATION, and the next configuration
reload that lists it brings it back as a new peer. The API's teardown restarted it at once, so a session
bgpd holds down reconnected before bgpd's reload could take the neighbor out (the peer then saw Cease / 1
and, a moment later, another reset). Without an API teardown every step runs exactly as before, with the
capability untouched (tests/unit/test_exabgp_teardown.py runs both against the original).

A reload that drops a neighbor calls `Peer.remove`, which closes the connection at once, without a
NOTIFICATION: the peer took it for a graceful restart and kept routing to this host for its whole restart
time (120 s by default) although the session was removed on purpose (seen in the soak run). When the
session is Established, `remove` now goes the teardown way instead (Cease / 3, RFC 4486 §4, not restarted,
so the peer leaves the reactor after its NOTIFICATION); a session not yet Established is removed as before.

Either way the peer's Adj-RIB-Out leaves ExaBGP's RIB cache (`RIB.uncache`, as `Peer.stop` does): ExaBGP
keeps each neighbor's RIB in a class-level cache by name, so that a reload keeps the routes of a neighbor
that stays; a neighbor that left and comes back under the same name would otherwise get its old Adj-RIB-Out
back, without the withdrawals made while it was gone, and announce routes bgpd no longer has (found by the
30-minute soak: a peer removed and re-added by reload kept a withdrawn route; tests/e2e/test_deconfigure.py).
bgpd replays its table to a neighbor that comes back.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

_MARK = "_bgpd_teardown_notifies"
_original_teardown: Any = None
_original_main: Any = None
_original_remove: Any = None
PEER_DECONFIGURED = 3  # RFC 4486 §4 Cease subcode


def _teardown(self: Any, code: Any, restart: bool = True) -> Any:
    """`Peer.teardown`, marking the session to end with NOTIFICATION Cease / `code`, and not restarted; the
    peer's Adj-RIB-Out leaves ExaBGP's RIB cache, as `Peer.stop` makes it leave (see the module)."""
    setattr(self, _MARK, True)
    self.neighbor.rib.uncache()
    return _original_teardown(self, code, False)


def _remove(self: Any) -> Any:
    """`Peer.remove` (a reload dropped the neighbor): an Established session ends with Cease / 3."""
    from exabgp.bgp.fsm import FSM

    if self.fsm == FSM.ESTABLISHED and self.proto is not None and self.generator:
        return _teardown(self, PEER_DECONFIGURED)
    return _original_remove(self)


def _main(self: Any) -> Iterator[Any]:
    """`Peer._main`, stepped as ExaBGP steps it; while an API teardown is due, each step runs with the
    neighbor's graceful restart read as off."""
    inner = _original_main(self)
    try:
        while True:
            if not getattr(self, _MARK, False):
                try:
                    action = next(inner)
                except StopIteration:
                    return
                yield action
                continue
            capability = self.neighbor["capability"]
            saved = capability["graceful-restart"]
            capability["graceful-restart"] = False
            try:
                action = next(inner)
            except StopIteration:
                return
            finally:
                capability["graceful-restart"] = saved
            yield action
    finally:
        setattr(self, _MARK, False)


def original_main(peer: Any) -> Any:
    """`peer._main` as ExaBGP wrote it, whether change 12 is installed or not (for other changes' checks)."""
    return _original_main if peer._main is _main else peer._main


def check(peer: Any) -> None:
    """What change 12 relies on in ExaBGP 5.0.15's `Peer` (AssertionError for another version)."""
    main = inspect.getsource(peer._main)
    assert "If graceful restart, silent shutdown" in main, "unexpected ExaBGP version"
    assert "if self.neighbor['capability']['graceful-restart'] and" in main, "unexpected ExaBGP version"
    assert main.count("['graceful-restart']") == 1, "unexpected ExaBGP version"
    assert "raise Notify(6, self._teardown)" in main, "unexpected ExaBGP version"
    assert inspect.isgeneratorfunction(peer._main), "unexpected ExaBGP version"
    teardown = inspect.getsource(peer.teardown)
    assert "self._teardown = code" in teardown, "unexpected ExaBGP version"
    remove = inspect.getsource(peer.remove)
    assert "self._stop('removed')" in remove and "self.stop()" in remove, "unexpected ExaBGP version"


def apply() -> None:
    """Install change 12 (idempotent)."""
    global _original_teardown, _original_main, _original_remove
    from exabgp.reactor.peer import Peer

    if _original_main is not None:
        return
    check(Peer)
    _original_teardown, _original_main, _original_remove = Peer.teardown, Peer._main, Peer.remove
    Peer.teardown, Peer._main, Peer.remove = _teardown, _main, _remove
