"""Change 16 to ExaBGP 5.0.15 (installed by `bgpd.exabgp.launch.apply`): the reactor's poll set forgets a
descriptor the kernel reports as not open (POLLNVAL), so a closed connection no longer slows every later
pass of the reactor to one per 100 ms.

The reactor (`Reactor.run`) registers a peer's socket in its `select.poll` set whenever the peer has no
work (`ACTION.LATER`) and never unregisters it: when that connection is closed (a collision of two
sessions (RFC 4271 §6.8) closes the losing one; a reset or a flap closes the session's), its descriptor
number stays in the set. Unless a later socket happens to get the same number, every `poll()` then
returns at once with POLLNVAL for it, and `Reactor._wait_for_io` calls `_prevent_spin`, which sleeps
`reactor.speed / 100` seconds (100 ms with bgpd's speed of 10) on every pass beyond the tenth of each
second. From then on the reactor runs about ten passes a second: a route took 100-300 ms from one host's
kernel to the other's (two hosts that list each other in `bgp.peers`, so both connect and one
connection loses the collision, seen in 2 of 3 starts), against 2-4 ms when the same session was set up
without a collision. It waits rather than works, so idle CPU stayed low.

The reactor's poll set is wrapped (`ForgetfulPoll`): `poll()` returns exactly what `select.poll.poll`
returns (the reactor acts on it as before, including one `_prevent_spin` for the pass that sees it), and
unregisters each descriptor it reported with POLLNVAL. A descriptor is only ever reported POLLNVAL when it
is not open, and a socket opened later under the same number is registered again by its peer's next
`ACTION.LATER` (`register` is unchanged). The reactor unregisters API pipes itself when ExaBGP's helper
process goes (`processes.fds` changes); unregistering one that `poll()` already forgot is a no-op instead
of the KeyError `select.poll.unregister` raises for a descriptor it does not hold.
(tests/unit/test_exabgp_poller.py compares it with `select.poll` over random sequences of real pipes
opened, closed, registered and unregistered.)
"""

from __future__ import annotations

import inspect
import select
from typing import Any

_original_init: Any = None


class ForgetfulPoll:
    """`select.poll` that unregisters a descriptor once `poll()` has reported it POLLNVAL (not open).

    Same methods and results as `select.poll` (`register(fd, eventmask)`, `modify`, `unregister`,
    `poll(timeout_ms)` -> [(fd, revents)]); `unregister` of a descriptor `poll` dropped is a no-op."""

    __slots__ = ("_dropped", "_poll")

    def __init__(self, poll: Any | None = None) -> None:
        self._poll = poll if poll is not None else select.poll()
        self._dropped: set[int] = set()

    def register(self, fd: Any, eventmask: int = select.POLLIN | select.POLLPRI | select.POLLOUT) -> None:
        self._dropped.discard(fd if isinstance(fd, int) else fd.fileno())
        self._poll.register(fd, eventmask)

    def modify(self, fd: Any, eventmask: int) -> None:
        self._poll.modify(fd, eventmask)

    def unregister(self, fd: Any) -> None:
        number = fd if isinstance(fd, int) else fd.fileno()
        if number in self._dropped:
            self._dropped.discard(number)
            return
        self._poll.unregister(fd)

    def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
        events: list[tuple[int, int]] = self._poll.poll(timeout)
        for fd, revents in events:
            if revents & select.POLLNVAL:
                self._poll.unregister(fd)
                self._dropped.add(fd)
        return events


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    self._poller = ForgetfulPoll(self._poller)


def check(reactor: Any) -> None:
    """What change 16 relies on in ExaBGP 5.0.15's `Reactor` (AssertionError for another version)."""
    init = inspect.getsource(original_init(reactor))
    assert "self._poller = select.poll()" in init, "unexpected ExaBGP version"
    # `_wait_for_io` (wrapped by change 3, so read in the module's source): one poll, POLLNVAL -> spin
    module = inspect.getsource(inspect.getmodule(reactor))  # type: ignore[arg-type]
    assert module.count("self._poller.poll(sleeptime)") == 1, "unexpected ExaBGP version"
    assert "elif event & select.POLLHUP or event & select.POLLERR or event & select.POLLNVAL:" in module
    assert "spin_prevention = True" in module, "unexpected ExaBGP version"
    run = inspect.getsource(reactor.run)
    # the reactor's own uses of the set: register (peers, API pipes), unregister (-1 workers, API pipes)
    assert run.count("self._poller.register(") == 2, "unexpected ExaBGP version"
    assert run.count("self._poller.unregister(") == 2, "unexpected ExaBGP version"
    assert "self._poller" not in inspect.getsource(reactor.restart), "unexpected ExaBGP version"


def original_init(reactor: Any) -> Any:
    """`Reactor.__init__` as ExaBGP wrote it, whether change 16 is installed or not."""
    return _original_init if reactor.__init__ is _init else reactor.__init__


def apply() -> None:
    """Install change 16 (idempotent)."""
    global _original_init
    from exabgp.reactor.loop import Reactor

    if _original_init is not None:
        return
    check(Reactor)
    _original_init = Reactor.__init__
    Reactor.__init__ = _init
