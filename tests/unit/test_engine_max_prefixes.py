"""Maximum prefixes per peer and the "cannot be established" reason, through the engine with plain objects
(issue 14): what is counted (every prefix the peer announces now, before import policy, stale ones kept
through its graceful restart included), one warning per crossing with `warn`, with `restart` the
NOTIFICATION Cease / 1, the routes gone at once, the hold-down and its end, a held session that comes back
closed again, a reload that changes only the limit without a reset; the reason of a session that does not
reach Established in time, from its config or from the last NOTIFICATION. A model-based property test
checks the count and the crossings against any sequence of announcements, withdrawals and resets.
BIRD on the other side: tests/e2e/test_max_prefixes.py and tests/e2e/test_peer_reason.py."""

from __future__ import annotations

import logging
from dataclasses import replace
from ipaddress import IPv4Address

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bgpd import config
from bgpd.engine import HoldDown, Teardown
from bgpd.engine.core import HELD_DOWN
from bgpd.engine.establish import CANNOT, MD5_CAUSE, NO_TCP_CAUSE, POSSIBLE
from bgpd.engine.limits import HOLD_TIMER, REJOIN_TIMER, TEARDOWN_TIMER
from bgpd.exabgp import codec
from bgpd.model import Attributes, KernelRoute, Prefix, RouteAdded
from tests.unit.conftest import FAM4, Harness, address, prefix

TOR = address("192.168.100.1")
TOR_AS = 65001
MESH = address("192.168.100.10")


def text(limit: str = "max_prefixes: 3", peer_extra: str = "", hold: int = 90) -> str:
    return (
        "node: {name: h, address: 192.168.100.3, asn: 64512}\n"
        f"bgp:\n  hold_time: {hold}\n  peers:\n"
        f"    - {{address: 192.168.100.1, asn: {TOR_AS}, {limit}{', ' if peer_extra else ''}{peer_extra}}}\n"
        "pools: [{cidr: 10.20.0.0/16}]\n"
    )


OURS_TEXT = "10.20.9.0/26"  # this node's own block


def started(cfg_text: str) -> Harness:
    h = Harness(config.parse(cfg_text), FAM4)
    h.start()
    h.kernel(RouteAdded(KernelRoute(prefix(OURS_TEXT), "blackhole", 80, 254, None, (), 0)))
    up(h)
    h.feed(codec.EndOfRib(TOR, 4))
    h.settle()
    h.engine.take_session_ops()
    return h


def up(h: Harness, restart_time: int | None = None) -> None:
    h.feed(
        codec.PeerOpen(TOR, TOR_AS, IPv4Address("10.0.0.1"), 90, restart_time, restart_time is not None),
        codec.PeerState(TOR, TOR_AS, "up"),
    )


def announce(h: Harness, *prefixes: Prefix) -> None:
    attrs = Attributes(as_path=(TOR_AS,))
    h.feed(codec.Update(TOR, TOR_AS, tuple(codec.Announced(p, TOR, attrs) for p in prefixes)))


def withdraw(h: Harness, *prefixes: Prefix) -> None:
    h.feed(codec.Update(TOR, TOR_AS, (), tuple(prefixes)))


def down(h: Harness, reason: str = "") -> None:
    h.feed(codec.PeerState(TOR, TOR_AS, "down", reason))


def blocks(*i: int) -> list[Prefix]:
    return [prefix(f"10.20.{n}.0/26") for n in i]


def warnings(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == message and r.levelno == logging.WARNING]


# ---------------------------------------------------------------- what is counted, warn


