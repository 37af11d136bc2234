"""RouteWatcher read from an asyncio event loop (`start(loop)`, how bgpd runs it), against a real kernel in a
throw-away network namespace: events arrive on the loop's thread, an overflow while the loop is busy
re-reads the table (its drain bounded per loop turn), a device going down re-reads its routes, a device
name is asked of the watched namespace, a failure stops the watcher loudly, stop leaves no reader behind."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from bgpd.kernel import RouteEvent, RouteWatcher
from bgpd.kernel import watcher as watcher_mod
from bgpd.model import LinkLost

from .conftest import POLL_DEADLINE, LoopThread, Netns, View, poll_until

pytestmark = pytest.mark.kernel

MAIN = 254


def _burst(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "add.batch"
    path.write_text(
        "".join(f"route add 10.100.{i // 256}.{i % 256}/32 dev cali1234 proto boot\n" for i in range(count))
    )
    return path


def _matches_kernel(netns: Netns, view: View) -> bool:
    expected = {r["dst"] for r in netns.routes()}
    with view.lock:
        seen = {str(route.prefix) for route in view.routes.values()}
    return seen == {d if "/" in d else f"{d}/32" for d in expected}


def test_events_arrive_on_the_loops_thread_and_stop_removes_the_reader(
    netns: Netns, loop_thread: LoopThread
) -> None:
    netns.ip("route", "add", "10.9.0.0/16", "via", "192.168.77.2", "proto", "static")
    threads: set[str] = set()
    view = View()

    def consumer(events: list[RouteEvent]) -> None:
        threads.add(threading.current_thread().name)
        view(events)

    w = RouteWatcher(MAIN, consumer)
    loop_thread.start(w)
    try:
        assert view.reasons == ["start"] and view.get("10.9.0.0/16")  # delivered before start() returned
        assert w.running
        netns.ip("route", "add", "10.20.1.2/32", "dev", "cali1234", "proto", "boot")
        poll_until(lambda: bool(view.get("10.20.1.2/32")), "route added")
        netns.ip("route", "del", "10.20.1.2/32", "dev", "cali1234", "proto", "boot")
        poll_until(lambda: not view.get("10.20.1.2/32"), "route removed")
        assert threads == {"test-loop"}
        with pytest.raises(RuntimeError):
            loop_thread.start(w)
    finally:
        fd = w._events_sock.fileno() if w._events_sock is not None else -1
        loop_thread.stop(w)
        loop_thread.stop(w)  # idempotent
    assert not w.running and w._events_sock is None and w.failure is None
    assert not loop_thread.call(lambda: loop_thread.loop.remove_reader(fd))  # nothing was left registered


def test_overflow_while_the_loop_is_busy_resyncs_and_the_view_stays_complete(
    netns: Netns, loop_thread: LoopThread, tmp_path: Path
) -> None:
    view = View()
    w = loop_thread.start(RouteWatcher(MAIN, view, rcvbuf=4096))
    _burst_while_the_loop_is_busy(netns, loop_thread, tmp_path)
    poll_until(lambda: view.count(3) == 3000, "3000 routes seen")
    assert "overflow" in view.reasons and w.overflows >= 1
    assert _matches_kernel(netns, view)


def _burst_while_the_loop_is_busy(
    netns: Netns, loop_thread: LoopThread, tmp_path: Path, then: Callable[[], None] | None = None
) -> None:
    """3,000 routes added while the loop is busy elsewhere (so the burst overflows a small socket buffer);
    the loop is free again when this returns, and runs `then` first."""
    gate = threading.Event()
    busy = threading.Event()

    def stall() -> None:
        busy.set()
        gate.wait(POLL_DEADLINE)
        if then is not None:
            loop_thread.loop.call_soon(then)

    try:
        loop_thread.loop.call_soon_threadsafe(stall)
        assert busy.wait(POLL_DEADLINE)
        netns.batch(_burst(tmp_path, 3000))
    finally:
        gate.set()


def test_an_overflow_drain_leaves_the_loop_between_steps_and_the_redump_follows_it(
    netns: Netns, loop_thread: LoopThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After ENOBUFS, what is queued is discarded DRAIN_RECVS_PER_CALL receives per loop turn (8 here, so
    that the ~100 messages a 64 KiB buffer holds take several turns): the loop runs other work between the
    steps, and the re-dump taken once the socket is empty matches the kernel."""
    monkeypatch.setattr(watcher_mod, "DRAIN_RECVS_PER_CALL", 8)
    view = View()
    w = loop_thread.start(RouteWatcher(MAIN, view, rcvbuf=64 * 1024))
    finished = threading.Event()
    between: list[int] = []  # loop turns that ran after the overflow was seen and before its re-dump

    def tick() -> None:  # other work of the loop: runs once a turn until the re-dump is delivered
        if "overflow" in view.reasons or finished.is_set():
            return
        if w.overflows:
            between.append(w.overflows)
        loop_thread.loop.call_soon(tick)

    try:
        _burst_while_the_loop_is_busy(netns, loop_thread, tmp_path, then=tick)
        poll_until(lambda: view.count(3) == 3000, "3000 routes seen")
        assert view.reasons == ["start", "overflow"] and w.overflows == 1
        assert between, "the drain ran in one go"
        assert _matches_kernel(netns, view)
    finally:
        finished.set()


