"""Change 13 (`bgpd.exabgp.reload`): with a static route anywhere in the configuration,
`Reactor._pending_adjribout` answers exactly as ExaBGP 5.0.15's original (hypothesis, over which peers are
active and which have changes queued); without one it answers False, so the reactor applies a reload
instead of dropping it. And the check of the source it relies on passes on the installed ExaBGP."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bgpd.exabgp import launch, reload

launch.apply()


class FakeOutgoing:
    def __init__(self, queued: bool) -> None:
        self.queued = queued

    def pending(self) -> bool:
        return self.queued


@dataclass
class FakeNeighbor:
    """ExaBGP's Neighbor: its static routes (`changes`) and its Adj-RIB-Out."""

    changes: list[str]
    queued: bool
    rib: Any = None

    def __post_init__(self) -> None:
        self.rib = type("RIB", (), {"outgoing": FakeOutgoing(self.queued)})()


@dataclass
class FakePeer:
    neighbor: FakeNeighbor


@dataclass
class FakeReactor:
    """What `_pending_adjribout` reads of the reactor: the loaded configuration's neighbors, the peers and
    which of them are active."""

    neighbors: dict[str, FakeNeighbor]
    active: set[str]
    configuration: Any = None
    _peers: dict[str, FakePeer] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.configuration = type("Configuration", (), {"neighbors": self.neighbors})()
        self._peers = {name: FakePeer(n) for name, n in self.neighbors.items()}

    def active_peers(self) -> set[str]:
        return self.active


neighbors = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d"]),
    st.builds(FakeNeighbor, st.lists(st.just("route"), max_size=2), st.booleans()),
)


@given(neighbors, st.data())
def test_with_static_routes_the_original_answers(found: dict[str, FakeNeighbor], data: st.DataObject) -> None:
    active = data.draw(st.sets(st.sampled_from(sorted(found)) if found else st.nothing()))
    reactor = FakeReactor(found, active)
    from exabgp.reactor.loop import Reactor

    patched = Reactor._pending_adjribout(reactor)
    if any(n.changes for n in found.values()):
        assert patched == reload.original(Reactor)(reactor)
    else:
        assert patched is False


def test_without_static_routes_a_queued_adj_rib_out_does_not_hold_a_reload() -> None:
    from exabgp.reactor.loop import Reactor

    reactor = FakeReactor({"a": FakeNeighbor([], True)}, {"a"})
    assert reload.original(Reactor)(reactor) is True  # ExaBGP would drop the SIGUSR1 here
    assert Reactor._pending_adjribout(reactor) is False
    with_route = FakeReactor({"a": FakeNeighbor(["route"], True)}, {"a"})
    assert Reactor._pending_adjribout(with_route) is True  # unchanged when a static route is configured


def test_the_source_it_relies_on_is_there() -> None:
    from exabgp.reactor.loop import Reactor
    from exabgp.reactor.peer import Peer

    assert reload.original(Reactor) is not Reactor._pending_adjribout
    reload.check(Reactor, Peer)
