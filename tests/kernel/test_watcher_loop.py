"""RouteWatcher read from an asyncio event loop (`start(loop)`, how bgpd runs it), against a real kernel in a
throw-away network namespace: events arrive on the loop's thread, an overflow while the loop is busy
re-reads the table, a device going down re-reads its routes, stop leaves no reader behind."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from bgpd.kernel import RouteEvent, RouteWatcher
from bgpd.model import LinkLost

from .conftest import POLL_DEADLINE, Netns, View, poll_until

pytestmark = pytest.mark.kernel

MAIN = 254
T = TypeVar("T")


class LoopThread:
    """An asyncio loop running on a thread of its own (the test's thread drives the kernel)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self.thread.start()

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the loop's thread and return its result (or raise its exception)."""

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(POLL_DEADLINE)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(POLL_DEADLINE)
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    try:
        yield lt
    finally:
        lt.close()


def _start(lt: LoopThread, watcher: RouteWatcher) -> None:
    lt.call(lambda: watcher.start(lt.loop))


def test_events_arrive_on_the_loops_thread_and_stop_removes_the_reader(
    netns: Netns, loop_thread: LoopThread
) -> None:
    netns.ip("route", "add", "10.9.0.0/16", "via", "192.168.77.2", "proto", "static")
    threads: set[str] = set()
    view = View()

    def consumer(events: list[RouteEvent]) -> None:
        threads.add(threading.current_thread().name)
        view(events)

    w = RouteWatcher(MAIN, consumer, netns=netns.name)
    _start(loop_thread, w)
    try:
        assert view.reasons == ["start"] and view.get("10.9.0.0/16")  # delivered before start() returned
        assert w.running and w._thread is None  # no thread of its own
        netns.ip("route", "add", "10.20.1.2/32", "dev", "cali1234", "proto", "boot")
        poll_until(lambda: bool(view.get("10.20.1.2/32")), "route added")
        netns.ip("route", "del", "10.20.1.2/32", "dev", "cali1234", "proto", "boot")
        poll_until(lambda: not view.get("10.20.1.2/32"), "route removed")
        assert threads == {"test-loop"}
        with pytest.raises(RuntimeError):
            _start(loop_thread, w)
    finally:
        fd = w._events_sock.fileno() if w._events_sock is not None else -1
        loop_thread.call(w.stop)
        loop_thread.call(w.stop)  # idempotent
    assert not w.running and w._events_sock is None
    assert not loop_thread.call(lambda: loop_thread.loop.remove_reader(fd))  # nothing was left registered


def test_overflow_while_the_loop_is_busy_resyncs_and_the_view_stays_complete(
    netns: Netns, loop_thread: LoopThread, tmp_path: Path
) -> None:
    view = View()
    w = RouteWatcher(MAIN, view, netns=netns.name, rcvbuf=4096)
    _start(loop_thread, w)
    gate = threading.Event()
    busy = threading.Event()

    def stall() -> None:  # the loop is busy elsewhere while the burst overflows the tiny socket buffer
        busy.set()
        gate.wait(POLL_DEADLINE)

    try:
        loop_thread.loop.call_soon_threadsafe(stall)
        assert busy.wait(POLL_DEADLINE)
        batch = tmp_path / "add.batch"
        batch.write_text(
            "".join(
                f"route add 10.100.{i // 256}.{i % 256}/32 dev cali1234 proto boot\n" for i in range(3000)
            )
        )
        netns.batch(batch)
        gate.set()
        poll_until(lambda: view.count(3) == 3000, "3000 routes seen")
        assert "overflow" in view.reasons and w.overflows >= 1
        expected = {r["dst"] for r in netns.routes()}
        with view.lock:
            seen = {str(route.prefix) for route in view.routes.values()}
        assert seen == {d if "/" in d else f"{d}/32" for d in expected}
    finally:
        gate.set()
        loop_thread.call(w.stop)


def test_a_device_going_down_rereads_its_routes_from_the_loop(netns: Netns, loop_thread: LoopThread) -> None:
    view = View()
    w = RouteWatcher(MAIN, view, netns=netns.name)
    _start(loop_thread, w)
    try:
        netns.ip("route", "add", "10.30.0.0/24", "via", "192.168.77.2", "proto", "static")
        poll_until(lambda: bool(view.get("10.30.0.0/24")), "route via up0")
        netns.ip("link", "set", "up0", "down")  # the kernel flushes the route without a notification
        poll_until(lambda: bool(view.lost), "LinkLost reported")
        lost: LinkLost = view.lost[0]
        assert lost.name == "up0" and lost.flushed
        assert not view.get("10.30.0.0/24") and not netns.routes("10.30.0.0/24")
    finally:
        loop_thread.call(w.stop)