def test_warn_logs_once_per_crossing_and_keeps_the_session(caplog: pytest.LogCaptureFixture) -> None:
    h = started(text("max_prefixes: 3, max_prefixes_action: warn"))
    status = h.engine.peers[TOR]
    announce(h, *blocks(1, 2, 3))
    assert (h.engine.prefix_count(TOR), status.limit_hits) == (3, 0)  # the limit itself is allowed
    with caplog.at_level(logging.WARNING, "bgpd.engine"):
        announce(h, *blocks(4))
        announce(h, *blocks(5))  # still above: the same crossing
        announce(h, *blocks(4))  # a replacement counts once
    assert len(warnings(caplog, "maximum prefixes exceeded")) == 1
    assert (h.engine.prefix_count(TOR), status.limit_hits, status.state) == (5, 1, "up")
    assert set(blocks(1, 2, 3, 4, 5)) <= set(h.engine.fib.wanted)  # warn only: every route used
    assert h.engine.take_session_ops() == []
    withdraw(h, *blocks(4, 5))  # back at the limit: the next crossing is a new one
    with caplog.at_level(logging.WARNING, "bgpd.engine"):
        announce(h, *blocks(6))
    assert status.limit_hits == 2
    assert len(warnings(caplog, "maximum prefixes exceeded")) == 2


def test_prefixes_rejected_by_import_are_counted() -> None:
    """BIRD's `receive limit`: before import filters. 172.16/16 is in no pool (rejected, not installed)."""
    h = started(text("max_prefixes: 3, max_prefixes_action: warn"))
    outside = [prefix("172.16.1.0/24"), prefix("172.16.2.0/24")]
    announce(h, *blocks(1), *outside)
    assert h.engine.peers[TOR].rejected == {"not_in_pool": 2}
    assert h.engine.prefix_count(TOR) == 3
    announce(h, *blocks(2))
    assert h.engine.peers[TOR].limit_hits == 1
    withdraw(h, *outside)
    assert h.engine.prefix_count(TOR) == 2
    announce(h, outside[0], outside[0])  # the same prefix twice is one prefix
    assert h.engine.prefix_count(TOR) == 3


def test_stale_paths_of_a_graceful_restart_are_counted_until_dropped() -> None:
    h = started(text("max_prefixes: 3, max_prefixes_action: warn"))
    up(h, restart_time=120)  # (state unchanged: only its OPEN with graceful restart)
    announce(h, *blocks(1, 2))
    down(h)  # no NOTIFICATION: graceful restart, its paths kept
    assert h.engine.stale_count(TOR) == 2
    assert h.engine.prefix_count(TOR) == 2
    up(h, restart_time=120)
    announce(h, *blocks(2, 3))  # 2 re-sent, 3 new: 1 still stale
    assert h.engine.prefix_count(TOR) == 3
    h.feed(codec.EndOfRib(TOR, 4))  # 1 was not re-sent: it goes
    assert h.engine.prefix_count(TOR) == 2


# ---------------------------------------------------------------- restart and the hold-down


def test_restart_sends_cease_1_drops_the_routes_and_holds_the_session_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = started(text("max_prefixes: 3, max_prefixes_action: restart, restart_after: 30"))
    engine, status = h.engine, h.engine.peers[TOR]
    announce(h, *blocks(1, 2, 3))
    h.settle()
    assert set(blocks(1, 2, 3)) <= set(engine.fib.installed)
    with caplog.at_level(logging.WARNING, "bgpd.engine"):
        announce(h, *blocks(4))
    assert len(warnings(caplog, "maximum prefixes exceeded; closing the session and holding it down")) == 1
    assert engine.take_session_ops() == [Teardown(TOR, 1)]  # Cease / Maximum Number of Prefixes Reached
    assert (status.state, status.limit_hits, status.flaps) == (HELD_DOWN, 1, 1)
    assert status.held_until is not None and status.reason is not None
    assert "held down for 30 s" in status.reason and "more than 3 prefixes" in status.reason
    assert status.last_error == "NOTIFICATION sent: Cease / Maximum Number of Prefixes Reached (6/1)"
    assert h.timers.armed[(HOLD_TIMER, TOR)] == 30
    # its routes go at once, without graceful restart
    assert engine.prefix_count(TOR) == 0 and engine.stale_count(TOR) == 0
    deleted = {p for p, hops in h.settle() if hops is None}
    assert deleted == set(blocks(1, 2, 3))
    # UPDATEs still in flight are refused
    announce(h, *blocks(5))
    assert engine.prefix_count(TOR) == 0 and status.limit_hits == 1
    # ExaBGP reports the session down: now leave it out of ExaBGP
    down(h, "notification sent (6,1)")
    assert engine.take_session_ops() == [HoldDown(frozenset({TOR}))]
    assert TEARDOWN_TIMER not in {k[0] for k in h.timers.armed if isinstance(k, tuple)}
    assert engine.held_down == {TOR} and status.state == HELD_DOWN
    # the hold-down ends: back in ExaBGP's neighbor set, a fresh establish deadline
    h.fire((HOLD_TIMER, TOR))
    assert engine.take_session_ops() == [HoldDown(frozenset())]
    released = engine.peers[TOR]
    assert (released.state, released.held_until, released.reason) == ("idle", None, None)
    assert ("establish", TOR) in h.timers.armed
    assert (REJOIN_TIMER, TOR) in h.timers.armed
    h.sent.clear()
    up(h)  # ExaBGP has it again: no more asking
    assert (REJOIN_TIMER, TOR) not in h.timers.armed
    # ExaBGP took it back with an empty Adj-RIB-Out: our table goes again, before our End-of-RIB
    lines = h.lines_to(TOR)
    assert any(OURS_TEXT in line and " announce " in line for line in lines), lines
    assert " eor " in lines[-1]
    announce(h, *blocks(1, 2))
    assert engine.prefix_count(TOR) == 2 and status.state == "up"


