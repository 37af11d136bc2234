"""Fixtures for the kernel tests: a throw-away network namespace per test, never the host's own.

Every test gets `bgpdtest-<random>` with `lo` up, a veth pair `up0`/`up0p` (192.168.77.1/24 on `up0`, so
gateways 192.168.77.x are on a directly connected network) and a veth pair `cali1234`/`cali1234p` for
interface routes. Test actions use `ip -n NS ...`; the namespace is deleted when the test ends, pass or fail.

`netns6` is the same namespace made dual stack before its links are created: IPv6 enabled inside it
(`net.ipv6.conf.{all,default}.disable_ipv6=0`, whatever the machine's own setting), duplicate address
detection off (so no address stays tentative), fd00:77::1/64 on `up0` and a second veth pair `up1`/`up1p`
with 192.168.78.1/24 and fd00:78::1/64 (ECMP through two devices, link-local next hops on each).

`loop_thread` (`loop_thread6` for `netns6`) is an asyncio event loop running on a thread of its own that
lives inside the test's namespace, as bgpd's loop lives in the host's: a RouteWatcher is started on it
exactly as the speaker starts it (`watcher.start(loop)` on the loop's thread, no namespace argument), so
its sockets are opened there and a device name missing from its link dump is asked of that namespace. The
test's own thread stays in the machine's namespace and changes the kernel with `ip -n NS ...`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bgpd.kernel import LinkLost, RouteAdded, RouteEvent, RouteRemoved, RouteWatcher, Snapshot
from bgpd.kernel import _netlink as nl
from bgpd.model import KernelRoute

POLL_DEADLINE = 10.0
T = TypeVar("T")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "kernel tests need root (they create network namespaces)"
    if shutil.which("ip") is None:
        return "kernel tests need iproute2's `ip`"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    for item in items:
        if "kernel" in item.keywords and reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


@dataclass(frozen=True)
class Netns:
    """A test namespace and helpers that act inside it."""

    name: str

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "-n", self.name, *args], check=check, capture_output=True, text=True)

    def batch(self, path: Path) -> None:
        subprocess.run(
            ["ip", "-n", self.name, "-batch", str(path)], check=True, capture_output=True, text=True
        )

    def routes(self, *selector: str) -> list[dict[str, Any]]:
        """`ip -j route show SELECTOR` parsed."""
        out = self.ip("-j", "route", "show", *selector).stdout
        result: list[dict[str, Any]] = json.loads(out) if out.strip() else []
        return result

    def routes6(self, *selector: str) -> list[dict[str, Any]]:
        """`ip -6 -j route show SELECTOR` parsed."""
        out = self.ip("-6", "-j", "route", "show", *selector).stdout
        result: list[dict[str, Any]] = json.loads(out) if out.strip() else []
        return result

    def sysctl(self, *settings: str) -> None:
        """`sysctl -w KEY=VALUE ...` inside the namespace."""
        subprocess.run(
            ["ip", "netns", "exec", self.name, "sysctl", "-qw", *settings],
            check=True,
            capture_output=True,
            text=True,
        )


@pytest.fixture
def netns() -> Iterator[Netns]:
    yield from _namespace(ipv6=False)


@pytest.fixture
def netns6() -> Iterator[Netns]:
    yield from _namespace(ipv6=True)


def _namespace(ipv6: bool) -> Iterator[Netns]:
    name = f"bgpdtest-{uuid.uuid4().hex[:10]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        ns = Netns(name)
        if ipv6:  # before any link exists: the links inherit `default`
            ns.sysctl(
                "net.ipv6.conf.all.disable_ipv6=0",
                "net.ipv6.conf.default.disable_ipv6=0",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            )
        ns.ip("link", "set", "lo", "up")
        ns.ip("link", "add", "up0", "type", "veth", "peer", "name", "up0p")
        ns.ip("addr", "add", "192.168.77.1/24", "dev", "up0")
        ns.ip("link", "set", "up0p", "up")
        ns.ip("link", "set", "up0", "up")
        ns.ip("link", "add", "cali1234", "type", "veth", "peer", "name", "cali1234p")
        ns.ip("link", "set", "cali1234p", "up")
        ns.ip("link", "set", "cali1234", "up")
        if ipv6:
            ns.ip("addr", "add", "fd00:77::1/64", "dev", "up0", "nodad")
            ns.ip("link", "add", "up1", "type", "veth", "peer", "name", "up1p")
            ns.ip("addr", "add", "192.168.78.1/24", "dev", "up1")
            ns.ip("addr", "add", "fd00:78::1/64", "dev", "up1", "nodad")
            ns.ip("link", "set", "up1p", "up")
            ns.ip("link", "set", "up1", "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


class LoopThread:
    """An asyncio loop run by a thread (named "test-loop") that entered network namespace `netns` first."""

    def __init__(self, netns: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.watchers: list[RouteWatcher] = []
        entered = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            try:
                nl.enter_netns(netns)
            except BaseException as exc:
                failed.append(exc)
            entered.set()
            if not failed:
                self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="test-loop", daemon=True)
        self.thread.start()
        if not entered.wait(POLL_DEADLINE) or failed:
            self.thread.join(POLL_DEADLINE)
            self.loop.close()
            raise failed[0] if failed else TimeoutError("the loop's thread did not enter the namespace")

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the loop's thread and return its result (or raise its exception)."""

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(POLL_DEADLINE)

    def start(self, watcher: RouteWatcher) -> RouteWatcher:
        """`watcher.start(loop)` on the loop's thread, as the speaker does; `close` stops it at the latest."""
        self.watchers.append(watcher)
        self.call(lambda: watcher.start(self.loop))
        return watcher

    def stop(self, watcher: RouteWatcher) -> None:
        self.call(watcher.stop)

    def close(self) -> None:
        try:
            for watcher in self.watchers:
                self.call(watcher.stop)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(POLL_DEADLINE)
            self.loop.close()


