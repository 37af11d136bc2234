"""The three changes `bgpd.exabgp.launch` makes to ExaBGP's reactor keep its behaviour: checked against
the unpatched functions on the same inputs."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("exabgp")

from exabgp.bgp.neighbor import Neighbor
from exabgp.reactor.asynchronous import ASYNC
from exabgp.reactor.loop import Reactor

from bgpd.exabgp import launch

launch.apply()
from exabgp.environment import getenv  # noqa: E402
from exabgp.logger import log as exabgp_log  # noqa: E402

exabgp_log.init(getenv())  # error paths log through ExaBGP's logger
ORIGINAL_REMOVE_SELF = launch._original_remove_self
ORIGINAL_ASYNC_RUN = launch._original_async_run


class _NextHop:
    def __init__(self, is_self: bool) -> None:
        self.SELF = is_self


class _Change:
    def __init__(self, is_self: bool) -> None:
        self.nlri = type("N", (), {})()
        self.nlri.nexthop = _NextHop(is_self)


def test_patches_are_installed() -> None:
    assert Neighbor.remove_self is launch._remove_self
    assert ASYNC.run is launch._async_run
    assert Reactor._wait_for_io is launch._wait_for_io


def test_explicit_next_hop_is_not_copied() -> None:
    change = _Change(is_self=False)
    assert launch._remove_self(object(), change) is change
    # the original returned an equal deep copy: same content, so sharing it is safe
    copy = ORIGINAL_REMOVE_SELF(object(), change)
    assert copy is not change and copy.nlri.nexthop.SELF is False


def test_next_hop_self_still_goes_through_the_original() -> None:
    calls: list[Any] = []

    def fake(self: Any, changes: Any) -> str:
        calls.append(changes)
        return "rewritten"

    change = _Change(is_self=True)
    saved = launch._original_remove_self
    launch._original_remove_self = fake
    try:
        assert launch._remove_self(object(), change) == "rewritten"
    finally:
        launch._original_remove_self = saved
    assert calls == [change]


def _jobs(seed: int, log: list[tuple[int, int]]) -> list[tuple[str, Iterator[bool]]]:
    rng = random.Random(seed)

    def job(n: int, steps: int, fail_at: int | None) -> Iterator[bool]:
        for i in range(steps):
            if i == fail_at:
                raise ValueError(f"job {n} fails at {i}")
            log.append((n, i))
            yield False

    return [
        (f"uid{n}", job(n, rng.randint(0, 120), rng.choice([None, None, rng.randint(0, 60)])))
        for n in range(8)
    ]


def _drain(run: Any, seed: int) -> tuple[list[tuple[int, int]], list[str]]:
    log: list[tuple[int, int]] = []
    errors: list[str] = []
    a = ASYNC()
    a.set_error_handler(errors.append)
    a._async = deque(_jobs(seed, log))
    for _ in range(10_000):
        if not run(a):
            break
    return log, errors


@pytest.mark.parametrize("seed", range(25))
def test_api_work_runs_in_the_same_order_with_the_same_errors(seed: int) -> None:
    assert _drain(launch._async_run, seed) == _drain(ORIGINAL_ASYNC_RUN, seed)


def test_coroutines_still_go_through_the_original() -> None:
    ran: list[str] = []

    async def coro() -> None:
        ran.append("coroutine")

    a = ASYNC()
    a._async = deque([("c", coro())])
    launch._async_run(a)
    assert ran == ["coroutine"]


class _FakeAsync:
    def __init__(self, ready: bool) -> None:
        self._ready = ready

    def ready(self) -> bool:
        return self._ready


@pytest.mark.parametrize(("ready", "expected"), [(True, 10), (False, 0)])
def test_poll_does_not_sleep_while_api_work_is_queued(ready: bool, expected: int) -> None:
    seen: list[int] = []
    saved = launch._original_wait_for_io
    launch._original_wait_for_io = lambda self, sleeptime: seen.append(sleeptime) or iter(())
    try:
        reactor = type("R", (), {"asynchronous": _FakeAsync(ready)})()
        list(launch._wait_for_io(reactor, 10))
    finally:
        launch._original_wait_for_io = saved
    assert seen == [expected]
