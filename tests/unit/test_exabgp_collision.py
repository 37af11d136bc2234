"""Change 18 (`bgpd.exabgp.collision`): an incoming connection is refused with Cease / Connection Collision
Resolution (6/7) exactly when this side's own attempt is under way (live session generator, before
OpenConfirm, neighbor not passive, not stopping) and its local address is the higher one; in every other
case ExaBGP's original `Peer.handle_connection` decides (hypothesis over the peer's state and both
addresses). Both ends of a collision keep the same connection. And the change is installed and refuses
another ExaBGP version."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from exabgp.bgp.fsm import FSM
from exabgp.protocol.ip import IP
from hypothesis import given
from hypothesis import strategies as st

from bgpd.exabgp import collision, launch
from tests.unit.conftest import source_changed

launch.apply()
collision.apply()

STATES = [FSM.IDLE, FSM.ACTIVE, FSM.CONNECT, FSM.OPENSENT, FSM.OPENCONFIRM, FSM.ESTABLISHED]
V4 = st.sampled_from(["192.168.100.10", "192.168.100.11", "10.0.0.1", "172.16.0.2"])
V6 = st.sampled_from(["fd00:100::10", "fd00:100::11", "2001:db8::1"])


class FakeConnection:
    def __init__(self) -> None:
        self.refused: tuple[int, int] | None = None

    def notification(self, code: int, subcode: int, message: str) -> str:
        self.refused = (code, subcode)
        return "refused"


class FakePeer:
    """What change 18 reads of ExaBGP's Peer."""

    def __init__(
        self, local: str, remote: str, passive: bool, live: bool, stopping: bool, state: Any
    ) -> None:
        self.neighbor = {
            "local-address": IP.create(local),
            "peer-address": IP.create(remote),
            "passive": passive,
        }
        self.generator: Any = iter(()) if live else None
        self._stopping = stopping
        self.fsm = state

    def stopping(self) -> bool:
        return self._stopping


@given(
    addresses=st.one_of(st.tuples(V4, V4), st.tuples(V6, V6)),
    passive=st.booleans(),
    live=st.booleans(),
    stopping=st.booleans(),
    state=st.sampled_from(STATES),
)
def test_refused_exactly_when_our_attempt_is_under_way_from_the_higher_address(
    addresses: tuple[str, str], passive: bool, live: bool, stopping: bool, state: Any
) -> None:
    local, remote = addresses
    peer = FakePeer(local, remote, passive, live, stopping, state)
    calls: list[Any] = []
    saved = collision._original_handle
    collision._original_handle = lambda self, connection: calls.append((self, connection)) or "original"
    try:
        connection = FakeConnection()
        answer = collision._handle_connection(peer, connection)
    finally:
        collision._original_handle = saved
    higher = ipaddress.ip_address(local) > ipaddress.ip_address(remote)
    early = state not in (FSM.OPENCONFIRM, FSM.ESTABLISHED)
    if higher and early and live and not passive and not stopping:
        assert answer == "refused" and connection.refused == (6, 7) and calls == []
    else:
        assert answer == "original" and calls == [(peer, connection)] and connection.refused is None


@given(st.one_of(st.tuples(V4, V4), st.tuples(V6, V6)).filter(lambda pair: pair[0] != pair[1]))
def test_both_ends_of_a_collision_keep_the_same_connection(addresses: tuple[str, str]) -> None:
    """Each side, connecting, gets the other's connection: exactly one refuses it (the higher address,
    whose own connection the lower one then takes)."""
    a, b = addresses
    refusals = []
    for local, remote in ((a, b), (b, a)):
        peer = FakePeer(local, remote, passive=False, live=True, stopping=False, state=FSM.OPENSENT)
        refusals.append(collision._keeps_own(peer))
    assert sorted(refusals) == [False, True]


def test_change_18_is_installed() -> None:
    from exabgp.reactor.peer import Peer

    assert Peer.handle_connection is collision._handle_connection
    collision.check(Peer)


@pytest.mark.parametrize(
    ("method", "old", "new"),
    [
        ("handle_connection", "if self.fsm == FSM.OPENCONFIRM:", "if self.fsm == FSM.OPENSENT:"),
        ("handle_connection", "self.proto = Protocol(self).accept(connection)", "self.proto = connection"),
        ("run", "self.generator = self._run()", "self.generator = True"),
        ("_reset", "self.generator = None", "self.generator = ()"),
    ],
)
def test_change_18_refuses_another_exabgp(
    monkeypatch: pytest.MonkeyPatch, method: str, old: str, new: str
) -> None:
    from exabgp.reactor.peer import Peer

    function = collision.original(Peer) if method == "handle_connection" else getattr(Peer, method)
    source_changed(monkeypatch, function, old, new)
    with pytest.raises(AssertionError, match="unexpected ExaBGP version"):
        collision.check(Peer)
