"""Change 16 (`bgpd.exabgp.poller`): the reactor's poll set forgets a descriptor once it was reported
POLLNVAL, and otherwise answers exactly as `select.poll` (hypothesis over real pipes opened, closed,
registered, unregistered and polled); a reactor whose poll set holds a closed connection's descriptor
no longer sleeps on every pass; the check of the source it relies on passes on the installed ExaBGP and
refuses another version."""

from __future__ import annotations

import os
import select
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.exabgp import launch, poller
from tests.unit.conftest import source_changed

launch.apply()
poller.apply()

MASK = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLNVAL | select.POLLERR

Op = tuple[str, int]
ops = st.lists(
    st.tuples(
        st.sampled_from(["open", "close", "register", "unregister", "write", "poll"]), st.integers(0, 5)
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_poll_answers_as_select_poll_but_forgets_closed_descriptors(sequence: list[Op]) -> None:
    original, patched = select.poll(), poller.ForgetfulPoll()
    pipes: list[tuple[int, int]] = []  # (read end, write end), in the order opened
    open_fds: set[int] = set()
    registered: set[int] = set()  # in the original set (it never forgets)
    forgotten: set[int] = set()  # the model: registered in the original, dropped by the patched one
    try:
        for op, index in sequence:
            if op == "open":
                r, w = os.pipe()
                pipes.append((r, w))
                open_fds |= {r, w}
                continue
            if not pipes:
                continue
            r, w = pipes[index % len(pipes)]
            if op == "close":
                for fd in (r, w):
                    if fd in open_fds:
                        os.close(fd)
                        open_fds.discard(fd)
            elif op == "write":
                if w in open_fds and r in open_fds:
                    os.write(w, b"x")
            elif op == "register":
                if r in open_fds:  # the reactor registers open sockets only
                    original.register(r, MASK)
                    patched.register(r, MASK)
                    registered.add(r)
                    forgotten.discard(r)
            elif op == "unregister":
                if r in forgotten:
                    patched.unregister(r)  # a no-op, where select.poll would raise KeyError
                    forgotten.discard(r)
                    original.unregister(r)
                    registered.discard(r)
                elif r in registered:
                    original.unregister(r)
                    patched.unregister(r)
                    registered.discard(r)
                else:
                    with pytest.raises(KeyError):
                        original.unregister(r)
                    with pytest.raises(KeyError):
                        patched.unregister(r)
            else:
                expected = sorted((fd, ev) for fd, ev in original.poll(0) if fd not in forgotten)
                got = sorted(patched.poll(0))
                assert got == expected
                dropped = {fd for fd, ev in got if ev & select.POLLNVAL}
                assert not dropped & open_fds  # only closed descriptors are dropped
                forgotten |= dropped  # a number opened again later is not polled until registered again
    finally:
        for fd in open_fds:
            os.close(fd)


def _reactor(monkeypatch: pytest.MonkeyPatch) -> Any:
    from exabgp.reactor.loop import Reactor

    monkeypatch.chdir(os.getcwd())  # ExaBGP's Daemon() moves to /: back where the test was, after it
    reactor = Reactor(None)
    reactor.max_loop_time = 10  # bgpd's exabgp_reactor_speed
    reactor._sleep_time = 0.1
    return reactor


def _passes_that_sleep(reactor: Any, monkeypatch: pytest.MonkeyPatch, passes: int) -> int:
    """Run `passes` reactor waits with a closed connection's descriptor in the set; how many slept."""
    from exabgp.reactor import loop

    slept: list[float] = []
    monkeypatch.setattr(loop.time, "sleep", slept.append)
    r, w = os.pipe()
    reactor._poller.register(r, MASK)
    os.close(r)
    os.close(w)
    for _ in range(passes):
        assert list(reactor._wait_for_io(0)) == []
    return len(slept)


def test_a_closed_connection_no_longer_slows_every_reactor_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    reactor = _reactor(monkeypatch)
    assert isinstance(reactor._poller, poller.ForgetfulPoll)
    assert _passes_that_sleep(reactor, monkeypatch, 40) == 0


def test_the_unpatched_reactor_sleeps_on_every_pass_after_the_tenth(monkeypatch: pytest.MonkeyPatch) -> None:
    """What change 16 removes, shown on the original poll set (so the test above could fail)."""
    reactor = _reactor(monkeypatch)
    reactor._poller = select.poll()
    assert _passes_that_sleep(reactor, monkeypatch, 40) >= 20  # 30, unless a second boundary is crossed


def test_change_16_is_installed() -> None:
    from exabgp.reactor.loop import Reactor

    assert Reactor.__init__ is poller._init
    poller.check(Reactor)


@pytest.mark.parametrize(
    ("method", "old", "new"),
    [
        ("__init__", "self._poller = select.poll()", "self._poller = select.epoll()"),
        ("module", "self._poller.poll(sleeptime)", "self._poller.poll(sleeptime, 1)"),
        ("module", "spin_prevention = True", "spin_prevention = False"),
        ("run", "self._poller.unregister(", "self._poller.forget("),
    ],
)
def test_change_16_refuses_another_exabgp(
    monkeypatch: pytest.MonkeyPatch, method: str, old: str, new: str
) -> None:
    import inspect

    from exabgp.reactor.loop import Reactor

    if method == "module":
        function: Any = inspect.getmodule(Reactor)
    elif method == "__init__":
        function = poller.original_init(Reactor)
    else:
        function = getattr(Reactor, method)
    source_changed(monkeypatch, function, old, new)
    with pytest.raises(AssertionError, match="unexpected ExaBGP version"):
        poller.check(Reactor)