def test_a_held_session_that_comes_back_is_closed_again_and_its_removal_asked_again() -> None:
    """ExaBGP drops a reload while routes are queued: the held neighbor may still be there."""
    h = started(text("max_prefixes: 1, restart_after: 60"))
    announce(h, *blocks(1, 2))
    down(h, "notification sent (6,1)")
    h.engine.take_session_ops()
    h.feed(codec.PeerState(TOR, TOR_AS, "connected"))
    assert h.engine.take_session_ops() == [HoldDown(frozenset({TOR}))]
    up(h)
    assert h.engine.take_session_ops() == [
        Teardown(TOR, 5),
        HoldDown(frozenset({TOR})),
    ]  # Connection Rejected
    announce(h, *blocks(3))
    assert h.engine.prefix_count(TOR) == 0 and h.engine.peers[TOR].state == HELD_DOWN


def test_no_down_reported_after_the_teardown_still_holds_it_down() -> None:
    h = started(text("max_prefixes: 1"))
    announce(h, *blocks(1, 2))
    assert h.engine.take_session_ops() == [Teardown(TOR, 1)]
    h.fire((TEARDOWN_TIMER, TOR))
    assert h.engine.take_session_ops() == [HoldDown(frozenset({TOR}))]


def test_a_released_session_not_seen_again_is_asked_for_with_backoff() -> None:
    h = started(text("max_prefixes: 1, restart_after: 5"))
    announce(h, *blocks(1, 2))
    down(h, "notification sent (6,1)")
    h.engine.take_session_ops()
    h.fire((HOLD_TIMER, TOR))
    assert h.engine.take_session_ops() == [HoldDown(frozenset())]
    delays = []
    for _ in range(7):
        delays.append(h.timers.armed[(REJOIN_TIMER, TOR)])
        h.fire((REJOIN_TIMER, TOR))
        assert h.engine.take_session_ops() == [HoldDown(frozenset())]
    assert delays == [2, 4, 8, 16, 32, 60, 60]


def test_reload_changing_only_the_limit_resets_nothing() -> None:
    h = started(text("max_prefixes: 10"))
    announce(h, *blocks(1, 2, 3))
    added, removed, changed = h.engine.reconfigure(config.parse(text("max_prefixes: 5")))
    assert (added, removed, changed) == ([], [], [])
    limit = h.engine.peers[TOR].prefix_limit
    assert limit is not None and limit.maximum == 5
    assert h.engine.take_session_ops() == [] and h.engine.peers[TOR].state == "up"
    # a limit below what it sends now acts at once
    h.engine.reconfigure(config.parse(text("max_prefixes: 2")))
    assert h.engine.take_session_ops() == [Teardown(TOR, 1)]
    assert h.engine.peers[TOR].state == HELD_DOWN
    # no limit any more: released at once
    no_limit = config.parse(text("max_prefixes: null"))
    assert h.engine.reconfigure(no_limit) == ([], [], [])
    assert h.engine.take_session_ops() == [HoldDown(frozenset())]
    assert h.engine.peers[TOR].state == "idle" and h.engine.peers[TOR].prefix_limit is None