def test_a_device_going_down_rereads_its_routes_from_the_loop(netns: Netns, loop_thread: LoopThread) -> None:
    view = View()
    loop_thread.start(RouteWatcher(MAIN, view))
    netns.ip("route", "add", "10.30.0.0/24", "via", "192.168.77.2", "proto", "static")
    poll_until(lambda: bool(view.get("10.30.0.0/24")), "route via up0")
    netns.ip("link", "set", "up0", "down")  # the kernel flushes the route without a notification
    poll_until(lambda: bool(view.lost), "LinkLost reported")
    lost: LinkLost = view.lost[0]
    assert lost.name == "up0" and lost.flushed
    assert not view.get("10.30.0.0/24") and not netns.routes("10.30.0.0/24")


def test_a_device_missing_from_the_link_dump_is_named_by_the_watched_namespace(
    netns: Netns, loop_thread: LoopThread
) -> None:
    """A device newer than the link dump (its RTM_NEWLINK still queued) is named with if_indextoname, which
    asks the calling thread's namespace: the loop's thread is in the watched one, as in bgpd. The test's
    namespace numbers its devices from 1 like the machine's, so asking the machine would name another
    device or none."""
    w = loop_thread.start(RouteWatcher(MAIN, View()))
    (link,) = json.loads(netns.ip("-j", "link", "show", "dev", "cali1234").stdout)
    index = int(link["ifindex"])

    def forget_then_name() -> str | None:
        w._links.pop(index)
        return w._ifname(index)

    assert loop_thread.call(forget_then_name) == "cali1234"


def test_a_failure_stops_the_watcher_says_why_once_and_tells_the_owner(
    netns: Netns, loop_thread: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    """The device re-read fails (its dump socket closed under it, as a refused dump would): the watcher
    stops, logs one error naming the reason, calls on_failure once, and leaves no reader behind."""
    caplog.set_level(logging.ERROR, logger=watcher_mod.__name__)
    view = View()
    failures: list[Exception] = []
    w = loop_thread.start(RouteWatcher(MAIN, view, on_failure=failures.append))
    assert w._events_sock is not None and w._dump_sock is not None
    fd = w._events_sock.fileno()
    netns.ip("route", "add", "10.30.0.0/24", "via", "192.168.77.2", "proto", "static")
    poll_until(lambda: bool(view.get("10.30.0.0/24")), "route via up0")
    loop_thread.call(w._dump_sock.close)
    netns.ip("link", "set", "up0", "down")  # up0 carried a route: its routes are re-read, and that fails
    poll_until(lambda: bool(failures), "on_failure called")
    (failure,) = failures
    assert isinstance(failure, OSError) and w.failure is failure and not w.running
    errors = [r for r in caplog.records if r.name == watcher_mod.__name__ and r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "Bad file descriptor" in getattr(errors[0], "kv", {})["error"]
    assert not loop_thread.call(lambda: loop_thread.loop.remove_reader(fd))  # its reader is gone
    netns.ip("link", "set", "up0", "up")  # nothing reads the kernel any more: no second report
    netns.ip("route", "add", "10.20.1.2/32", "dev", "cali1234", "proto", "boot")
    assert loop_thread.call(lambda: len(failures)) == 1 and not view.lost
