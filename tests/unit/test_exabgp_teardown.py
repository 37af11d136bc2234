"""Change 12 (`bgpd.exabgp.teardown`): without an API teardown, `Peer._main` runs exactly as the original
(same actions, same exceptions, the capability never touched); after one, its steps read graceful restart
as off, so ExaBGP 5.0.15's shutdown check raises the NOTIFICATION instead of closing silently."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgpd.exabgp import launch, teardown

launch.apply()


class FakeRIB:
    """A neighbor's RIB: whether it was taken out of ExaBGP's RIB cache (`RIB.uncache`)."""

    def __init__(self) -> None:
        self.uncached = False

    def uncache(self) -> None:
        self.uncached = True


class FakeNeighbor(dict[str, Any]):
    """ExaBGP's Neighbor: a mapping of settings, with its RIB."""

    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__(settings)
        self.rib = FakeRIB()


class FakePeer:
    """What the wrapped methods touch of an ExaBGP `Peer`."""

    def __init__(self, graceful_restart: object) -> None:
        self.neighbor = FakeNeighbor({"capability": {"graceful-restart": graceful_restart}})
        self._teardown: object = None
        self._restart: object = True
        self.seen: list[object] = []


def steps(actions: list[object], fail_at: int | None) -> Any:
    """An original `_main`: yields `actions`, recording the capability it reads at each step."""

    def original(peer: FakePeer) -> Iterator[object]:
        for i, action in enumerate(actions):
            peer.seen.append(peer.neighbor["capability"]["graceful-restart"])
            if i == fail_at:
                raise RuntimeError(f"step {i}")
            yield action

    return original


def run(gen: Iterator[object]) -> tuple[list[object], str | None]:
    out: list[object] = []
    try:
        for action in gen:
            out.append(action)
    except RuntimeError as exc:
        return out, str(exc)
    return out, None


@given(
    actions=st.lists(st.sampled_from([True, None, False]), max_size=8),
    fail=st.none() | st.integers(0, 8),
    capability=st.sampled_from([True, False, 120]),
)
def test_without_teardown_main_is_the_original(
    actions: list[object], fail: int | None, capability: object
) -> None:
    original = steps(actions, fail)
    plain, wrapped = FakePeer(capability), FakePeer(capability)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(teardown, "_original_main", original)
        assert run(teardown._main(wrapped)) == run(original(plain))
    assert wrapped.seen == plain.seen == [capability] * len(plain.seen)
    assert wrapped.neighbor == plain.neighbor


def test_after_an_api_teardown_the_steps_read_graceful_restart_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(teardown, "_original_main", steps([True, None, True], None))

    def original_teardown(peer: FakePeer, code: int, restart: bool) -> None:
        peer.__dict__.update(_teardown=code, _restart=restart)

    monkeypatch.setattr(teardown, "_original_teardown", original_teardown)
    peer = FakePeer(120)
    gen = teardown._main(peer)
    assert next(gen) is True
    teardown._teardown(peer, 1)
    assert peer._teardown == 1 and peer._restart is False  # the peer leaves ExaBGP after its NOTIFICATION
    assert peer.neighbor.rib.uncached  # and its Adj-RIB-Out is not handed to a neighbor of the same name
    assert peer.neighbor["capability"]["graceful-restart"] == 120  # between steps: untouched
    assert list(gen) == [None, True]
    assert peer.seen == [120, False, False]
    assert peer.neighbor["capability"]["graceful-restart"] == 120
    # the session's end clears the mark: the next session's steps read the capability again
    again = FakePeer(120)
    again.__dict__.update(peer.__dict__, seen=[])
    list(teardown._main(again))
    assert again.seen == [120, 120, 120]


def test_it_is_installed_on_exabgps_peer() -> None:
    from exabgp.reactor.peer import Peer

    assert Peer._main is teardown._main and Peer.teardown is teardown._teardown
    assert Peer.remove is teardown._remove
    originals = {
        "_main": teardown._original_main,
        "teardown": teardown._original_teardown,
        "remove": teardown._original_remove,
    }
    teardown.check(type("Original", (), originals))


def test_another_exabgp_is_refused() -> None:
    class Other:
        def _main(self) -> Iterator[None]:  # closes without looking at graceful restart
            yield None

        def teardown(self, code: int, restart: bool = True) -> None:
            self._teardown = code

    with pytest.raises(AssertionError, match="unexpected ExaBGP version"):
        teardown.check(Other)


def test_a_removed_established_session_is_torn_down_with_cease_3(monkeypatch: pytest.MonkeyPatch) -> None:
    from exabgp.bgp.fsm import FSM

    removed: list[FakePeer] = []

    def original_teardown(peer: FakePeer, code: int, restart: bool) -> None:
        peer.__dict__.update(_teardown=code, _restart=restart)

    monkeypatch.setattr(teardown, "_original_teardown", original_teardown)
    monkeypatch.setattr(teardown, "_original_remove", removed.append)
    established = FakePeer(120)
    established.__dict__.update(fsm=FSM.ESTABLISHED, proto=object(), generator=iter(()))
    teardown._remove(established)
    assert (established._teardown, established._restart, removed) == (3, False, [])
    assert established.neighbor.rib.uncached
    assert getattr(established, teardown._MARK) is True
    # not Established (connecting, OPEN exchanged, idle): removed as ExaBGP removes it
    for state in (FSM.IDLE, FSM.CONNECT, FSM.ACTIVE, FSM.OPENSENT, FSM.OPENCONFIRM):
        other = FakePeer(120)
        other.__dict__.update(fsm=state, proto=object(), generator=iter(()))
        teardown._remove(other)
        assert removed[-1] is other and other._teardown is None