def test_a_removed_held_peer_leaves_the_held_set() -> None:
    h = started(text("max_prefixes: 1"))
    announce(h, *blocks(1, 2))
    h.engine.take_session_ops()
    cfg = config.parse(text("max_prefixes: 1"))
    h.engine.reconfigure(replace(cfg, bgp=replace(cfg.bgp, peers=())))
    assert h.engine.take_session_ops() == [HoldDown(frozenset())]
    assert not any(isinstance(k, tuple) and TOR in k for k in h.timers.armed)


# ---------------------------------------------------------------- "cannot be established"


def never_up(cfg_text: str) -> Harness:
    h = Harness(config.parse(cfg_text), FAM4)
    h.start()
    return h


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", NO_TCP_CAUSE),
        ("password: s3cret", f"no answer; {POSSIBLE}{MD5_CAUSE}"),
        (
            "ttl_security: 1",
            f"no answer; {POSSIBLE}the peer is more than 1 hop away or does not send TTL 255",
        ),
        (
            "password: s3cret, ttl_security: 2",
            f"no answer; {POSSIBLE}{MD5_CAUSE}; or the peer is more than 2",
        ),
    ],
)
def test_reason_from_the_config_when_nothing_came_back(
    extra: str, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    h = never_up(text("hold_time: 3", extra))  # bound: max(hold time 3, 2 x 5 s)
    assert h.timers.armed[("establish", TOR)] == 10
    assert h.engine.peers[TOR].reason is None
    with caplog.at_level(logging.WARNING, "bgpd.engine"):
        h.fire(("establish", TOR))
    reason = h.engine.peers[TOR].reason
    assert reason is not None and reason.startswith(f"{CANNOT}: {expected}")
    assert len(warnings(caplog, "session cannot be established")) == 1


def test_the_bound_is_the_hold_time_when_longer() -> None:
    h = never_up(text("hold_time: 90", ""))
    assert h.timers.armed[("establish", TOR)] == 90


def test_last_notification_is_the_reason_logged_once_and_cleared_when_established(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = never_up(text("hold_time: 3", "password: s3cret"))
    with caplog.at_level(logging.WARNING, "bgpd.engine"):
        for _ in range(3):  # every retry ends the same way: one line, not one per retry
            h.feed(codec.PeerState(TOR, TOR_AS, "connected"))
            down(h, "notification sent (2,2)")
        h.fire(("establish", TOR))
        for _ in range(3):
            h.feed(codec.PeerState(TOR, TOR_AS, "connected"))
            down(h, "notification sent (2,2)")
    status = h.engine.peers[TOR]
    # the NOTIFICATION, then what the password may hide after it (a key changed on the peer since)
    md5 = f"; {POSSIBLE}{MD5_CAUSE}"
    assert status.reason == f"{CANNOT}: NOTIFICATION sent: OPEN Message Error / Bad Peer AS (2/2){md5}"
    assert len(warnings(caplog, "session cannot be established")) == 1
    # the peer's own NOTIFICATION, later: the reason follows (one more line)
    with caplog.at_level(logging.WARNING, "bgpd.engine"):
        h.feed(codec.PeerState(TOR, TOR_AS, "connected"), codec.Notification(TOR, 4, 0))
        down(h, "notification received (4,0)")
    assert status.reason == f"{CANNOT}: NOTIFICATION received: Hold Timer Expired (4/0){md5}"
    assert len(warnings(caplog, "session cannot be established")) == 2
    up(h)
    assert status.reason is None and ("establish", TOR) not in h.timers.armed
    assert status.last_error == "NOTIFICATION received: Hold Timer Expired (4/0)"  # kept, as BIRD's
    # down again: a new deadline, and no reason before it passes
    down(h, "closing connection")
    assert status.reason is None and ("establish", TOR) in h.timers.armed


def test_established_in_time_gets_no_reason() -> None:
    h = never_up(text("hold_time: 3"))
    up(h)
    assert ("establish", TOR) not in h.timers.armed
    assert h.engine.peers[TOR].reason is None


# ---------------------------------------------------------------- the count against a model

IN_POOL = blocks(1, 2, 3, 4, 5)
OUTSIDE = [prefix("172.16.1.0/24"), prefix("172.16.2.0/24")]  # rejected by import
MAXIMUM = 3

steps = st.lists(
    st.one_of(
        st.tuples(st.just("announce"), st.lists(st.sampled_from(IN_POOL + OUTSIDE), max_size=4)),
        st.tuples(st.just("withdraw"), st.lists(st.sampled_from(IN_POOL + OUTSIDE), max_size=4)),
        st.tuples(st.sampled_from(["down", "graceful_down", "up", "eor"]), st.just([])),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(steps)
@example([("announce", IN_POOL[:1]), ("graceful_down", []), ("up", []), ("graceful_down", [])])
@example(
    [
        ("announce", IN_POOL[:1]),
        ("graceful_down", []),
        ("up", []),
        ("announce", IN_POOL[1:4]),
        ("graceful_down", []),
        ("up", []),
        ("announce", IN_POOL[:1]),
    ]
)
def test_count_and_crossings_follow_any_sequence(sequence: list[tuple[str, list[Prefix]]]) -> None:
    """Model: the prefixes announced in the current session (any, accepted or not) plus the accepted ones
    kept stale through a graceful restart and not re-sent; a crossing each time the count, checked after
    an UPDATE, goes above the maximum (`warn`, so nothing resets the session)."""
    h = started(text(f"max_prefixes: {MAXIMUM}, max_prefixes_action: warn"))
    up(h, restart_time=120)
    current: set[Prefix] = set()
    stale: set[Prefix] = set()
    is_up, over, hits = True, False, 0
    for op, prefixes in sequence:
        if op == "announce" and is_up:
            announce(h, *prefixes)
            current |= set(prefixes)
            stale -= set(prefixes)
        elif op == "withdraw" and is_up:
            withdraw(h, *prefixes)
            current -= set(prefixes)
            stale -= set(prefixes)
        elif op in ("down", "graceful_down") and is_up:
            if op == "graceful_down":
                down(h)
                # RFC 4724 §4.2: down again before End-of-RIB, the paths already stale are removed; when
                # some were, the count is looked at again (back under the limit: the next crossing counts)
                dropped = bool(stale)
                stale = {p for p in current if p in IN_POOL}
                if dropped:
                    over = over and len(stale) > MAXIMUM
            else:
                down(h, "notification received (6,2)")
                stale.clear()
                over = False
            current.clear()
            is_up = False
            continue
        elif op == "up" and not is_up:
            up(h, restart_time=120)
            is_up = True
            continue
        elif op == "eor" and is_up:
            h.feed(codec.EndOfRib(TOR, 4))
            stale.clear()
            over = over and len(current) > MAXIMUM
            continue
        else:
            continue
        count = len(current | stale)
        if count > MAXIMUM and not over:
            hits += 1
        over = count > MAXIMUM
        assert h.engine.prefix_count(TOR) == count
        assert h.engine.peers[TOR].limit_hits == hits
    assert h.engine.prefix_count(TOR) == len(current | stale)
    assert h.engine.take_session_ops() == []


def test_a_connection_closed_without_notification_leaves_the_config_causes() -> None:
    """ExaBGP reports a connect to an unreachable address as "connected" then "down" (it reads SO_ERROR
    twice): only a NOTIFICATION is evidence of what went wrong."""
    h = never_up(text("hold_time: 3", "password: s3cret"))
    h.feed(codec.PeerState(TOR, TOR_AS, "connected"))
    down(h, "closing connection")
    h.fire(("establish", TOR))
    assert h.engine.peers[TOR].reason == f"{CANNOT}: no answer; {POSSIBLE}{MD5_CAUSE}"
    assert h.engine.peers[TOR].last_error is None