@pytest.fixture
def loop_thread(netns: Netns) -> Iterator[LoopThread]:
    yield from _loop_thread(netns)


@pytest.fixture
def loop_thread6(netns6: Netns) -> Iterator[LoopThread]:
    yield from _loop_thread(netns6)


def _loop_thread(ns: Netns) -> Iterator[LoopThread]:
    lt = LoopThread(ns.name)
    try:
        yield lt
    finally:
        lt.close()


def poll_until(predicate: Callable[[], bool], what: str, deadline: float = POLL_DEADLINE) -> None:
    """Wait until predicate() is true; fail after `deadline` seconds."""
    end = time.monotonic() + deadline
    delay = 0.002
    while not predicate():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline:.0f}s waiting for: {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


class View:
    """A consumer as the daemon would keep one: a dict by route key, a Snapshot replaces everything."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.routes: dict[tuple[Any, int, int], KernelRoute] = {}
        self.reasons: list[str] = []
        self.lost: list[LinkLost] = []
        self.events: list[RouteEvent] = []

    def __call__(self, events: list[RouteEvent]) -> None:
        with self.lock:
            self.events.extend(events)
            for event in events:
                if isinstance(event, Snapshot):
                    self.routes = {route.key: route for route in event.routes}
                    self.reasons.append(event.reason)
                elif isinstance(event, RouteAdded):
                    self.routes[event.route.key] = event.route
                elif isinstance(event, RouteRemoved):
                    self.routes.pop(event.route.key, None)
                elif isinstance(event, LinkLost):
                    self.lost.append(event)

    def get(self, prefix: str) -> list[KernelRoute]:
        net = ip_network(prefix)
        with self.lock:
            return [route for route in self.routes.values() if route.prefix == net]

    def count(self, protocol: int) -> int:
        with self.lock:
            return sum(1 for route in self.routes.values() if route.protocol == protocol)

    def has_event(self, kind: type, prefix: str) -> bool:
        net = ip_network(prefix)
        with self.lock:
            return any(
                isinstance(e, kind) and isinstance(e, RouteAdded | RouteRemoved) and e.route.prefix == net
                for e in self.events
            )
