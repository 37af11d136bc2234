"""Change 18 to ExaBGP 5.0.15 (installed by `bgpd.exabgp.launch.apply`): a connection collision (RFC 4271
§6.8) between two speakers that both connect no longer closes both connections, again and again.

ExaBGP holds one connection per peer. When a connection comes in while its own outgoing one is under way,
`Peer.handle_connection` compares BGP Identifiers only if the outgoing connection is in OpenConfirm (the
peer's OPEN read); in any earlier state (connecting, OpenSent) it closes its own connection and takes the
incoming one. Two ExaBGPs that connect to each other at the same moment both do that: each closes the
connection the other has just taken, both sessions die, both retry after the same delay (ExaBGP's retry
delay has no jitter and starts again from 0 s at every accepted connection) and collide again. Seen in
the benchmark's `latency-active` (two bgpd hosts listing each other in `bgp.peers`, neither passive): no
session for the whole 90 s of a run on a loaded machine.

RFC 4271 §6.8 keeps the connection initiated by the speaker with the higher BGP Identifier, and allows a
speaker to decide in OpenSent when it knows the peer's identifier by other means; ExaBGP cannot hold both
connections until an OPEN tells. Both speakers do know both transport addresses, so with this change an
incoming connection that arrives while the peer's own outgoing attempt is under way (a live session
generator, not yet in OpenConfirm, the neighbor not passive) is refused, with NOTIFICATION Cease /
Connection Collision Resolution (6/7) as ExaBGP refuses others, when this side's local address is the
higher one: both ends then keep the same connection, the one opened by the higher address (the lower side
takes it as before, closing its own). In every other case (OpenConfirm, where ExaBGP compares the
identifiers; no attempt of ours under way; a passive neighbor; the lower address) the original decides.
tests/unit/test_exabgp_collision.py runs both against the original.
"""

from __future__ import annotations

import inspect
import ipaddress
from typing import Any

_original_handle: Any = None


def _keeps_own(peer: Any) -> bool:
    """Whether `peer` (an ExaBGP Peer) keeps its own connection attempt over an incoming connection."""
    from exabgp.bgp.fsm import FSM

    neighbor = peer.neighbor
    if neighbor["passive"] or not peer.generator or peer.stopping():
        return False  # no attempt of ours under way: the incoming connection is the only one
    if peer.fsm in (FSM.OPENCONFIRM, FSM.ESTABLISHED):
        return False  # ExaBGP's own comparison of BGP Identifiers (or its refusal) applies
    local, remote = neighbor["local-address"], neighbor["peer-address"]
    if local is None or remote is None:
        return False
    try:
        mine, theirs = ipaddress.ip_address(local.top()), ipaddress.ip_address(remote.top())
    except (AttributeError, ValueError):
        return False
    return mine.version == theirs.version and int(mine) > int(theirs)


def _handle_connection(self: Any, connection: Any) -> Any:
    if _keeps_own(self):
        return connection.notification(
            6, 7, "connection collision: the connection opened by the higher address is kept"
        )
    return _original_handle(self, connection)


def original(peer: Any) -> Any:
    """`Peer.handle_connection` as ExaBGP wrote it, whether change 18 is installed or not."""
    return _original_handle if peer.handle_connection is _handle_connection else peer.handle_connection


def check(peer: Any) -> None:
    """What change 18 relies on in ExaBGP 5.0.15's `Peer` (AssertionError for another version)."""
    handle = inspect.getsource(original(peer))
    assert "if self.fsm == FSM.OPENCONFIRM:" in handle, "unexpected ExaBGP version"
    assert "return connection.notification(" in handle, "unexpected ExaBGP version"
    assert "self.proto = Protocol(self).accept(connection)" in handle, "unexpected ExaBGP version"
    assert "self._close('closing outgoing connection" in handle, "unexpected ExaBGP version"
    run = inspect.getsource(peer.run)
    assert "self.generator = self._run()" in run, "unexpected ExaBGP version"
    reset = inspect.getsource(peer._reset)
    assert "self.generator = None" in reset and "self.generator = False" in reset, "unexpected ExaBGP version"


def apply() -> None:
    """Install change 18 (idempotent)."""
    global _original_handle
    from exabgp.reactor.peer import Peer

    if _original_handle is not None:
        return
    check(Peer)
    _original_handle = Peer.handle_connection
    Peer.handle_connection = _handle_connection
