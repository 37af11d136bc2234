"""The liveness decision for ExaBGP's API channel (`bgpd.exabgp.liveness`) on a hand-moved clock, and the
supervisor's look into the pipe that keeps a slow bgpd from calling a live ExaBGP hung."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgpd.exabgp import liveness, supervisor
from bgpd.exabgp.liveness import Hung, Liveness

ANSWER = "exabgp 5.0.15\n"  # what ExaBGP 5.0.15 answers to `version`


class Channel:
    """Drives a Liveness the way the supervisor does: one check per second, probes when due."""

    def __init__(self, interval: float = 2.0, deadline: float = 15.0) -> None:
        self.now = 100.0
        self.alive = Liveness(self.now, interval, deadline)
        self.sent: list[float] = []

    def check(self, waiting: bool = False) -> Hung | None:
        verdict = self.alive.hung(self.now, waiting)
        if verdict is None and self.alive.probe_due(self.now):
            self.alive.probe_sent(self.now)
            self.sent.append(self.now)
        return verdict

    def run(self, seconds: int, waiting: bool = False) -> Hung | None:
        """Check once a second for `seconds`; the first verdict, if any."""
        for _ in range(seconds):
            verdict = self.check(waiting)
            if verdict is not None:
                return verdict
            self.now += 1.0
        return None


def test_a_probe_is_sent_at_once_and_then_every_interval() -> None:
    ch = Channel(interval=2.0)
    ch.run(7)
    assert ch.sent == [100.0, 102.0, 104.0, 106.0]


def test_an_answering_exabgp_is_never_hung() -> None:
    ch = Channel()
    for _ in range(100):
        assert ch.check() is None
        if ch.sent and ch.sent[-1] == ch.now:
            ch.now += 0.01
            assert ch.alive.heard(ch.now, ANSWER) == pytest.approx(0.01)
        ch.now += 1.0
    assert ch.alive.round_trip_max == pytest.approx(0.01)


def test_silence_after_a_probe_is_hung_after_the_deadline_not_before() -> None:
    ch = Channel(interval=2.0, deadline=15.0)
    ch.alive.heard(ch.now, ANSWER)  # nothing in flight: not a probe's answer
    assert ch.run(15) is None  # probe at 100 unanswered: 14 s waited at the 15th check
    verdict = ch.check()
    assert verdict == Hung(probe_waited=15.0, silent=15.0)


def test_silence_counts_from_the_first_probe_after_the_last_line() -> None:
    ch = Channel(interval=2.0, deadline=15.0)
    ch.run(10)  # probes at 100..108, none answered
    ch.alive.heard(ch.now, "done\n")  # at 110: a line, whatever it is, is a sign of life
    heard_at = ch.now
    verdict = ch.run(30)
    assert verdict is not None
    assert ch.now == heard_at + 15.0  # the first probe after the line went out at 110 (one was due)
    assert verdict.probe_waited == 15.0 and verdict.silent == 15.0


def test_a_busy_exabgp_sending_events_is_not_hung() -> None:
    """A receiving ExaBGP prints 100,000 routes while the probes wait: each event is a line."""
    ch = Channel(deadline=15.0)
    for _ in range(60):
        assert ch.check() is None
        ch.alive.heard(ch.now + 0.5, '{"type": "update"}\n')
        ch.now += 1.0
    assert ch.alive.round_trip_max == 0.0  # no probe answered yet: they wait behind the work


def test_a_busy_exabgp_reading_its_commands_is_not_hung_until_it_stops_reading() -> None:
    """A sending ExaBGP works through bgpd's queued announce commands (acks off: it says nothing): each
    command it reads is progress; once it reads nothing more for the deadline after a probe, it is hung."""
    ch = Channel(deadline=15.0)
    total = 0
    for _ in range(60):
        total += 7_000  # about one `announce attributes ... nlri` command of 500 /32s
        ch.alive.consumed(total)
        assert ch.check() is None
        ch.now += 1.0
    ch.alive.consumed(total)  # the same count again: no progress
    stalled_at = ch.now
    verdict = ch.run(60)
    assert verdict is not None and ch.now == stalled_at + 15.0
    assert verdict.silent == ch.now - 100.0  # not one line since it attached


def test_unread_bytes_in_the_pipe_are_a_sign_of_life() -> None:
    """bgpd's own loop was late: ExaBGP's lines wait unread in the pipe, ExaBGP is not to blame."""
    ch = Channel(deadline=15.0)
    assert ch.run(60, waiting=True) is None
    assert ch.check(waiting=False) is not None


def test_a_silent_exabgp_gets_no_verdict_until_probed() -> None:
    """Silence alone is no verdict: only an unanswered probe is (and one is sent on the first check)."""
    alive = Liveness(0.0, interval=2.0, deadline=15.0)
    assert alive.hung(1000.0, False) is None
    alive.probe_sent(1000.0)
    assert alive.hung(1014.9, False) is None
    assert alive.hung(1015.0, False) == Hung(probe_waited=15.0, silent=1015.0)


def test_probe_answers_time_the_probes_in_order() -> None:
    alive = Liveness(0.0, interval=1.0, deadline=15.0)
    for t in (1.0, 2.0, 3.0):
        alive.probe_sent(t)
    assert alive.heard(3.5, "done\n") is None  # an ack: no round trip, but a sign of life
    assert alive.heard(4.0, ANSWER) == 3.0
    assert alive.heard(4.5, ANSWER) == 2.5
    assert alive.heard(5.0, ANSWER) == 2.0
    assert alive.heard(6.0, ANSWER) is None  # nothing in flight: not taken for an answer
    assert alive.round_trip_max == 3.0


def test_the_answer_is_not_an_event_bgpd_decodes() -> None:
    from bgpd.exabgp import codec

    assert codec.decode(ANSWER) is None
    assert ANSWER.startswith(liveness.PROBE_ANSWER_PREFIX)
    assert not liveness.PROBE_ANSWER_PREFIX.startswith(("{", "done", "error"))


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Liveness(0.0, interval=0.0)
    with pytest.raises(ValueError):
        Liveness(0.0, deadline=-1.0)


@given(
    steps=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=40.0), st.sampled_from(["line", "read", "nothing"])),
        min_size=1,
        max_size=50,
    ),
    deadline=st.floats(min_value=1.0, max_value=30.0),
)
def test_hung_exactly_when_a_probe_waited_the_deadline_with_no_progress(
    steps: list[tuple[float, str]], deadline: float
) -> None:
    """Against a model: after each gap, a line from ExaBGP, command bytes it read, or a look at the pipe
    that finds nothing read since (no progress); checks once a second in between."""
    alive = Liveness(0.0, interval=2.0, deadline=deadline)
    now, last_line, first_probe, consumed = 0.0, 0.0, None, 0
    for gap, kind in steps:
        end = now + gap
        while now + 1.0 <= end:
            now += 1.0
            verdict = alive.hung(now, False)
            expected = first_probe is not None and now - first_probe >= deadline
            assert (verdict is not None) == expected
            if verdict is not None:
                assert first_probe is not None
                assert verdict.silent == now - last_line and verdict.probe_waited == now - first_probe
                return
            if alive.probe_due(now):
                alive.probe_sent(now)
                first_probe = now if first_probe is None else first_probe
        now = end
        if kind == "line":
            alive.heard(now, "done\n")
            last_line, first_probe = now, None
        elif kind == "read":
            consumed += 100
            alive.consumed(consumed)
            first_probe = None
        else:
            alive.consumed(consumed)


def test_unread_sees_bytes_waiting_in_a_pipe() -> None:
    r, w = os.pipe()
    try:
        assert not supervisor._unread(r)
        os.write(w, b"done\n")
        assert supervisor._unread(r)
        os.read(r, 16)
        assert not supervisor._unread(r)
    finally:
        os.close(r)
        os.close(w)
    assert not supervisor._unread(r)  # a closed descriptor: cannot be asked, no sign of life
